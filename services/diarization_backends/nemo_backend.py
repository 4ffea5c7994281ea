"""NVIDIA NeMo backend (NEMO_DIARIZATION_ENABLED=true): the Sortformer end-to-end diariser.

Optional install (`nemo_toolkit[asr]`, see requirements-gpu.txt). The model is fetched from
Hugging Face on first use, so it needs network access (and HF_TOKEN where the repo asks for it).

The meeting is handed to NeMo as an in-memory waveform (`diarize(audio=[array], sample_rate=...)`),
never as a WAV file: the contract says audio never touches the disk in the clear. One loader
process (`num_workers=0`) keeps it in this process's memory too.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from services.diarization_backends.base import SpeakerTurn
from services.errors import DiarizationError
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

NEMO_MODEL = "nvidia/diar_sortformer_4spk-v1"


def check_loadable() -> None:
    """Raises DiarizationError when NeMo's ASR collection is not installed."""
    try:
        found = importlib.util.find_spec("nemo.collections.asr") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise DiarizationError("NeMo is not installed; install `nemo_toolkit[asr]` (requirements-gpu.txt)")


class NemoBackend:
    """Speaker diarisation with NeMo's Sortformer (up to four speakers)."""

    name = "nemo"

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls, model_name: str = NEMO_MODEL) -> NemoBackend:
        """Fetch and instantiate the model; blocking, so run it on the executor.

        Raises:
            DiarizationError: NeMo is absent or the model could not be fetched or built.
        """
        check_loadable()
        try:
            from nemo.collections.asr.models import SortformerEncLabelModel

            model = SortformerEncLabelModel.from_pretrained(model_name)
            model.eval()
        except Exception as exc:  # noqa: BLE001 - hub and model errors share no narrower base
            raise DiarizationError(f"could not load NeMo model {model_name!r}: {exc}") from exc
        logger.info("diarisation: NeMo model %s loaded", model_name)
        return cls(model)

    def diarize(
        self, audio: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        """Turns from Sortformer ("start end speaker" lines); the speaker-count hint is not used."""
        waveform = np.ascontiguousarray(audio, dtype=np.float32)
        try:
            results = self._model.diarize(audio=[waveform], sample_rate=SAMPLE_RATE, batch_size=1, num_workers=0)
        except Exception as exc:  # noqa: BLE001 - CUDA OOM and model errors share no narrower base
            raise DiarizationError(f"NeMo diarisation failed: {exc}") from exc
        turns = []
        for line in results[0] if results else []:
            start, end, speaker = str(line).split()[:3]
            turns.append(SpeakerTurn(float(start), float(end), speaker))
        return sorted(turns, key=lambda turn: turn.start)

    def close(self) -> None:
        self._model = None
