"""Rule-based extraction of action items, decisions, questions and topics from a transcript.

The transcript is cut into sentences (a sentence may run across segments of one speaker), each
tagged with its speaker and start time. Sentences are then read in order with a little memory
of the conversation, so that "Can you send the deck?" / "Sure." gives the deck to whoever said
"Sure", "Who can review it?" / "I can take it." resolves what "it" is, and "Carol, please ..." /
"Sure, no problem." teaches that this speaker is Carol.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.llm_providers import offline_rules as rules
from services.types import ActionItem, Segment

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_WORD = re.compile(r"[a-z][a-z0-9'\-]+")


@dataclass(slots=True)
class Sentence:
    """One cleaned sentence with who said it and when (seconds)."""

    speaker: str | None
    time: float
    text: str

    @property
    def is_question(self) -> bool:
        return self.text.rstrip().endswith("?")


@dataclass(slots=True)
class Extraction:
    """Everything the offline summariser found."""

    sentences: list[Sentence]
    actions: list[ActionItem] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


def split_sentences(segments: Sequence[Segment]) -> list[Sentence]:
    """Sentences in order; a fragment left open at a segment's end joins the same speaker's next one."""
    sentences: list[Sentence] = []
    pending: Sentence | None = None
    for segment in segments:
        text = rules.FILLERS.sub("", segment.text).strip()
        if not text:
            continue
        parts = _SENTENCE_END.split(text)
        if pending is not None and pending.speaker == segment.speaker:
            parts[0] = f"{pending.text} {parts[0]}"
            start = pending.time
        else:
            if pending is not None:
                sentences.append(pending)
            start = segment.start
        pending = None
        for index, part in enumerate(parts):
            sentence = Sentence(segment.speaker, start if index == 0 else segment.start, part.strip())
            if index == len(parts) - 1 and not part.rstrip().endswith((".", "!", "?")):
                pending = sentence
            else:
                sentences.append(sentence)
    if pending is not None:
        sentences.append(pending)
    return [s for s in sentences if s.text]


def extract(segments: Sequence[Segment]) -> Extraction:
    """Read the whole meeting once and return what it produced."""
    result = Extraction(split_sentences(segments))
    _learn_intro_names(result)
    _ActionReader(result).read()
    result.decisions = _dedupe(_decisions(result.sentences))
    result.questions = _dedupe(_questions(result.sentences))[:5]
    result.topics = topics(result.sentences)
    for item in result.actions:
        if item.owner in result.names:
            item.owner = result.names[item.owner]
    result.actions = _merge_actions(result.actions)
    return result


def _learn_intro_names(result: Extraction) -> None:
    intro = re.compile(
        rf"(?:\b(?i:this\s+is|i'm|i\s+am|my\s+name\s+is|it's)\s+(?P<a>{rules.NAME})\b|^(?P<b>{rules.NAME})\s+(?i:here)\b)"
    )
    for sentence in result.sentences:
        match = intro.search(_strip_leading(sentence.text))
        name = match and (match.group("a") or match.group("b"))
        if name and sentence.speaker and name not in rules.NOT_NAMES:
            result.names.setdefault(sentence.speaker, name)


class _ActionReader:
    """Walks the sentences keeping the last request so replies can be understood."""

    def __init__(self, result: Extraction) -> None:
        self.result = result
        self.sentences = result.sentences
        self.last: tuple[int, ActionItem] | None = None

    def read(self) -> None:
        for index, sentence in enumerate(self.sentences):
            item = self._action(index, sentence)
            if item is not None:
                self.result.actions.append(item)
                self.last = (index, item)

    def _action(self, index: int, sentence: Sentence) -> ActionItem | None:
        text = _strip_leading(sentence.text)
        explicit = rules.EXPLICIT.match(text)
        if explicit:
            text = _strip_leading(explicit.group("rest"))
        named = self._named(index, sentence, text)
        if named is not None:
            return named
        ask = rules.WHO.match(text) or rules.REQUEST.match(text)
        if ask:
            responder = self._responder(index, sentence.speaker)
            if ask.re is rules.WHO and responder is None:
                return None  # an unanswered "who can ...?" is an open question, not an action
            return self._item(index, ask.group("rest"), responder)
        if commit := rules.COMMIT.search(text):
            if sentence.is_question:
                return None
            return self._item(index, commit.group("rest"), sentence.speaker, resolve=True)
        if explicit:
            return self._item(index, text, None)
        team = rules.TEAM.search(text)
        if team and not rules.DECISION.search(text) and not sentence.is_question:
            return self._item(index, team.group("rest"), None, resolve=True)
        return None

    def _named(self, index: int, sentence: Sentence, text: str) -> ActionItem | None:
        for pattern, search in (
            (rules.ADDRESSED, False),
            (rules.ADDRESSED_END, False),
            (rules.NAMED_TO, False),
            (rules.NAMED_WILL, True),
        ):
            match = pattern.search(text) if search else pattern.match(text)
            if match and match.group("name") not in rules.NOT_NAMES:
                name = match.group("name")
                responder = self._responder(index, sentence.speaker)
                if responder and responder not in self.result.names and name not in self.result.names.values():
                    self.result.names[responder] = name
                return self._item(index, match.group("rest"), name, resolve=True)
        return None

    def _responder(self, index: int, asker: str | None) -> str | None:
        """The speaker who says yes right after a request (None if nobody does, or no labels)."""
        if index + 1 >= len(self.sentences):
            return None
        reply = self.sentences[index + 1]
        if asker is None or reply.speaker is None or reply.speaker == asker:
            return None
        short = len(reply.text.split()) <= 7  # "Sure, I'll do it", not "I'll also add a test that ..."
        return reply.speaker if short and rules.AFFIRMATIVE.match(_strip_leading(reply.text, keep_yes=True)) else None

    def _item(self, index: int, rest: str, owner: str | None, *, resolve: bool = False) -> ActionItem | None:
        sentence = self.sentences[index]
        rest = rest.strip().rstrip(".!?").strip()
        if rules.NON_ACTION.match(rest):
            return None
        due_match = rules.DUE.search(rest)
        due = _clean_due(due_match.group("due")) if due_match else None
        text = (rest[: due_match.start()] + rest[due_match.end() :]) if due_match else rest
        text = _tidy(rules.TRAILING.sub("", _tidy(text)))
        if _is_vague(text):
            if not resolve or self.last is None or index - self.last[0] > 3:
                return None
            previous = self.last[1]
            return ActionItem(previous.text, owner or previous.owner, due or previous.due, previous.time)
        if len(text.split()) < 2:
            return None
        return ActionItem(text[0].upper() + text[1:], owner, due, round(sentence.time, 2))


def _decisions(sentences: list[Sentence]) -> list[str]:
    found = []
    for sentence in sentences:
        match = rules.DECISION.search(sentence.text)
        if not match or sentence.is_question:
            continue
        marker = " ".join(match.group("marker").lower().split())
        rest = _tidy(rules.TRAILING.sub("", match.group("rest").strip().rstrip(".!")))
        if marker.endswith(("agreed", "agreed,", "agreed:", "decided")) and (
            prefix := rules.DECISION_PREFIX.match(rest)
        ):
            rest = prefix.group("what")
        rest = re.sub(r"^(?:that|to|on|we(?:'ll|\s+will))\s+", "", rest, flags=re.IGNORECASE)
        if marker in rules.DECISION_VERB:
            rest = f"{rules.DECISION_VERB[marker]} {rest}"
        elif re.match(r"we('ll| will|'re going to) ", marker):
            rest = f"{marker.split()[-1].capitalize()} {rest}" if marker.split()[-1] in {"keep", "use"} else rest
        if len(rest.split()) >= 2:
            found.append(rest[0].upper() + rest[1:])
    return found


def _questions(sentences: list[Sentence]) -> list[str]:
    found = []
    for index, sentence in enumerate(sentences):
        text = _strip_leading(sentence.text)
        asked = sentence.is_question and rules.OPEN_QUESTION.match(text) and not rules.WHO.match(text)
        if not (asked or rules.OPEN_MARKER.search(text)):
            continue
        following = sentences[index + 1 : index + 6]
        if asked and any(
            rules.DECISION.search(s.text) and _content_words(s.text) & _content_words(text) for s in following
        ):
            continue  # answered by a decision right after
        if len(text.split()) >= 4:
            found.append(text)
    return found


def topics(sentences: list[Sentence], limit: int = 5) -> list[str]:
    """Agenda cues ("first up is ...") first, then repeated word pairs and words."""
    cued = [m.group("topic").strip().lower() for s in sentences if (m := rules.TOPIC_CUE.search(s.text))]
    bigrams: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for sentence in sentences:
        tokens = [w.strip("'-") for w in _WORD.findall(sentence.text.lower())]
        content = [w if w not in rules.STOPWORDS and len(w) > 2 else "" for w in tokens]
        words.update(w for w in content if w)
        bigrams.update(f"{a} {b}" for a, b in zip(content, content[1:], strict=False) if a and b)
    chosen = _dedupe([c for c in cued if len(c.split()) <= 4])
    for phrase, count in bigrams.most_common():
        if count >= 2 and not any(phrase in c or c in phrase for c in chosen):
            chosen.append(phrase)
    for word, count in words.most_common():
        if count >= 2 and not any(word in c for c in chosen):
            chosen.append(word)
    return chosen[:limit]


def _merge_actions(items: list[ActionItem]) -> list[ActionItem]:
    merged: list[ActionItem] = []
    for item in items:
        twin = next((m for m in merged if _similar(m.text, item.text)), None)
        if twin is None:
            merged.append(item)
            continue
        twin.owner = twin.owner if _named_owner(twin.owner) else item.owner or twin.owner
        twin.due = twin.due or item.due
    return merged


def _named_owner(owner: str | None) -> bool:
    return owner is not None and not owner.upper().startswith("SPEAKER")


def _similar(a: str, b: str) -> bool:
    wa, wb = _content_words(a), _content_words(b)
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) >= 0.75


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in rules.STOPWORDS}


def _is_vague(text: str) -> bool:
    words = [w.strip(".,!?").lower() for w in text.split()]
    return (
        not words
        or (len(words) <= 3 and all(w in rules.VAGUE_WORDS for w in words))
        or (len(words) <= 3 and any(w in rules.PRONOUNS for w in words) and len(_content_words(text)) <= 1)
    )


def _strip_leading(text: str, *, keep_yes: bool = False) -> str:
    return text.strip() if keep_yes else rules.LEADING.sub("", text.strip())


def _clean_due(due: str) -> str:
    return re.sub(r"^the\s+(?=end)", "", " ".join(due.split()), flags=re.IGNORECASE)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([,.;:])", r"\1", " ".join(text.split()))
    return re.sub(r"(?:\s+(?:and|or|but|for|on|by|then|so))+$|[,;:\s]+$", "", text, flags=re.IGNORECASE).strip()


def _dedupe(texts: list[str]) -> list[str]:
    kept: list[str] = []
    for text in texts:
        if not any(_similar(text, k) or text.lower() == k.lower() for k in kept):
            kept.append(text)
    return kept
