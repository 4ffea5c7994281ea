"""The NeMo backend hands the meeting to NeMo in memory: no WAV of it is ever written.

NeMo (a multi-GB GPU install) and its Sortformer model cannot run here, so the model is a
stand-in that records what `diarize` was given and answers in NeMo's "start end speaker" form;
the rest (the backend's conversion, error mapping and parsing) is the real code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.diarization_backends.base import SpeakerTurn
from services.diarization_backends.nemo_backend import NemoBackend
from services.errors import DiarizationError
from services.types import SAMPLE_RATE


class RecordingSortformer:
    """Stands in for `SortformerEncLabelModel`: keeps the call, answers like NeMo does."""

    def __init__(self, answer: list[list[str]] | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []
        self.files_during_call: list[Path] = []

    def diarize(self, **kwargs: Any) -> list[list[str]]:
        self.calls.append(kwargs)
        self.files_during_call = list(Path(tempfile.gettempdir()).rglob("*"))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `tempfile` at an empty directory so anything written through it shows up."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_audio_goes_to_nemo_as_an_array_never_a_file(temp_dir: Path) -> None:
    audio = np.sin(np.linspace(0, 200, SAMPLE_RATE * 3)).astype(np.float32) * 0.5
    model = RecordingSortformer([["1.50 2.75 speaker_1", "0.00 1.20 speaker_0"]])
    turns = NemoBackend(model).diarize(audio)
    [call] = model.calls
    assert call["sample_rate"] == SAMPLE_RATE and call["num_workers"] == 0
    [given] = call["audio"]
    assert isinstance(given, np.ndarray) and given.dtype == np.float32
    np.testing.assert_array_equal(given, audio)
    assert model.files_during_call == [] and list(temp_dir.iterdir()) == []
    assert turns == [SpeakerTurn(0.0, 1.2, "speaker_0"), SpeakerTurn(1.5, 2.75, "speaker_1")]


def test_nemo_failure_is_a_diarization_error(temp_dir: Path) -> None:
    backend = NemoBackend(RecordingSortformer(RuntimeError("CUDA out of memory")))
    with pytest.raises(DiarizationError, match="CUDA out of memory"):
        backend.diarize(np.zeros(SAMPLE_RATE, dtype=np.float64))
    assert list(temp_dir.iterdir()) == []
