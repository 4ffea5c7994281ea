"""The offline summariser: the last link of the provider chain, needing no key and no network.

It reads the diarised transcript itself (not the prompt) and answers in the same schema as the
LLMs: a short summary, action items (owner and due date where said), decisions, key topics and
open questions. See `offline_extract` for how the conversation is read.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from services.llm_providers.base import LLMRequest
from services.llm_providers.offline_extract import Extraction, Sentence, extract
from services.types import ActionItem, Segment

_MAX_SUMMARY_CHARS = 900


class OfflineProvider:
    """Rule-based summariser; cannot fail on any transcript, answers in milliseconds."""

    name = "offline"
    context_chars: int | None = None
    endpoint: str | None = None  # the transcript never leaves the process

    async def complete(self, request: LLMRequest) -> dict[str, Any]:
        """Summarise `request.segments` (run in a thread: long meetings are a few ms of regexes)."""
        return await asyncio.to_thread(offline_summary, list(request.segments), request.title)

    async def aclose(self) -> None:
        return None


def offline_summary(segments: Sequence[Segment], title: str | None = None) -> dict[str, Any]:
    """The summary as a dict matching `LLMResponseModel`."""
    found = extract(segments)
    return {
        "summary": _summary_text(segments, found, title),
        "action_items": [{"text": a.text, "owner": a.owner, "due": a.due, "time": a.time} for a in found.actions],
        "decisions": found.decisions,
        "key_topics": found.topics,
        "open_questions": found.questions,
    }


def _summary_text(segments: Sequence[Segment], found: Extraction, title: str | None) -> str:
    if not found.sentences:
        return "No speech was recorded."
    speakers = {s.speaker for s in segments if s.speaker}
    duration = max(s.end for s in segments) - min(s.start for s in segments)
    who = f"{len(speakers)} speakers" if len(speakers) > 1 else "one speaker" if speakers else "unlabelled speakers"
    opening = f"{title.strip()}: a" if title and title.strip() else "A"
    parts = [f"{opening} {_duration(duration)} meeting with {who}"]
    parts[0] += f" about {_join(found.topics[:3])}." if found.topics else "."
    if found.decisions:
        parts.append(f"Decided: {'; '.join(found.decisions[:3])}.")
    if found.actions:
        parts.append(
            f"{len(found.actions)} action item{'s' if len(found.actions) != 1 else ''}: "
            f"{'; '.join(_action_phrase(a) for a in found.actions[:3])}."
        )
    if not found.decisions and not found.actions:
        key = _key_sentences(found.sentences, found.topics)
        if key:
            parts.append("Key points: " + " ".join(key))
    text = " ".join(parts).replace("..", ".")
    return text if len(text) <= _MAX_SUMMARY_CHARS else text[: _MAX_SUMMARY_CHARS - 1] + "…"


def _action_phrase(item: ActionItem) -> str:
    owner = f"{item.owner} to " if item.owner else ""
    text = item.text[0].lower() + item.text[1:] if owner else item.text
    return f"{owner}{text}" + (f" ({item.due})" if item.due else "")


def _key_sentences(sentences: list[Sentence], topics: list[str], count: int = 2) -> list[str]:
    terms = {word for topic in topics for word in topic.split()}

    def score(sentence: Sentence) -> float:
        words = sentence.text.lower().split()
        return sum(w.strip(".,!?") in terms for w in words) / math.sqrt(len(words))

    candidates = [(i, s) for i, s in enumerate(sentences) if not s.is_question and len(s.text.split()) >= 6]
    best = sorted(candidates, key=lambda pair: score(pair[1]), reverse=True)[:count]
    return [s.text for _, s in sorted(best, key=lambda pair: pair[0])]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))}-second"
    minutes = round(seconds / 60)
    return f"{minutes}-minute" if minutes < 90 else f"{seconds / 3600:.1f}-hour"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
