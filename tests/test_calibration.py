"""The admission prior calibrated at start-up: the reference workload through the real tiny.en model,
the prior derived from it, the operator's override and the fallbacks."""

from __future__ import annotations

import logging
import math
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from observability import Metrics
from services.asr_service import WhisperRecognizer, load_recognizer
from services.calibration import (
    COST_PER_REFERENCE_SECOND,
    PRIOR_RANGE,
    REPEATS,
    choose_prior,
    load_reference_clip,
    prior_from_reference,
    time_reference,
)
from services.capacity import UNCALIBRATED_SESSION_CPU
from services.errors import ASRError
from services.types import Segment
from tests.support import make_settings


@pytest.fixture(scope="module")
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory, metrics: Metrics) -> WhisperRecognizer:
    return load_recognizer(make_settings(tmp_path_factory.mktemp("calibration")), metrics)


async def _inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """A `ModelRunner` that runs the call here (the app runs it on the inference executor)."""
    return fn(*args, **kwargs)


async def _never(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the model was asked to run")


def _calls(metrics: Metrics, path: str, op: str) -> float:
    return float(metrics.asr_model_calls.labels(path=path, op=op)._value.get())


def test_the_bundled_reference_clip_is_seconds_of_speech(recognizer: WhisperRecognizer) -> None:
    clip = load_reference_clip()
    assert clip.dtype == np.float32 and 4 * 16000 <= len(clip) <= 6 * 16000
    text = " ".join(segment.text for segment in recognizer.transcribe(clip, 0.0)).lower()
    assert "roadmap" in text and "wednesday" in text  # the reference decodes words, not silence


def test_the_reference_runs_the_model_and_is_counted_apart_from_meetings(
    recognizer: WhisperRecognizer, metrics: Metrics
) -> None:
    meeting_calls = [_calls(metrics, path, "encode") for path in ("draft", "careful", "stop")]
    encodes, generates = _calls(metrics, "calibration", "encode"), _calls(metrics, "calibration", "generate")
    reference = time_reference(recognizer)
    assert math.isfinite(reference) and reference > 0
    # per run: a draft of each whole second of the 4.2 s clip and one careful pass (one encoder window)
    assert _calls(metrics, "calibration", "encode") - encodes >= 5 * REPEATS
    assert _calls(metrics, "calibration", "generate") - generates >= 5 * REPEATS
    assert [_calls(metrics, path, "encode") for path in ("draft", "careful", "stop")] == meeting_calls


async def test_the_calibrated_prior_comes_from_the_reference_time(
    recognizer: WhisperRecognizer, tmp_path: Path
) -> None:
    prior = await choose_prior(make_settings(tmp_path), recognizer, _inline)
    assert prior.source == "calibrated" and prior.reference_cpu_seconds is not None
    assert math.isfinite(prior.session_cpu) and PRIOR_RANGE[0] <= prior.session_cpu <= PRIOR_RANGE[1]
    assert prior.session_cpu == prior_from_reference(prior.reference_cpu_seconds)


def test_the_prior_scales_with_the_reference_time_within_its_range() -> None:
    assert prior_from_reference(0.5) == pytest.approx(COST_PER_REFERENCE_SECOND * 0.5)
    assert prior_from_reference(1.5) == pytest.approx(3 * prior_from_reference(0.5))  # a 3x slower machine
    assert prior_from_reference(0.0) == PRIOR_RANGE[0] and prior_from_reference(1e6) == PRIOR_RANGE[1]


async def test_an_operator_set_prior_wins_and_the_model_is_not_timed(
    recognizer: WhisperRecognizer, tmp_path: Path
) -> None:
    prior = await choose_prior(make_settings(tmp_path, admission_session_cpu=0.37), recognizer, _never)
    assert (prior.session_cpu, prior.source, prior.reference_cpu_seconds) == (0.37, "ADMISSION_SESSION_CPU", None)


class _FailingRecognizer:
    name = "failing"

    def draft(self, audio: np.ndarray, offset: float, prompt: str = "") -> str:
        raise ASRError("draft decoding failed: out of memory")

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        raise ASRError("transcription failed: out of memory")


async def test_a_failing_model_keeps_the_uncalibrated_prior_and_says_so(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.calibration"):
        prior = await choose_prior(make_settings(tmp_path), _FailingRecognizer(), _inline)
    assert (prior.session_cpu, prior.source) == (UNCALIBRATED_SESSION_CPU, "uncalibrated")
    assert "not calibrated" in caplog.text and "out of memory" in caplog.text


def test_a_reference_clip_in_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "8k.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(np.zeros(8000, dtype="<i2").tobytes())
    with pytest.raises(wave.Error, match="16000 Hz mono"):
        load_reference_clip(path)
