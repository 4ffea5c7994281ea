"""Diarisation accuracy and speed of the embedded (offline CPU) backend. A script, not a test.

    .venv/bin/python bench/diarization_bench.py [--data /work/shared/data/ami]

Prints, per recording, DER (pyannote.metrics; bench-only dependency `pyannote.metrics`) with a
±0.25 s forgiveness collar (NIST convention; pyannote's `collar=0.5` is the total width) and with
none, overlapped speech scored, and the number of speakers found against the reference. Real
audio first: the five AMI far-field excerpts (reference RTTM beside them) and AMI dev00's first
12 s, where one talker speaks (the committed test fixture); then scripted espeak-ng meetings: the
test fixtures with 1-4 voices and the five meeting scripts of tests/fixtures/meetings rendered here.

Two ways of running the diariser: "as recorded" is the server's path, fed every CATCH_UP_SECONDS
while the meeting goes on (`StreamingDiarizer`), with the time left to do at stop; "one call"
diarises the finished recording at once (`EmbeddedBackend.diarize`). The means over the AMI
excerpts close the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile
from pyannote.core import Annotation
from pyannote.core import Segment as Span
from pyannote.metrics.diarization import DiarizationErrorRate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.diarization_backends.base import SpeakerTurn  # noqa: E402
from services.diarization_backends.embedded import EmbeddedBackend, StreamingDiarizer  # noqa: E402
from services.session_speakers import CATCH_UP_SECONDS  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
AMI_URIS = ("dev00", "dev01", "trn00", "trn04", "trn07")
SCRIPTED = ("one_voice", "meeting_two_voices", "meeting_three_voices", "meeting_four_voices")
PUBLISHED = [
    ("pyannote/speaker-diarization-3.1, AMI headset mix (only_words), no collar", 18.8),
    ("pyannote/speaker-diarization-3.1, AMI array1 SDM (only_words), no collar", 22.4),
]


def read_wav(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    assert rate == 16_000 and audio.ndim == 1, f"{path}: expected 16 kHz mono"
    return audio


def rttm_reference(path: Path, uri: str) -> Annotation:
    reference = Annotation(uri=uri)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) > 7 and parts[1] == uri:
            start, duration = float(parts[3]), float(parts[4])
            reference[Span(start, start + duration)] = parts[7]
    return reference


def json_reference(path: Path) -> Annotation:
    reference = Annotation()
    for turn in json.loads(path.read_text())["turns"]:
        reference[Span(turn["start"], turn["end"])] = turn["speaker"]
    return reference


def render_meetings(folder: Path) -> list[Path]:
    """tests/fixtures/meetings rendered with espeak-ng, one voice per scripted speaker (in order)."""
    spec = importlib.util.spec_from_file_location("make_speech", FIXTURES / "make_speech.py")
    assert spec is not None and spec.loader is not None
    make_speech = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_speech)
    make_speech.HERE = folder
    voices = list(make_speech.VOICES)
    for script in sorted((FIXTURES / "meetings").glob("*.json")):
        speakers: dict[str, int] = {}
        lines = []
        for segment in json.loads(script.read_text())["segments"]:
            speaker = speakers.setdefault(segment.get("speaker") or "?", len(speakers))
            lines.append((voices[speaker], segment["text"]))
        make_speech.build(script.stem, lines)
    return sorted(folder.glob("*.wav"))


def recordings(data: Path, folder: Path, *, real_only: bool = False) -> list[tuple[str, np.ndarray, Annotation]]:
    """(name, audio, reference) for every recording the bench scores, real audio first."""
    items: list[tuple[str, np.ndarray, Annotation]] = []
    for uri in AMI_URIS:
        wav = data / f"ami_{uri}.wav"
        if wav.exists():
            items.append((f"AMI {uri}", read_wav(wav), rttm_reference(data / "dev.rttm", uri)))
    if (data / "dev.rttm").exists():
        one_talker = rttm_reference(data / "dev.rttm", "dev00").crop(Span(0.0, 12.0))
        items.append(("AMI dev00 0-12 s (one talker)", read_wav(FIXTURES / "ami_dev00_12s.wav"), one_talker))
    if real_only:
        return items
    for name in SCRIPTED:
        items.append((f"espeak {name}", read_wav(FIXTURES / f"{name}.wav"), json_reference(FIXTURES / f"{name}.json")))
    for wav in render_meetings(folder):
        items.append((f"espeak script {wav.stem}", read_wav(wav), json_reference(wav.with_suffix(".json"))))
    return items


def as_recorded(backend: EmbeddedBackend, audio: np.ndarray) -> tuple[list[SpeakerTurn], float]:
    """The server's path: fed every CATCH_UP_SECONDS of audio; returns the turns and the time at stop."""
    recording = StreamingDiarizer(backend)
    step = int(CATCH_UP_SECONDS * 16_000)
    for end in range(step, len(audio) + 1, step):
        recording.feed(audio[recording.settled : end])
    started = time.perf_counter()
    recording.feed(audio[recording.settled :], final=True)
    return recording.turns(), time.perf_counter() - started


