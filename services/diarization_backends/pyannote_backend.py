"""pyannote.audio backend for GPU deployments (optional: `pip install -r requirements-gpu.txt`).

`Pipeline.from_pretrained` takes the Hugging Face token as `token=` from pyannote.audio 4.0 on and
as `use_auth_token=` before; both are handled. `PYANNOTE_PIPELINE` may also be a local directory
or config file, which needs no token. Loading happens lazily, on the executor, at first use.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from services.diarization_backends.base import SpeakerTurn
from services.errors import DiarizationError
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)


def pyannote_installed() -> bool:
    """Whether pyannote.audio can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("pyannote.audio") is not None
    except ModuleNotFoundError:
        return False


def check_loadable(checkpoint: str, token: str | None) -> None:
    """Cheap start-up check of what `load` needs.

    Raises:
        DiarizationError: the checkpoint is remote and no token is set, or pyannote.audio is absent.
    """
    if not token and not Path(checkpoint).exists():
        raise DiarizationError(
            f"HF_TOKEN is unset, so the gated pipeline {checkpoint!r} cannot be fetched; set HF_TOKEN "
            "(and accept the model's conditions on Hugging Face) or point PYANNOTE_PIPELINE at a local copy"
        )
    if not pyannote_installed():
        raise DiarizationError("pyannote.audio is not installed; install it with `pip install -r requirements-gpu.txt`")


class PyannoteBackend:
    """Speaker diarisation with a pretrained pyannote.audio pipeline (GPU when available)."""

    name = "pyannote"

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    @classmethod
    def load(cls, checkpoint: str, token: str | None) -> PyannoteBackend:
        """Fetch (or open) and instantiate the pipeline; blocking, so run it on the executor.

        Raises:
            DiarizationError: not installed, no token, or the model could not be fetched or built.
        """
        check_loadable(checkpoint, token)
        try:
            import torch
            from pyannote.audio import Pipeline

            major = int(importlib.metadata.version("pyannote.audio").split(".")[0])
            auth = {"token": token} if major >= 4 else {"use_auth_token": token}
            pipeline = Pipeline.from_pretrained(checkpoint, **(auth if token else {}))
            if pipeline is None:  # 3.x returns None when the gated repo refuses the token
                raise DiarizationError(f"Hugging Face refused access to {checkpoint!r}: accept its conditions")
            if torch.cuda.is_available():
                pipeline.to(torch.device("cuda"))
        except DiarizationError:
            raise
        except Exception as exc:  # noqa: BLE001 - hub, auth and model errors share no narrower base
            raise DiarizationError(f"could not load pyannote pipeline {checkpoint!r}: {exc}") from exc
        logger.info("diarisation: pyannote pipeline %s loaded", checkpoint)
        return cls(pipeline)

    def diarize(
        self, audio: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        """Turns from the pipeline (the exclusive, one-speaker-at-a-time output when it has one)."""
        import torch

        options = {k: v for k, v in (("min_speakers", min_speakers), ("max_speakers", max_speakers)) if v}
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        try:
            output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **options)
        except Exception as exc:  # noqa: BLE001 - CUDA OOM and model errors share no narrower base
            raise DiarizationError(f"pyannote diarisation failed: {exc}") from exc
        annotation = getattr(output, "exclusive_speaker_diarization", None)
        if annotation is None:
            annotation = getattr(output, "speaker_diarization", output)
        turns = [
            SpeakerTurn(float(segment.start), float(segment.end), str(label))
            for segment, _, label in annotation.itertracks(yield_label=True)
        ]
        return sorted(turns, key=lambda turn: turn.start)

    def close(self) -> None:
        self._pipeline = None
