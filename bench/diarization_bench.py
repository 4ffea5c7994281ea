"""Diarisation accuracy and speed of the embedded (offline CPU) backend. A script, not a test.

    .venv/bin/python bench/diarization_bench.py [--data /work/shared/data/ami] [--real-only]
        [--oracle-vad] [--perturb]

Prints, per recording, DER (pyannote.metrics; bench-only dependency `pyannote.metrics`) with a
±0.25 s forgiveness collar (NIST convention; pyannote's `collar=0.5` is the total width) and with
none, overlapped speech scored, and the number of speakers found against the reference. Real
audio first: the five AMI far-field excerpts (reference RTTM beside them) and AMI dev00's first
12 s, where one talker speaks (the committed test fixture), and one talker's speech alone
gathered from two excerpts (MEE009 in dev00 and dev01, cut where the reference has him alone);
then scripted espeak-ng meetings: the test fixtures with 1-4 voices, the five meeting scripts of
tests/fixtures/meetings and a 90 s monologue per voice, rendered here.

`--oracle-vad` also runs the server path with the reference turns as the speech detector, so
what is left is clustering and overlap (one label per moment), and prints each reference
speaker's speech heard alone. `--perturb` prints the speakers found when the same recording starts
0.25, 0.5 or 1 s later or is half or twice as loud: a count that moves with the framing will
move on recordings we do not have.

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
    texts = [text for script_lines in make_speech.SCRIPTS.values() for _, text in script_lines]
    for speaker in make_speech.VOICES:
        make_speech.build(f"monologue_{speaker}", [(speaker, text) for text in texts])
    return sorted(folder.glob("*.wav"))


def solo_spans(reference: Annotation, speaker: str, shortest: float = 1.0) -> list[tuple[float, float]]:
    """Stretches of at least `shortest` seconds where `speaker` speaks and nobody else does."""
    others = reference.subset([label for label in reference.labels() if label != speaker]).get_timeline()
    own = reference.label_timeline(speaker).support()
    alone = own.extrude(others.support()) if len(others) else own
    return [(span.start, span.end) for span in alone if span.duration >= shortest]


def one_talker_gathered(data: Path) -> tuple[np.ndarray, Annotation]:
    """MEE009's solo speech in AMI dev00 and dev01, joined with 0.5 s of silence between pieces."""
    pieces: list[np.ndarray] = []
    reference, cursor, gap = Annotation(uri="MEE009"), 0.0, np.zeros(8_000, dtype=np.float32)
    for uri in ("dev00", "dev01"):
        audio = read_wav(data / f"ami_{uri}.wav")
        for start, end in solo_spans(rttm_reference(data / "dev.rttm", uri), "MEE009"):
            piece = audio[int(start * 16_000) : int(end * 16_000)]
            reference[Span(cursor, cursor + len(piece) / 16_000)] = "MEE009"
            pieces += [piece, gap]
            cursor += len(piece) / 16_000 + 0.5
    return np.concatenate(pieces), reference


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
        if (data / "ami_dev01.wav").exists():
            items.append(("AMI MEE009 alone, dev00+dev01", *one_talker_gathered(data)))
    if real_only:
        return items
    for name in SCRIPTED:
        items.append((f"espeak {name}", read_wav(FIXTURES / f"{name}.wav"), json_reference(FIXTURES / f"{name}.json")))
    for wav in render_meetings(folder):
        items.append((f"espeak script {wav.stem}", read_wav(wav), json_reference(wav.with_suffix(".json"))))
    return items


def as_recorded(
    backend: EmbeddedBackend, audio: np.ndarray, oracle: Annotation | None = None
) -> tuple[list[SpeakerTurn], float]:
    """The server's path: fed every CATCH_UP_SECONDS of audio; returns the turns and the time at stop.

    With `oracle`, its speech (the reference turns) replaces the VAD.
    """

    def reference_speech(chunk: np.ndarray) -> list[tuple[int, int]]:
        assert oracle is not None
        offset, spans = recording.settled, []
        for span in oracle.get_timeline().support():
            start, end = int(span.start * 16_000) - offset, int(span.end * 16_000) - offset
            if end > 0 and start < len(chunk):
                spans.append((max(start, 0), min(end, len(chunk))))
        return spans

    recording = StreamingDiarizer(backend, reference_speech if oracle is not None else None)
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


def oracle_table(backend: EmbeddedBackend, items: list[tuple[str, np.ndarray, Annotation]]) -> None:
    """The server path with the reference speech as the VAD: what detection leaves to clustering."""
    print("\nServer path, reference turns as the VAD (DER parts in % of speech; speech heard alone per speaker)")
    ders = []
    for name, audio, reference in items:
        r = score(as_recorded(backend, audio, reference)[0], reference)
        ders.append(r["der"])
        alone = ", ".join(
            f"{label} {sum(end - start for start, end in solo_spans(reference, label, 0.0)):.1f} s"
            for label in sorted(reference.labels())
        )
        print(
            f"{name:32} DER {r['der']:5.1f}% missed {r['missed']:4.1f}% FA {r['false_alarm']:4.1f}%"
            f" conf {r['confusion']:4.1f}% spk {r['speakers']}/{len(reference.labels())}  alone: {alone}"
        )
    print(f"{'mean':32} DER {np.mean(ders):5.1f}%")


def perturb_table(backend: EmbeddedBackend, items: list[tuple[str, np.ndarray, Annotation]]) -> None:
    """Speakers found (server path) on the same recording reframed: later starts, other gains."""
    variants = {"as is": (0.0, 1.0), "+0.25 s": (0.25, 1.0), "+0.5 s": (0.5, 1.0), "+1 s": (1.0, 1.0)}
    variants |= {"x0.5": (0.0, 0.5), "x2": (0.0, 2.0)}
    print(f"\nSpeakers found on shifted / rescaled copies (server path)\n{'recording':32} {'ref':>3}", end="")
    print("".join(f" {label:>8}" for label in variants))
    for name, audio, reference in items:
        counts = []
        for shift, gain in variants.values():
            copy = np.clip(audio[int(shift * 16_000) :] * gain, -1.0, 1.0)
            counts.append(len({turn.speaker for turn in as_recorded(backend, copy)[0]}))
        print(f"{name:32} {len(reference.labels()):>3}" + "".join(f" {count:>8}" for count in counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ami"))
    parser.add_argument("--real-only", action="store_true", help="only the AMI recordings (no espeak-ng)")
    parser.add_argument("--oracle-vad", action="store_true", help="also with the reference turns as the VAD")
    parser.add_argument("--perturb", action="store_true", help="also the counts on shifted and rescaled copies")
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
            if name in {f"AMI {uri}" for uri in AMI_URIS}:
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
    real = recordings(args.data, Path(), real_only=True)
    if args.oracle_vad:
        oracle_table(backend, [item for item in real if item[0] in {f"AMI {uri}" for uri in AMI_URIS}])
    if args.perturb:
        perturb_table(backend, real)
    print("\nPublished pyannote figures (full test sets, for orientation only, GPU):")
    for label, der in PUBLISHED:
        print(f"  {label}: DER {der:.1f}%")


if __name__ == "__main__":
    main()
