"""Where the live transcriber's CPU goes, per path, without the server. Prints figures; asserts nothing.

    .venv/bin/python bench/live_profile.py [file.wav ...]

Feeds each recording (default: every AMI excerpt in ../shared/data/ami, then the two scripted
fixtures) to `LiveTranscriber` in 0.4 s steps, as the server's pump would, but in one process and
as fast as the CPU allows: careful passes run in line, so timing noise from other jobs on the
machine does not move the figures. Per file it prints the CPU seconds per audio second
(`process_time`) of the draft / careful / stop paths and their ratio to the offline floor (the
cheaper of bare `WhisperModel.transcribe` at its defaults and with `vad_filter=True,
temperature=0`, same run), encoder / decoder calls and their CPU by path, and the *algorithmic*
word lag and live coverage: the audio time of the step whose update first shows a reference
word (bare faster-whisper's words, as in `stream_bench.py`) minus the word's end; compute time
is not counted, so these are lower bounds of what the server shows. Use `stream_bench.py` for
the figures the targets are stated in.
"""

from __future__ import annotations

import difflib
import sys
import time
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stream_bench import FIXTURES, SHARED_AMI, RefWord, read_wav, words_of  # noqa: E402

from observability import Metrics  # noqa: E402
from services.asr_counters import current_path  # noqa: E402
from services.asr_service import WhisperRecognizer, load_recognizer  # noqa: E402
from services.audio_buffer import AudioCipher, SecureAudioBuffer  # noqa: E402
from services.live_policy import LivePolicy  # noqa: E402
from services.live_transcriber import LiveTranscriber  # noqa: E402
from services.settings import load_settings  # noqa: E402

STEP = 0.4


def reference(recognizer: WhisperRecognizer, pcm: np.ndarray) -> tuple[list[RefWord], float]:
    """Bare faster-whisper's words with end times, and the offline floor's CPU seconds."""
    model = recognizer.model
    audio = pcm.astype(np.float32) / 32768.0
    segments = list(model.transcribe(audio, beam_size=5, word_timestamps=True)[0])
    words = [RefWord(w, word.end) for s in segments for word in s.words or [] for w in words_of(word.word)]
    floors = []
    for options in ({}, {"vad_filter": True, "temperature": 0.0}):
        started = time.process_time()
        list(model.transcribe(audio, **options)[0])
        floors.append(time.process_time() - started)
    return words, min(floors)


class OpTimer:
    """CPU seconds and calls of the CTranslate2 model's encode / generate / align, by live path."""

    def __init__(self, recognizer: WhisperRecognizer) -> None:
        self.ops: dict[str, list[float]] = {}
        model = recognizer.model.model
        for op in ("encode", "generate", "align"):
            setattr(model, op, self._timed(op, getattr(model, op)))

    def _timed(self, op: str, call):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                entry = self.ops.setdefault(f"{current_path()}.{op}", [0, 0.0])
                entry[0] += 1
                entry[1] += time.process_time() - started

        return timed


def stream(recognizer: WhisperRecognizer, pcm: np.ndarray, policy: LivePolicy):  # type: ignore[no-untyped-def]
    """Feed `pcm` in steps; the CPU per path, what the client saw after each step, the final text."""
    buffer = SecureAudioBuffer(AudioCipher(None))
    live = LiveTranscriber(recognizer, buffer, policy)
    cpu = {"draft": 0.0, "careful": 0.0, "stop": 0.0}
    shown: list[tuple[float, dict[int, str]]] = []
    segments: dict[int, str] = {}
    frame = int(STEP * 16_000)
    for offset in range(0, len(pcm), frame):
        buffer.append(pcm[offset : offset + frame])
        started = time.process_time()
        updates = live.advance()
        cpu["draft"] += time.process_time() - started  # drafts, freezes and forced cuts
        if (job := live.take_commit()) is not None:
            started = time.process_time()
            updates += live.apply_commit(job, live.transcribe_commit(job))
            cpu["careful"] += time.process_time() - started
        for update in updates:
            segments[update.segment_id] = update.segment.text
        if updates:
            shown.append((buffer.samples / 16_000, dict(segments)))
    started = time.process_time()
    live.finish()
    cpu["stop"] = time.process_time() - started
    return cpu, shown, " ".join(segment.text for segment in live.committed)


def lag_figures(ref: list[RefWord], shown: list[tuple[float, dict[int, str]]], duration: float):  # type: ignore[no-untyped-def]
    emitted: dict[int, float] = {}
    for at, segments in shown:
        hypothesis = [w for sid in sorted(segments) for w in words_of(segments[sid])]
        matcher = difflib.SequenceMatcher(a=[w.word for w in ref], b=hypothesis, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                emitted.setdefault(block.a + k, at)
    lags = [emitted[i] - w.end for i, w in enumerate(ref) if i in emitted]
    live = sum(1 for at in emitted.values() if at <= duration) / max(1, len(ref))
    p50, p90 = (float(np.percentile(lags, q)) if lags else float("nan") for q in (50, 90))
    return p50, p90, live


def main() -> None:
    ctranslate2.set_random_seed(0)
    settings = load_settings(_env_file=None)
    recognizer = load_recognizer(settings, Metrics())
    policy = LivePolicy.from_settings(settings)
    timer = OpTimer(recognizer)
    files = [Path(f) for f in sys.argv[1:]] or [
        *sorted(SHARED_AMI.glob("*.wav")),
        FIXTURES / "meeting_two_voices.wav",
        FIXTURES / "meeting_three_voices.wav",
    ]
    print(f"live policy: {policy}, steps of {STEP} s")
    for path in files:
        pcm, _ = read_wav(path)
        duration = len(pcm) / 16_000
        ref, floor = reference(recognizer, pcm)
        timer.ops.clear()
        cpu, shown, final = stream(recognizer, pcm, policy)
        p50, p90, live = lag_figures(ref, shown, duration)
        total = sum(cpu.values()) / duration
        wer = jiwer.wer(" ".join(w.word for w in ref), " ".join(words_of(final))) if ref else float("nan")
        paths = " / ".join(f"{cpu[p] / duration:.3f}" for p in ("draft", "careful", "stop"))
        print(
            f"{path.stem:22} CPU-s/s {total:.3f} ({total / (floor / duration):.1f}x floor {floor / duration:.3f}) "
            f"draft/careful/stop {paths}  lag {p50:.2f}/{p90:.2f} s  live {live:.0%}  WER from bare {wer:.1%}"
        )
        ops = ", ".join(f"{k} {n:.0f}:{c / duration:.3f}" for k, (n, c) in sorted(timer.ops.items()))
        print(f"{'':22} calls:CPU-s/s  {ops}")


if __name__ == "__main__":
    main()
