"""Long meetings: split the transcript into chunks that fit a model's context, merge the answers.

Chunks break between segments (never inside one unless a single segment is itself too long),
so every line keeps its speaker and start time; the merged summary labels each part with its
time range, and action items keep the transcript time they came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.llm_providers.schema import LLMResponseModel, transcript_line
from services.types import Segment


def chunk_segments(segments: Sequence[Segment], max_chars: int) -> list[list[Segment]]:
    """Consecutive runs of segments whose prompt lines add up to at most `max_chars`."""
    chunks: list[list[Segment]] = []
    current: list[Segment] = []
    size = 0
    for segment in _split_long(segments, max_chars):
        length = len(transcript_line(segment)) + 1
        if current and size + length > max_chars:
            chunks.append(current)
            current, size = [], 0
        current.append(segment)
        size += length
    if current or not chunks:
        chunks.append(current)
    return chunks


def _split_long(segments: Sequence[Segment], max_chars: int) -> list[Segment]:
    out: list[Segment] = []
    budget = max(200, max_chars - 40)  # room for "[1234.5s] SPEAKER_12: "
    for segment in segments:
        if len(segment.text) <= budget:
            out.append(segment)
            continue
        words, piece = segment.text.split(), ""
        for word in words:
            if piece and len(piece) + len(word) + 1 > budget:
                out.append(Segment(segment.start, segment.end, piece, segment.speaker))
                piece = ""
            piece = f"{piece} {word}".strip()
        if piece:
            out.append(Segment(segment.start, segment.end, piece, segment.speaker))
    return out


def merge_responses(parts: Sequence[LLMResponseModel], chunks: Sequence[Sequence[Segment]]) -> LLMResponseModel:
    """One answer from per-chunk answers: summaries by time range, lists concatenated without repeats."""
    summaries = []
    for part, chunk in zip(parts, chunks, strict=True):
        span = f"[{_clock(chunk[0].start)}–{_clock(chunk[-1].end)}]" if chunk else ""
        summaries.append(f"{span} {part.summary.strip()}".strip())
    seen: set[str] = set()
    actions = []
    for part in parts:
        for item in part.action_items:
            key = " ".join(item.text.lower().split())
            if key not in seen:
                seen.add(key)
                actions.append(item)
    return LLMResponseModel(
        summary="\n".join(summaries),
        action_items=actions,
        decisions=_unique(d for part in parts for d in part.decisions),
        key_topics=_unique(t for part in parts for t in part.key_topics)[:10],
        open_questions=_unique(q for part in parts for q in part.open_questions),
    )


def _unique(items: object) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for item in items:  # type: ignore[attr-defined]
        key = " ".join(str(item).lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(str(item))
    return out


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
