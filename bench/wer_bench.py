"""Final-transcript accuracy of the live policy on a scripted corpus. Prints figures; asserts nothing.

    .venv/bin/python bench/wer_bench.py [--step 0.4] [--renders 3]

The stream benchmark's files hold 60 words each, so one word moves their WER by 1.7 %. This one
renders the five meeting scripts of tests/fixtures/meetings with espeak-ng (four voices, 0.8 s
between turns; needs espeak-ng and sox) and adds the two scripted fixtures: about 840 words.
Each recording is fed to `LiveTranscriber` and the `FullContextPass` beside it in steps of `--step`
seconds of audio, as fast as the CPU allows (the same calls the server makes, without the real-time
wait), then finished; the final transcript and the committed live text are scored against the
script, beside bare `WhisperModel.transcribe` at its defaults (beam 5, the whole temperature
ladder) on the whole file. CPU seconds are this process's, per audio second.

sox dithers as it resamples espeak-ng's output, so every render of a script differs in its last bit,
and that alone moves one run's corpus WER by a point or more, bare faster-whisper's as much as the
live policy's: the corpus is rendered `--renders` times and the figures are the mean over the
renders (each render's is printed too). Every run starts from the same random state (Whisper's
temperature fallback samples), so a render gives the same figures each time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observability import Metrics  # noqa: E402
from services.asr_service import WhisperRecognizer, load_recognizer  # noqa: E402
from services.audio_buffer import AudioCipher, SecureAudioBuffer  # noqa: E402
from services.full_context_pass import FullContextPass  # noqa: E402
from services.live_policy import LivePolicy  # noqa: E402
from services.live_transcriber import LiveTranscriber  # noqa: E402
from services.settings import load_settings  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
_TOKEN = re.compile(r"[a-z0-9']+")


def normalise(text: str) -> str:
    return " ".join(_TOKEN.findall(text.lower().replace("-", " ")))


def render_corpus(folder: Path) -> list[Path]:
    """The meeting scripts as espeak-ng recordings (WAV + JSON turns) in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.spec_from_file_location("make_speech", FIXTURES / "make_speech.py")
    assert spec is not None and spec.loader is not None
    make_speech = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_speech)
    make_speech.HERE = folder
    voices = list(make_speech.VOICES)
    for script in sorted((FIXTURES / "meetings").glob("*.json")):
        speakers: dict[str, int] = {}
        lines = [
            (voices[speakers.setdefault(s.get("speaker") or "?", len(speakers)) % len(voices)], s["text"])
            for s in json.loads(script.read_text())["segments"]
        ]
        make_speech.build(script.stem, lines)
    return sorted(folder.glob("*.wav"))


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def live_texts(recognizer: WhisperRecognizer, pcm: np.ndarray, policy: LivePolicy, step: float) -> tuple[str, str]:
    """The committed live text and the final transcript (the full-context pass beside it, as the pump runs it)."""
    buffer = SecureAudioBuffer(AudioCipher(None))
    live = LiveTranscriber(recognizer, buffer, policy)
    full = FullContextPass(recognizer, buffer, live.speech)
    frame = int(step * 16_000)
    for offset in range(0, len(pcm), frame):
        buffer.append(pcm[offset : offset + frame])
        live.advance()
        if (job := live.take_commit()) is not None:
            live.apply_commit(job, live.transcribe_commit(job))
        if full.due():
            full.step()
    live.hear_to()
    full.finish()
    live.finish()
    return " ".join(s.text for s in live.committed), " ".join(s.text for s in full.transcript(live.committed))


def bare_text(recognizer: WhisperRecognizer, pcm: np.ndarray) -> str:
    """Bare faster-whisper on the whole file, at its defaults (beam 5, the whole temperature ladder)."""
    pieces, _ = recognizer.model.transcribe(pcm.astype(np.float32) / 32768, beam_size=5)
    return " ".join(piece.text for piece in pieces)


@dataclass
class Scores:
    """WER of each run by policy ("live", "bare") and recording, one figure per render; CPU by policy."""

    wer: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"final": {}, "live": {}, "bare": {}})
    cpu: dict[str, float] = field(default_factory=lambda: {"final": 0.0, "bare": 0.0})
    words: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def corpus(self, name: str) -> list[float]:
        """The corpus WER of `name` in each render (errors over all the words)."""
        renders = len(next(iter(self.wer[name].values())))
        total = sum(self.words.values())
        return [sum(self.wer[name][stem][r] * n for stem, n in self.words.items()) / total for r in range(renders)]


def score_file(path: Path, recognizer: WhisperRecognizer, policy: LivePolicy, step: float, scores: Scores) -> None:
    pcm = read_pcm(path)
    turns = json.loads(path.with_suffix(".json").read_text())["turns"]
    reference = normalise(" ".join(turn["text"] for turn in turns))
    scores.words[path.stem], scores.seconds[path.stem] = len(reference.split()), len(pcm) / 16_000
    for name in ("final", "bare"):
        ctranslate2.set_random_seed(0)  # Whisper's fallbacks sample: every run starts from the same random state
        started = time.process_time()
        if name == "final":
            texts = dict(zip(("live", "final"), live_texts(recognizer, pcm, policy, step), strict=True))
        else:
            texts = {"bare": bare_text(recognizer, pcm)}
        scores.cpu[name] += time.process_time() - started
        for key, text in texts.items():
            scores.wer[key].setdefault(path.stem, []).append(jiwer.wer(reference, normalise(text)))


def report(scores: Scores, renders: int) -> None:
    print(f"{'recording':24} {'s':>5} {'words':>5} {'final WER':>9} {'live WER':>8} {'bare WER':>8}  (mean of renders)")
    for stem, count in scores.words.items():
        final, live, bare = (float(np.mean(scores.wer[name][stem])) for name in ("final", "live", "bare"))
        print(f"{stem:24} {scores.seconds[stem]:5.1f} {count:5d} {final:9.1%} {live:8.1%} {bare:8.1%}")
    audio_seconds = sum(scores.seconds.values())
    print(f"\ncorpus: {audio_seconds:.0f} s, {sum(scores.words.values())} words, {renders} renders")
    for name in ("final", "live", "bare"):
        each = ", ".join(f"{rate:.1%}" for rate in scores.corpus(name))
        print(f"WER {name:5} {float(np.mean(scores.corpus(name))):.1%}  (each render: {each})")
    bare = float(np.mean(scores.corpus("bare")))
    for name in ("final", "live"):
        print(f"ratio {name} / bare {float(np.mean(scores.corpus(name))) / bare:.2f}")
    cpu = {name: seconds / audio_seconds / renders for name, seconds in scores.cpu.items()}
    print(f"CPU-s per audio s (this process, back to back): live + final {cpu['final']:.3f}, bare {cpu['bare']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=float, default=0.4, help="seconds of audio per live step")
    parser.add_argument("--renders", type=int, default=3, help="renders of the corpus to average over (see above)")
    args = parser.parse_args()
    settings = load_settings(_env_file=None)
    recognizer = load_recognizer(settings, Metrics())
    policy = LivePolicy.from_settings(settings)
    print(f"live policy: {policy}, {args.renders} renders\n")
    scores = Scores()
    with tempfile.TemporaryDirectory() as folder:
        for render in range(args.renders):
            files = render_corpus(Path(folder) / str(render))
            for path in [*files, FIXTURES / "meeting_two_voices.wav", FIXTURES / "meeting_three_voices.wav"]:
                score_file(path, recognizer, policy, args.step, scores)
    report(scores, args.renders)


if __name__ == "__main__":
    main()