def score(turns: list[SpeakerTurn], reference: Annotation) -> dict[str, float]:
    """DER (collar ±0.25 s) with its parts as % of reference speech, DER without collar, speakers."""
    hypothesis = Annotation(uri=reference.uri)
    for turn in turns:
        hypothesis[Span(turn.start, turn.end)] = turn.speaker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "uem approximated by the union of extents": expected
        parts = DiarizationErrorRate(collar=0.5)(reference, hypothesis, detailed=True)
        plain = DiarizationErrorRate(collar=0.0)(reference, hypothesis)
    total = max(parts["total"], 1e-9)
    return {
        "der": 100 * parts["diarization error rate"],
        "missed": 100 * parts["missed detection"] / total,
        "false_alarm": 100 * parts["false alarm"] / total,
        "confusion": 100 * parts["confusion"] / total,
        "der_none": 100 * plain,
        "speakers": len(hypothesis.labels()),
    }


def evaluate(backend: EmbeddedBackend, audio: np.ndarray, reference: Annotation) -> dict[str, float]:
    started = time.perf_counter()
    turns = backend.diarize(audio)
    elapsed = time.perf_counter() - started
    streamed, at_stop = as_recorded(backend, audio)
    return {
        **{f"one_{key}": value for key, value in score(turns, reference).items()},
        **score(streamed, reference),
        "at_stop": at_stop,
        "true_speakers": len(reference.labels()),
        "rtf": elapsed / (len(audio) / 16_000),
        "seconds": len(audio) / 16_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ami"))
    parser.add_argument("--real-only", action="store_true", help="only the AMI recordings (no espeak-ng)")
    args = parser.parse_args()
    backend = EmbeddedBackend.build()
    backend.diarize(read_wav(FIXTURES / "one_voice.wav"))  # warm-up
    print(f"{'':38} {'as recorded (server path); DER parts in % of speech':^58} | {'one call':^28}")
    print(
        f"{'recording':32} {'sec':>5} {'DER±0.25s':>9} {'missed':>6} {'FA':>5} {'conf':>5} {'DER none':>8}"
        f" {'spk/ref':>7} {'at stop':>7} | {'DER±0.25s':>9} {'DER none':>8} {'spk':>3} {'s per s':>7}"
    )
    ami: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, audio, reference in recordings(args.data, Path(folder), real_only=args.real_only):
            r = evaluate(backend, audio, reference)
            if name.startswith("AMI") and "one talker" not in name:
                ami.append(r)
            print(
                f"{name:32} {r['seconds']:5.1f} {r['der']:8.1f}% {r['missed']:5.1f}% {r['false_alarm']:4.1f}%"
                f" {r['confusion']:4.1f}% {r['der_none']:7.1f}% {r['speakers']:>3}/{r['true_speakers']:<3}"
                f" {r['at_stop']:6.2f}s | {r['one_der']:8.1f}% {r['one_der_none']:7.1f}% {r['one_speakers']:>3}"
                f" {r['rtf']:7.3f}"
            )
    if ami:
        mean = {key: float(np.mean([r[key] for r in ami])) for key in ami[0]}
        print(
            f"{f'mean over {len(ami)} AMI excerpts':32} {'':5} {mean['der']:8.1f}% {mean['missed']:5.1f}%"
            f" {mean['false_alarm']:4.1f}% {mean['confusion']:4.1f}% {mean['der_none']:7.1f}% {'':7} {'':7} |"
            f" {mean['one_der']:8.1f}% {mean['one_der_none']:7.1f}%"
        )
    print("\nPublished pyannote figures (full test sets, for orientation only, GPU):")
    for label, der in PUBLISHED:
        print(f"  {label}: DER {der:.1f}%")


if __name__ == "__main__":
    main()
