"""Word-level helpers of the live policy: where to cut a long utterance, dealing careful words
back to drafted utterances, building segments from words, trimming looping drafts. Pure functions, no model."""

from __future__ import annotations

import re

from services.types import Segment, Word

MIN_CUT_GAP = 0.15
"""A pause between words at least this long is a good place to cut a long utterance."""


def cut_index(words: list[Word], earliest_end: float, latest_end: float) -> int | None:
    """Index of the word after which to cut: the widest gap among words ending in the given span.

    Among gaps of `MIN_CUT_GAP` or more the latest wins (the shortest tail stays open); the tail
    is decoded again without the audio before the cut, so cutting at a real pause matters.
    """
    candidates = [i for i, word in enumerate(words[:-1]) if earliest_end <= word.end <= latest_end]
    if not candidates:
        return None
    pauses = [i for i in candidates if words[i + 1].start - words[i].end >= MIN_CUT_GAP]
    if pauses:
        return pauses[-1]
    return max(candidates, key=lambda i: (round(words[i + 1].start - words[i].end, 2), i))


def split_head(words: list[Word], not_before: float, latest_end: float) -> tuple[list[Word], list[Word]] | None:
    """A long utterance's settled head and open tail: cut after `not_before` when it can, so the tail
    left open is short, and never after a word ending past `latest_end`; None when nothing settled."""
    cut = cut_index(words, not_before, latest_end)
    if cut is None:
        cut = cut_index(words, 0.0, latest_end)
    return None if cut is None else (words[: cut + 1], words[cut + 1 :])


def deal_words(segments: list[Segment], starts: list[float]) -> list[Segment]:
    """Split the words of `segments` at the utterance start times `starts` (one piece per start)."""
    words = [word for segment in segments for word in segment.words]
    pieces: list[list[Word]] = [[] for _ in starts]
    for word in words:
        middle = (word.start + word.end) / 2
        index = max(0, sum(1 for start in starts if start <= middle) - 1)
        pieces[index].append(word)
    return [segment_of(piece) if piece else empty_segment() for piece in pieces]


def words_between(segments: list[Segment], start: float, end: float) -> list[Segment]:
    """The words of `segments` whose middle falls in [start, end) seconds, a segment for each it came from."""
    pieces = [[word for word in segment.words if start <= (word.start + word.end) / 2 < end] for segment in segments]
    return [segment_of(piece) for piece in pieces if piece]


def empty_segment() -> Segment:
    """The committed form of a drafted utterance that turned out to hold no words."""
    return Segment(start=0.0, end=0.0, text="")


def word_key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def segment_of(words: list[Word]) -> Segment:
    return Segment(
        start=words[0].start, end=words[-1].end, text="".join(w.text for w in words).strip(), words=list(words)
    )


_WORD = re.compile(r"[\w']+")


def trim_self_repetition(text: str) -> str:
    """Cut a draft where it starts looping.

    Short-padded decoding tends to loop once the real audio runs out ("Okay, we're ready.
    Okay, we're ready. Okay, ...") and to stutter on very short windows ("Perfect Perfect
    Perfect"). Cut where the opening three words come round again; keep the text up to the end
    of the first copy of a phrase of three or more words repeated back to back, or of a one- or
    two-word phrase repeated three times.
    """
    words = text.split()
    key = [_normalise(w) for w in words]
    for restart in range(3, len(key) - 2):
        if key[restart : restart + 3] == key[:3]:
            words, key = words[:restart], key[:restart]
            break
    for i in range(len(key)):
        for period in range(1, (len(key) - i) // 2 + 1):
            first, second = key[i : i + period], key[i + period : i + 2 * period]
            if len(second) < period or first != second:
                continue
            if period >= 3 or key[i + 2 * period : i + 3 * period] == first:
                return " ".join(words[: i + period])
    return " ".join(words)


def trim_loop(words: list[Word], repeats: int = 3) -> list[Word]:
    """Cut careful words where a phrase comes round `repeats` times back to back: a decoding loop.

    Beam search can loop too once a window's audio runs out ("I'm a man, I'm a man, ..."), and a
    looped window committed as text becomes the next window's prompt, which loops again. Real
    speech repeats a phrase twice ("And he's Ed. And he's Ed."), which is kept; from the third copy
    on only the first copy is kept.
    """
    key = [_normalise(word.text) for word in words]
    for i in range(len(key)):
        for period in range(1, (len(key) - i) // repeats + 1):
            first = key[i : i + period]
            if all(key[i + k * period : i + (k + 1) * period] == first for k in range(1, repeats)):
                return words[: i + period]
    return words


def _normalise(word: str) -> str:
    return "".join(_WORD.findall(word.lower()))
