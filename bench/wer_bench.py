"""Final-transcript accuracy of the live policy on a scripted corpus. Prints figures; asserts nothing.

    .venv/bin/python bench/wer_bench.py [--step 0.4]

The stream benchmark's files hold 60 words each, so one word moves their WER by 1.7 %. This one
renders the five meeting scripts of tests/fixtures/meetings with espeak-ng (four voices, 0.8 s
between turns; needs espeak-ng and sox) and adds the two scripted fixtures: about 840 words.
Each recording is fed to `LiveTranscriber` in steps of `--step` seconds of audio, as fast as the
CPU allows (the same calls the server makes, without the real-time wait), then finished; the
committed text is scored against the script, beside bare `WhisperModel.transcribe` at its defaults
(beam 5, the whole temperature ladder) on the whole file. CPU seconds are this process's, per audio second.
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
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observability import Metrics  # noqa: E402
from services.asr_service import WhisperRecognizer, load_recognizer  # noqa: E402
from services.audio_buffer import AudioCipher, SecureAudioBuffer  # noqa: E402
from services.live_policy import LivePolicy  # noqa: E402
from services.live_transcriber import LiveTranscriber  # noqa: E402
from services.settings import load_settings  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
_TOKEN = re.compile(r"[a-z0-9']+")


def normalise(text: str) -> str:
    return " ".join(_TOKEN.findall(text.lower().replace("-", " ")))


def render_corpus(folder: Path) -> list[Path]:
    """The meeting scripts as espeak-ng recordings (WAV + JSON turns) in `folder`."""
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


def live_text(recognizer: WhisperRecognizer, pcm: np.ndarray, policy: LivePolicy, step: float) -> str:
    buffer = SecureAudioBuffer(AudioCipher(None))
    live = LiveTranscriber(recognizer, buffer, policy)
    frame = int(step * 16_000)
    for offset in range(0, len(pcm), frame):
        buffer.append(pcm[offset : offset + frame])
        live.advance()
        if (job := live.take_commit()) is not None:
            live.apply_commit(job, live.transcribe_commit(job))
    live.finish()
    return " ".join(segment.text for segment in live.committed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=float, default=0.4, help="seconds of audio per live step")
    args = parser.parse_args()
    ctranslate2.set_random_seed(0)  # Whisper falls back to sampling on hard windows: make runs repeatable
    settings = load_settings(_env_file=None)
    recognizer = load_recognizer(settings, Metrics())
    bare = recognizer.model
    policy = LivePolicy.from_settings(settings)
    print(f"live policy: {policy}\n")
    totals = {"live": [0.0, 0.0], "bare": [0.0, 0.0]}
    words = audio_seconds = 0.0
    with tempfile.TemporaryDirectory() as folder:
        files = render_corpus(Path(folder))
        files += [FIXTURES / "meeting_two_voices.wav", FIXTURES / "meeting_three_voices.wav"]
        print(f"{'recording':24} {'s':>5} {'words':>5} {'live WER':>8} {'bare WER':>8}")
        for path in files:
            pcm = read_pcm(path)
            turns = json.loads(path.with_suffix(".json").read_text())["turns"]
            reference = normalise(" ".join(turn["text"] for turn in turns))
            count = len(reference.split())
            row = {}
            for name in ("live", "bare"):
                started = time.process_time()
                if name == "live":
                    text = live_text(recognizer, pcm, policy, args.step)
                else:  # bare faster-whisper: its defaults (beam 5, the whole temperature ladder)
                    pieces, _ = bare.transcribe(pcm.astype(np.float32) / 32768, beam_size=5)
                    text = " ".join(piece.text for piece in pieces)
                row[name] = jiwer.wer(reference, normalise(text))
                totals[name][0] += row[name] * count
                totals[name][1] += time.process_time() - started
            words += count
            audio_seconds += len(pcm) / 16_000
            print(f"{path.stem:24} {len(pcm) / 16_000:5.1f} {count:5d} {row['live']:7.1%} {row['bare']:7.1%}")
    live, bare = totals["live"][0] / words, totals["bare"][0] / words
    print(f"\ncorpus: {audio_seconds:.0f} s, {words:.0f} words")
    print(f"WER  live {live:.1%}   bare faster-whisper {bare:.1%}   ratio {live / bare:.2f}")
    print(
        f"CPU-s per audio s (this process, steps back to back)  live {totals['live'][1] / audio_seconds:.3f}"
        f"   bare {totals['bare'][1] / audio_seconds:.3f}"
    )


if __name__ == "__main__":
    main()
