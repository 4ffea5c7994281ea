"""The admission prior from this machine's speed: a reference workload timed at start-up.

Admission by load (`services/capacity.py`) plans with a prior cost per meeting until the load
meter has measured the real one on a full box. A fixed prior is right on one machine only: 0.6
CPU-s per audio s was measured on a 2-core box about 3x slower than the 2-core AMD EPYC Zen 5 of
the README's figures, where a meeting costs ~0.15, so a burst of 8 meetings got 3 admitted and 5
refused `busy` although all 8 fit.

So, unless ADMISSION_SESSION_CPU is set (the operator's value wins), start-up times a small fixed
workload through the loaded Whisper model, on the inference executor, before the server reports
ready: four drafts and one careful pass over a bundled 4 s clip (`assets/reference_speech.wav`).
A live meeting's CPU goes mostly into the same two kinds of model calls, so its cost divided by
the reference's time changes far less between CPUs than either does (README "Capacity": measured
here, and with the instruction sets narrowed to make the same box 1.5x and 3x slower). The prior
is `COST_PER_REFERENCE_SECOND` x the reference's CPU seconds.

Process CPU time, not wall time: the meter measures a meeting in CPU time too, and other
processes on the same cores stretch wall time but not CPU time. The least of `REPEATS` runs
counts (the first calls after loading pay one-off costs). On CUDA the CPU reference says nothing
about the GPU's room, and when the clip cannot be read or the model fails the server still starts:
both keep the uncalibrated prior, with a log line saying so.
"""

from __future__ import annotations

import logging
import math
import time
import wave
from pathlib import Path

import ctranslate2
import numpy as np

from services.asr_counters import pinned_path
from services.asr_service import SpeechRecognizer
from services.capacity import UNCALIBRATED_SESSION_CPU, SessionPrior
from services.errors import ASRError
from services.orchestrator import ModelRunner
from services.settings import Settings
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

REFERENCE_CLIP = Path(__file__).parent / "assets" / "reference_speech.wav"
COST_PER_REFERENCE_SECOND = 0.36
"""The prior (CPU-s per audio s of a live meeting) per CPU-s of the reference workload. Measured with
tiny.en int8 at three CPU speeds (README "Capacity"): one meeting alone costs 0.26-0.32x the
reference, a full box with drafts thinned 0.20-0.23x; the prior sits above both, since it decides
a whole burst of admissions before anything is measured."""
REPEATS = 2
PRIOR_RANGE = (0.02, 10.0)
"""A calibrated prior is kept inside this (ADMISSION_SESSION_CPU's own upper bound is 10)."""


def load_reference_clip(path: Path = REFERENCE_CLIP) -> np.ndarray:
    """The reference clip as float32 samples at 16 kHz.

    Raises:
        OSError: the file is missing or unreadable.
        wave.Error: it is not 16 kHz mono 16-bit PCM.
    """
    with wave.open(str(path)) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise wave.Error(f"{path} is not {SAMPLE_RATE} Hz mono 16-bit PCM")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def run_reference(recognizer: SpeechRecognizer, clip: np.ndarray) -> None:
    """The reference workload: drafts of the clip's first 1, 2, ... whole seconds, then one careful pass.

    Its model calls are counted under the path `calibration`, apart from the meetings'. Blocks.
    """
    with pinned_path("calibration"):
        for seconds in range(1, len(clip) // SAMPLE_RATE + 1):
            recognizer.draft(clip[: seconds * SAMPLE_RATE], 0.0)
        recognizer.transcribe(clip, 0.0)


def time_reference(recognizer: SpeechRecognizer, clip: np.ndarray | None = None, repeats: int = REPEATS) -> float:
    """The least process CPU seconds of `repeats` runs of the reference workload (on the bundled clip
    by default). Blocks: run it on the inference executor, with nothing else running in the process.

    Raises:
        OSError, wave.Error: the clip cannot be read (`load_reference_clip`).
        ASRError: the recogniser failed.
    """
    clip = load_reference_clip() if clip is None else clip
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        run_reference(recognizer, clip)
        best = min(best, time.process_time() - started)
    return best


def prior_from_reference(reference_cpu_seconds: float) -> float:
    """The prior cost of a meeting (CPU-s per audio s) on a machine that ran the reference in this time."""
    low, high = PRIOR_RANGE
    return min(high, max(low, COST_PER_REFERENCE_SECOND * reference_cpu_seconds))


async def choose_prior(settings: Settings, recognizer: SpeechRecognizer, run_model: ModelRunner) -> SessionPrior:
    """The prior admission plans with: ADMISSION_SESSION_CPU when set, else calibrated here and now."""
    if settings.admission_session_cpu is not None:
        return SessionPrior(settings.admission_session_cpu, "ADMISSION_SESSION_CPU")
    context = {"asr_model": recognizer.name}
    if _uses_cuda(settings):
        logger.info(
            "admission prior not calibrated on CUDA (the reference is timed on the CPU): planning with %.2f",
            UNCALIBRATED_SESSION_CPU,
            extra=context,
        )
        return SessionPrior(UNCALIBRATED_SESSION_CPU, "uncalibrated")
    try:
        reference = await run_model(time_reference, recognizer)
    except (OSError, wave.Error, ASRError) as exc:
        logger.warning(
            "admission prior not calibrated (%s): planning with %.2f CPU-s per audio s until measured; "
            "ADMISSION_SESSION_CPU sets it",
            exc,
            UNCALIBRATED_SESSION_CPU,
            extra=context,
        )
        return SessionPrior(UNCALIBRATED_SESSION_CPU, "uncalibrated")
    prior = SessionPrior(prior_from_reference(reference), "calibrated", reference)
    logger.info(
        "admission prior calibrated: %.3f CPU-s per audio s per meeting (reference workload %.3f CPU-s)",
        prior.session_cpu,
        reference,
        extra=context,
    )
    return prior


def _uses_cuda(settings: Settings) -> bool:
    return settings.asr_device == "cuda" or (settings.asr_device == "auto" and ctranslate2.get_cuda_device_count() > 0)
