"""Capacity benchmark: N copies of the scripted meeting streamed at once to one server. Prints figures.

    .venv/bin/python bench/capacity_bench.py [--counts 1 2 4 6 8 12 16] [--root DIR ...] [--env KEY=VALUE ...]
    .venv/bin/python bench/capacity_bench.py --workers 2 [--counts ...] [--env ADMISSION_CPU_CORES=1 ...]

For each N it starts `python app.py` (from each `--root` in turn, so the same script measures
another checkout, e.g. main before a change, interleaved with this one: on a shared machine both
then see the same outside load; the load average is printed with each row), offers N copies of the
~53 s scripted meeting (the two- and three-voice fixtures back to back, as `bench/stream_bench.py`
builds it) at once, each at real-time pace in 100 ms frames, and prints one row. With `--workers N`
it measures Redis mode instead: a throw-away redis-server, N `python -m worker` processes and one
`uvicorn app:app` gateway of this checkout (tests/redis_server.py starts them as the tests do),
offered the same streams once every worker's load report is in; the CPU is the sum over the
gateway and the workers. Each row:

- admitted / refused: a stream is refused when its first message is the `busy` error (close 1013)
  before it sent any audio; the `retry_after` hint is shown when the server gives one;
- word emission lag p50 / p90 of every admitted stream (for each script word: when it first shows
  in any partial minus when it was spoken); the row gives the median p50 and the worst p90;
- stop -> final, the worst admitted stream;
- server CPU seconds per audio second per admitted stream, while streaming (from /proc);
- final WER against the script, worst admitted stream, beside bare faster-whisper on the same file
  in the same run (`WhisperModel.transcribe`, beam 5, one thread);
- the admission prior the server started with (`/health` capacity: its CPU-s per audio s, where it
  came from, and the calibration's reference CPU seconds) and the load meter's cost per meeting
  when the first stream stopped (the measured cost once a full box thinned its drafts).

Asserts nothing. Run it under `flock /tmp/heavy.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jiwer
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stream_bench import (  # noqa: E402
    FIXTURES,
    LagTracker,
    bare_whisper,
    build_combined,
    cpu_seconds,
    pct,
    read_wav,
    script_reference,
    words_of,
)
from tests.redis_server import cluster_env, gateway, redis_server, worker  # noqa: E402
from tests.support import free_port  # noqa: E402


def start_server(root: Path, port: int, tmp: Path, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "LLM_PROVIDER_ORDER": "offline",
        "MEETING_LOG_PATH": str(tmp / "meetings.jsonl"),
        "DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "MAX_SESSIONS": "16",
        **extra,
    }
    server = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env)
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


async def stream(port: int, pcm: np.ndarray, tracker: LagTracker, delay: float) -> dict[str, object]:
    """One meeting at real-time pace; {"refused": message} when the server turned it away."""
    await asyncio.sleep(delay)
    result: dict[str, object] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        first = json.loads(await ws.recv())  # the refusal comes before `start`; else `connected`
        if first["type"] == "error":
            await ws.wait_closed()
            return {"refused": first, "close": ws.close_code}
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        began = time.monotonic()

        async def reader() -> dict[str, object]:
            async for raw in ws:
                message = json.loads(raw)
                now = time.monotonic() - began
                if message["type"] == "partial_transcript":
                    tracker.update(message["segment_id"], message["text"], now)
                elif message["type"] == "final":
                    result["final_at"] = now
                    return message
            raise RuntimeError(f"socket closed before final ({ws.close_code})")

        reading = asyncio.create_task(reader())
        for index, offset in enumerate(range(0, len(pcm), 1600)):
            await ws.send(pcm[offset : offset + 1600].tobytes())
            await asyncio.sleep(max(0.0, began + (index + 1) * 0.1 - time.monotonic()))
        result["stop_at"] = time.monotonic() - began
        result["stop_clock"] = time.monotonic()
        await ws.send(json.dumps({"type": "stop"}))
        final = await reading
    result["transcript"] = " ".join(s["text"] for s in final["segments"])  # type: ignore[index, union-attr]
    return result


@contextlib.contextmanager
def redis_cluster(workers: int, tmp: Path, extra: dict[str, str]) -> Iterator[tuple[int, list[int]]]:
    """Redis mode: `workers` workers and one gateway; the gateway's port and every process's PID."""
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        defaults = {
            "LOG_LEVEL": "WARNING",
            "MAX_SESSIONS": "16",
            "WORKER_MAX_SESSIONS": "16",  # the load decides, as MAX_SESSIONS=16 lets it in one process
            "INFERENCE_WORKERS": "2",
        }
        env = cluster_env(tmp, redis_url, f"sqlite+aiosqlite:///{tmp / 'meetings.db'}", **(defaults | extra))
        pids = [stack.enter_context(worker(env, tmp / f"worker_{i}.log"))[1].pid for i in range(workers)]
        base_url, server = stack.enter_context(gateway(env, tmp / "gateway.log"))
        deadline = time.monotonic() + 60
        while httpx.get(f"{base_url}/health", timeout=5).json()["capacity"]["live_workers"] < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers' load reports did not come")
            time.sleep(0.5)
        yield int(base_url.rsplit(":", 1)[1]), [server.pid, *pids]


@contextlib.contextmanager
def one_process(root: Path, tmp: Path, extra: dict[str, str]) -> Iterator[tuple[int, list[int]]]:
    port = free_port()
    server = start_server(root, port, tmp, extra)
    try:
        yield port, [server.pid]
    finally:
        server.terminate()
        server.wait(timeout=90)


async def watch_meter(port: int, done: asyncio.Event) -> list[tuple[float, dict[str, object]]]:
    """/health's capacity block about once a second until `done` (monotonic time, block)."""
    readings: list[tuple[float, dict[str, object]]] = []
    async with httpx.AsyncClient(timeout=5) as client:
        while not done.is_set():
            health = (await client.get(f"http://127.0.0.1:{port}/health")).json()
            readings.append((time.monotonic(), health.get("capacity", {})))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)
    return readings


