"""Where the ASR work goes: model calls counted by live path, for /metrics and the benchmarks.

The live transcriber labels its blocking calls with `recognition_context` (on the worker thread
that makes them); `CountingModel` wraps the CTranslate2 Whisper model and counts every encoder
and decoder call under the current label, including the calls faster-whisper makes inside
`WhisperModel.transcribe` (its temperature fallbacks among them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from observability import Metrics

# Which live path a model call serves, for the counters: "draft", "careful" (commits while
# recording) or "stop" (the tail committed at stop), and why a careful pass runs ("window", or a
# re-decode of a skipped "opening"/"tail", or a forced cut's "cut_context"). Set by the caller
# around blocking calls on a worker thread; the defaults name an ordinary commit.
_PATH: ContextVar[str] = ContextVar("asr_path", default="careful")
_PURPOSE: ContextVar[str] = ContextVar("asr_purpose", default="window")
# A label that inner contexts cannot change: the start-up calibration (services/calibration.py) runs
# the recogniser's own draft and careful paths, which label themselves, and must not count as meetings.
_PINNED: ContextVar[str | None] = ContextVar("asr_path_pinned", default=None)


@contextmanager
def recognition_context(*, path: str | None = None, purpose: str | None = None) -> Iterator[None]:
    """Label the model calls made inside the block (bounded values, see above)."""
    tokens = [(var, var.set(value)) for var, value in ((_PATH, path), (_PURPOSE, purpose)) if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


@contextmanager
def pinned_path(path: str) -> Iterator[None]:
    """Label every model call inside the block `path`, whatever the callees' `recognition_context` says."""
    token = _PINNED.set(path)
    try:
        yield
    finally:
        _PINNED.reset(token)


class CountingModel:
    """The CTranslate2 Whisper model, counting encoder and decoder calls by path.

    faster-whisper calls `generate` once per 30 s window at temperature 0 and again at each
    rising temperature when the compression-ratio or log-probability test fails: those re-decodes
    are counted as `fallback` as well as `generate`.
    """

    def __init__(self, model: Any, metrics: Metrics) -> None:
        self._model = model
        self._calls = metrics.asr_model_calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.labels(path=current_path(), op="encode").inc()
        return self._model.encode(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.labels(path=current_path(), op="generate").inc()
        if kwargs.get("sampling_temperature", 0.0) > 0.0:
            self._calls.labels(path=current_path(), op="fallback").inc()
        return self._model.generate(*args, **kwargs)

    def align(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.labels(path=current_path(), op="align").inc()
        return self._model.align(*args, **kwargs)


def current_path() -> str:
    return _PINNED.get() or _PATH.get()


def current_purpose() -> str:
    return _PURPOSE.get()
