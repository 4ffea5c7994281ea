"""One encoder window per careful pass over audio that fits in one.

`WhisperModel.transcribe` decodes a 30 s window and, unless its output ends on a lone timestamp,
seeks to the last word it returned and encodes the rest again, padded to 30 s once more. On a
live commit window (a few seconds of speech ending in a pause) that rest is mostly the pause:
a second 30 s encoder pass (a third of a careful pass's CPU on the AMI excerpts) that rarely
yields a word. The live transcriber already re-decodes a skipped end itself when its VAD heard
speech there (`LiveTranscriber._careful`), so a pass over audio shorter than one window stops
after that window's encoder call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_WINDOWS_LEFT: ContextVar[list[int] | None] = ContextVar("careful_windows_left", default=None)


class WindowBudgetSpent(Exception):
    """Raised inside faster-whisper's segment generator when it asks for one window too many."""


def bound_encoder(model: Any) -> None:
    """Wrap `model.encode` (a `WhisperModel`) so `encoder_windows` can bound it. Idempotent."""
    encode: Callable[..., Any] = model.encode
    if getattr(encode, "bounded", False):
        return

    def bounded_encode(*args: Any, **kwargs: Any) -> Any:
        left = _WINDOWS_LEFT.get()
        if left is not None:
            if left[0] <= 0:
                raise WindowBudgetSpent
            left[0] -= 1
        return encode(*args, **kwargs)

    bounded_encode.bounded = True  # type: ignore[attr-defined]
    model.encode = bounded_encode


@contextmanager
def encoder_windows(count: int | None) -> Iterator[None]:
    """Allow at most `count` encoder calls inside the block (None: no bound), on this thread."""
    token = _WINDOWS_LEFT.set(None if count is None else [count])
    try:
        yield
    finally:
        _WINDOWS_LEFT.reset(token)