def meter_figures(readings: list[tuple[float, dict[str, object]]], first_stop: float) -> dict[str, object]:
    """The prior the server started with and the meter's cost when the first stream stopped."""
    start = readings[0][1]
    before_stop = [capacity for at, capacity in readings if at <= first_stop] or [start]
    return {
        "prior": start.get("session_cpu_prior"),
        "prior_source": start.get("prior_source"),
        "reference_cpu_s": start.get("reference_cpu_seconds"),
        "meter_cost_at_stop": before_stop[-1].get("session_cpu"),
    }


async def offer(
    count: int, port: int, pids: list[int], pcm: np.ndarray, reference: list, truth: str
) -> dict[str, object]:
    trackers = [LagTracker(reference) for _ in range(count)]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    done = asyncio.Event()
    watching = asyncio.create_task(watch_meter(port, done))
    # all at once, 50 ms apart so the order of admission is defined
    runs = await asyncio.gather(*(stream(port, pcm, trackers[i], 0.05 * i) for i in range(count)))
    cpu_streaming = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    done.set()
    readings = await watching
    stops = [float(run["stop_clock"]) for run in runs if "stop_clock" in run]
    served = [(run, tracker) for run, tracker in zip(runs, trackers, strict=True) if "refused" not in run]
    refused = [run for run in runs if "refused" in run]
    duration = len(pcm) / 16000
    p50s = [pct(tracker.lags(), 50) for _, tracker in served]
    p90s = [pct(tracker.lags(), 90) for _, tracker in served]
    finals = [float(run["final_at"]) - float(run["stop_at"]) for run, _ in served]
    script = " ".join(words_of(truth))
    wers = [jiwer.wer(script, " ".join(words_of(str(run["transcript"])))) for run, _ in served]
    hints = sorted({str(run["refused"]["message"]) for run in refused})  # type: ignore[index]
    return {
        "offered": count,
        "served": len(served),
        "refused": len(refused),
        "refused_codes": sorted({f"{run['refused']['code']}/{run['close']}" for run in refused}),  # type: ignore[index]
        "lag_p50": float(np.median(p50s)) if p50s else float("nan"),
        "lag_p90_worst": max(p90s, default=float("nan")),
        "lag_p90_all": [round(v, 2) for v in p90s],
        "final_worst": max(finals, default=float("nan")),
        "cpu_per_audio_s": cpu_streaming / (duration * len(served)) if served else float("nan"),
        "wer_worst": max(wers, default=float("nan")),
        "wer_mean": float(np.mean(wers)) if wers else float("nan"),
        "hint": hints[0] if hints else "",
    } | meter_figures(readings, min(stops, default=time.monotonic()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", nargs="*", type=int, default=[1, 2, 4, 6, 8, 12, 16])
    parser.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkouts whose app.py is served")
    parser.add_argument("--env", nargs="*", default=[], help="extra server settings, KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--workers", type=int, default=0, help="Redis mode with this many workers (0: one process)")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    meeting = Path(tempfile.gettempdir()) / "bench_meeting_53s.wav"
    build_combined(meeting, [FIXTURES / "meeting_two_voices.wav", FIXTURES / "meeting_three_voices.wav"])
    pcm, _ = read_wav(meeting)
    bare_words, bare_text, _ = bare_whisper(pcm)
    scripted = script_reference(meeting, bare_words)
    assert scripted is not None
    reference, truth = scripted
    bare_wer = jiwer.wer(" ".join(words_of(truth)), " ".join(words_of(bare_text)))
    where = f"Redis mode, {args.workers} worker(s) + 1 gateway" if args.workers else [str(r) for r in args.root]
    print(f"servers: {where}  settings: {extra or 'defaults'}  meeting: {len(pcm) / 16000:.1f} s")
    rows = []
    for count in args.counts:
        for root in args.root[:1] if args.workers else args.root:
            load_before = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as tmp:
                serving = (
                    redis_cluster(args.workers, Path(tmp), extra)
                    if args.workers
                    else one_process(root, Path(tmp), extra)
                )
                with serving as (port, pids):
                    row = await offer(count, port, pids, pcm, reference, truth)
            name = f"redis x{args.workers}" if args.workers else root.name
            row |= {"root": name, "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nbare faster-whisper WER on the same file: {bare_wer:.1%}")
    print(
        "\n| server | load avg | offered | served / refused | lag p50 (median) / p90 (worst stream) s "
        "| stop -> final (worst) s | CPU-s per audio s per stream | WER worst (mean) | bare WER "
        "| prior (source, reference CPU-s) | meter cost at stop |"
    )
    print("|" + " --- |" * 11)
    for row in rows:
        print(
            f"| {row['root']} | {row['load']} | {row['offered']} | {row['served']} / {row['refused']} "
            f"| {row['lag_p50']:.2f} / "
            f"{row['lag_p90_worst']:.2f} | {row['final_worst']:.2f} | {row['cpu_per_audio_s']:.3f} "
            f"| {row['wer_worst']:.1%} ({row['wer_mean']:.1%}) | {bare_wer:.1%} "
            f"| {row['prior']} ({row['prior_source']}, {row['reference_cpu_s']}) | {row['meter_cost_at_stop']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
