"""Helpers shared by the tests: settings, a real uvicorn server on a loopback port, audio, clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
import websockets

from services.settings import Settings, load_settings

FIXTURES = Path(__file__).parent / "fixtures"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: no `.env`, offline summariser only, audit log and meeting store in `tmp_path`."""
    values: dict[str, Any] = {
        "_env_file": None,
        "llm_provider_order": "offline",
        "meeting_log_path": tmp_path / "meetings.jsonl",
        "data_dir": tmp_path / "data",
        "resume_grace_seconds": 0,  # a vanished client's recording is finished at once (resume tests set it)
    }
    values.update(overrides)
    return load_settings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a free loopback port; yield its base URL."""
    from app import create_app
    from services.ws_protocol import WebSocketProtocol

    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws=WebSocketProtocol,
        ws_max_size=settings.ws_max_message_bytes,
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def load_wav(name: str) -> tuple[np.ndarray, int]:
    """A fixture WAV as int16 samples and its sample rate."""
    with wave.open(str(FIXTURES / name)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def ws_url(base_url: str, query: str = "") -> str:
    return base_url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


async def receive_until(ws: Any, message_type: str, limit: float = 60.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one of `message_type`; return it and everything read before it."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(limit):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == message_type:
                return message, seen
            seen.append(message)


async def stream_audio(
    url: str,
    pcm: np.ndarray,
    rate: int,
    *,
    frame_seconds: float = 0.1,
    realtime: float = 1.0,
    start: dict[str, Any] | None = None,
    limit: float = 120.0,
) -> dict[str, Any]:
    """Stream PCM16 to /ws at `realtime` x real-time pace, then stop; collect what the server sent.

    Returns a dict with `final`, `messages` (all, in order, each with a client `received_at`
    monotonic time) and `stop_sent_at`.
    """
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:

        async def reader() -> None:
            async for raw in ws:
                message = json.loads(raw)
                message["received_at"] = time.monotonic()
                messages.append(message)
                if message["type"] == "final":
                    return

        reading = asyncio.create_task(reader())
        await ws.send(json.dumps(start or {"type": "start", "sample_rate": rate}))
        step = int(rate * frame_seconds)
        began = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), step)):
            await ws.send(pcm[offset : offset + step].tobytes())
            if realtime:
                await asyncio.sleep(max(0.0, began + (index + 1) * frame_seconds / realtime - time.monotonic()))
        stop_sent_at = time.monotonic()
        await ws.send(json.dumps({"type": "stop"}))
        async with asyncio.timeout(limit):
            await reading
    final = next(m for m in messages if m["type"] == "final")
    return {"final": final, "messages": messages, "stop_sent_at": stop_sent_at, "began": began}


def straddles(segment: dict[str, Any], at: float) -> bool:
    """Whether a transcript segment on the wire runs across `at` (a word's width either side allowed)."""
    return bool(segment["start"] < at - 0.5 and segment["end"] > at + 0.5)
