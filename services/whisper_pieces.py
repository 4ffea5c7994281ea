"""What the careful and full-context paths keep of faster-whisper's segments.

`one_window` stops a pass before a second encoder window; `is_hallucination` drops what Whisper
invents in noise; `to_segment` turns a piece into a `Segment` with word times (loops trimmed);
`careful_token_budget` bounds a window's decoding by its length.
"""

from __future__ import annotations

import re

from services.careful_window import WindowBudgetSpent, encoder_windows
from services.transcript_words import segment_of, trim_loop
from services.types import SAMPLE_RATE, Segment, Word

_FRAMES_PER_SECOND = 100  # Whisper log-mel frames per second of audio
_MAX_FRAMES = 3000
MAX_TOKENS = 448  # Whisper's decoder length, prompt included
_CAREFUL_TOKENS_PER_SECOND = 6  # fast speech is ~5 tokens a second, timestamps included


def careful_token_budget(seconds: float, prompt_tokens: int) -> int:
    """`max_new_tokens` for a careful window of `seconds`: room for fast speech (one 30 s window at
    most), so a decoding loop stops there instead of running on to Whisper's 448 tokens.

    CTranslate2 stops a generation at half of `max_length` (prompt included), so twice the room is
    asked for, within what the prompt leaves.
    """
    wanted = int(8 + min(seconds, _MAX_FRAMES / _FRAMES_PER_SECOND) * _CAREFUL_TOKENS_PER_SECOND)
    return max(1, min(2 * wanted, MAX_TOKENS - prompt_tokens - 1))


def one_window(pieces, samples: int, language: str | None, *, bounded: bool = True) -> tuple[list, bool]:  # type: ignore[no-untyped-def, type-arg]
    """The pieces of a pass, stopped before a second encoder window over audio that fits in one, and
    whether faster-whisper asked for that window (the first ended on an unfinished segment).

    (A language guess needs an encoder call of its own, so only a pass with a set language is bounded.)
    """
    bounded = bounded and language is not None and samples <= _MAX_FRAMES * SAMPLE_RATE // _FRAMES_PER_SECOND
    kept = []
    # What follows the window's last word is left to the caller: the live transcriber re-decodes it
    # if the VAD heard speech there, the full-context pass starts its next window there.
    try:
        with encoder_windows(1 if bounded else None):
            for piece in pieces:  # a loop, not a comprehension: keep what came before the budget ran out
                if not is_hallucination(piece):
                    kept.append(piece)
    except WindowBudgetSpent:
        return kept, True
    return kept, False


# Whisper's training data was full of video outros; it "hears" them in noise and crosstalk.
_VIDEO_OUTRO = re.compile(
    r"thanks? (you )?(so much )?for watching|subscribe to|see you (all )?(in|on) the next (one|video|episode)", re.I
)


def is_hallucination(piece) -> bool:  # type: ignore[no-untyped-def]
    """Whisper invents text ("You", "Thank you.", "Thanks for watching.") for silence and noise.

    The no-speech probability alone is no verdict: it is one guess per 30 s window, and a window
    that opens on a pause gets 0.5-0.6 however much speech follows, so it only condemns a piece
    of three words or fewer (faster-whisper already drops confident no-speech with a low
    log-probability).
    """
    words = piece.words or []
    mean_probability = sum(w.probability for w in words) / len(words) if words else 1.0
    few_words = len(words) <= 3
    return bool(
        (few_words and (piece.no_speech_prob > 0.6 or mean_probability < 0.2)) or _VIDEO_OUTRO.search(piece.text)
    )


def to_segment(piece, offset: float) -> Segment:  # type: ignore[no-untyped-def]
    words = [
        Word(start=offset + w.start, end=offset + w.end, text=w.word, probability=w.probability)
        for w in (piece.words or [])
    ]
    kept = trim_loop(words)
    if len(kept) < len(words):
        return segment_of(kept)
    return Segment(start=offset + piece.start, end=offset + piece.end, text=piece.text.strip(), words=words)
