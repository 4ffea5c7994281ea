"""Soak benchmark: many sessions against one server, printing its memory (RSS) over time. Asserts nothing.

    .venv/bin/python bench/soak_bench.py --sessions 50               # one after another
    .venv/bin/python bench/soak_bench.py --concurrent 8 --minutes 10 # eight at once, for ten minutes

Starts `python app.py` (offline summariser, embedded diariser), streams a ~62 s meeting made of the
scripted fixtures at `--pace` x real time over /ws, waits for each `final`, lets the server settle
(queue empty, no session) and reads its RSS from /proc. A leak shows as RSS that keeps growing
after warm-up; fragmentation as growth that `malloc_trim` would give back (`--no-trim` compares).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port, load_wav, stream_audio, ws_url  # noqa: E402

FIXTURES = ("meeting_three_voices.wav", "meeting_two_voices.wav", "one_voice.wav")


def meeting_audio() -> tuple[np.ndarray, int]:
    parts = [load_wav(name)[0] for name in FIXTURES]
    return np.concatenate(parts), 16000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, folder: Path, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "LLM_PROVIDER_ORDER": "offline",
        "MEETING_LOG_PATH": str(folder / "meetings.jsonl"),
        "DATA_DIR": str(folder / "data"),
        "MAX_SESSIONS": "32",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    log = (folder / "server.log").open("wb")
    return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=folder, env=env, stdout=log, stderr=log)


async def wait_settled(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        while True:
            health = (await client.get(f"{base_url}/health")).json()
            if health.get("status") == "ok" and health["active_sessions"] == 0 and health["queue_depth"] == 0:
                return
            await asyncio.sleep(0.2)


async def one_session(base_url: str, pcm: np.ndarray, rate: int, pace: float) -> float:
    result = await stream_audio(ws_url(base_url), pcm, rate, realtime=pace, limit=600)
    return float(result["final"]["metrics"]["audio_seconds"])


async def sequential(base_url: str, pid: int, sessions: int, pace: float) -> list[tuple[str, float]]:
    pcm, rate = meeting_audio()
    samples = [("start", rss_mb(pid))]
    for number in range(1, sessions + 1):
        await one_session(base_url, pcm, rate, pace)
        await wait_settled(base_url)
        await asyncio.sleep(1.0)
        samples.append((f"after session {number}", rss_mb(pid)))
        print(f"{samples[-1][0]:>20}: {samples[-1][1]:7.0f} MB", flush=True)
    return samples


async def concurrent(base_url: str, pid: int, streams: int, minutes: float, pace: float) -> list[tuple[str, float]]:
    pcm, rate = meeting_audio()
    began = time.monotonic()
    samples = [("start", rss_mb(pid))]
    done = 0

    async def stream_forever() -> None:
        nonlocal done
        while time.monotonic() - began < minutes * 60:
            await one_session(base_url, pcm, rate, pace)
            done += 1

    async def sample() -> None:
        while True:
            await asyncio.sleep(30)
            samples.append((f"{(time.monotonic() - began) / 60:4.1f} min, {done} done", rss_mb(pid)))
            print(f"{samples[-1][0]:>20}: {samples[-1][1]:7.0f} MB", flush=True)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(stream_forever() for _ in range(streams)))
    sampler.cancel()
    await wait_settled(base_url)
    await asyncio.sleep(1.0)
    samples.append((f"settled, {done} done", rss_mb(pid)))
    print(f"{samples[-1][0]:>20}: {samples[-1][1]:7.0f} MB", flush=True)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50, help="sessions one after another")
    parser.add_argument("--concurrent", type=int, default=0, help="streams at once (then --minutes applies)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pace", type=float, default=1.0, help="x real time (0: as fast as possible)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server, repeatable")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        server = start_server(port, Path(folder), extra_env)
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with asyncio.timeout(120):
                while True:
                    try:
                        await wait_settled(base_url)
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.5)
            if args.concurrent:
                samples = await concurrent(base_url, server.pid, args.concurrent, args.minutes, args.pace)
            else:
                samples = await sequential(base_url, server.pid, args.sessions, args.pace)
        finally:
            server.terminate()
            server.wait(60)
    print(json.dumps({"env": extra_env, "rss_mb": [[label, round(mb)] for label, mb in samples]}))


if __name__ == "__main__":
    asyncio.run(main())
