"""The process as an operator runs it: `python app.py`, start-up failures, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support import free_port, load_wav, receive_until, stream_audio

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ASR_", "LLM_", "AUDIO_"))}
    env.update(
        {
            "LLM_PROVIDER_ORDER": "offline",
            "MEETING_LOG_PATH": str(tmp_path / "meetings.jsonl"),
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


def _start(tmp_path: Path, **extra: str) -> subprocess.Popen[str]:
    # Run from tmp_path so no developer .env is read; app.py is found by path.
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("INFERENCE_WORKERS", "0", "INFERENCE_WORKERS"),
        ("AUDIO_ENCRYPTION_KEY", "not-a-fernet-key", "AUDIO_ENCRYPTION_KEY"),
        ("LLM_PROVIDER_ORDER", "vllm,skynet", "LLM_PROVIDER_ORDER"),
        ("ASR_MODEL_ID", "/nonexistent/whisper-model", "ASR_MODEL_ID"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        (
            "DATABASE_URL",
            "postgresql://meet:hunter2@127.0.0.1:1/meetings",
            "DATABASE_URL: cannot open the meeting store",
        ),
        ("DATA_DIR", "/proc/no-meetings-here", "DATA_DIR /proc/no-meetings-here"),
    ],
)
def test_start_up_failure_exits_with_a_message_naming_the_cause(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    process = _start(tmp_path, PORT=str(free_port()), **{setting: value})
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert named in output
    assert "hunter2" not in output, "a database password is never shown"


def _wait_until_healthy(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json().get("status") == "ok":
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "server did not start"
        time.sleep(0.2)


def test_malformed_upgrades_and_frames_are_refused_at_once_without_a_traceback(tmp_path: Path) -> None:
    """An invalid UTF-8 text frame closes with 1007; a 100 KB query string is refused at once."""
    port = free_port()
    process = _start(tmp_path, PORT=str(port))
    try:
        _wait_until_healthy(process, port)

        async def send_invalid_utf8() -> int:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(b"\xff\xfe{", text=True)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None
                return closed.value.rcvd.code

        assert asyncio.run(send_invalid_utf8()) == 1007
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(
                f"GET /ws?q={'x' * 100_000} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            answer = raw.recv(64)  # times out (an error) if the server never answers
        assert answer.startswith(b"HTTP/1.1 4"), answer
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "Traceback" not in output, output


def test_shutdown_with_a_live_session_closes_1012_and_keeps_the_audit_line(tmp_path: Path) -> None:
    port = free_port()
    process = _start(tmp_path, PORT=str(port))
    try:
        _wait_until_healthy(process, port)
        pcm, rate = load_wav("one_voice.wav")

        async def record_then_get_cut_off() -> int:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": rate, "title": "Shutdown"}))
                await ws.send(pcm.tobytes())
                await receive_until(ws, "partial_transcript")
                process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                assert closed.value.rcvd is not None
                return closed.value.rcvd.code

        assert asyncio.run(record_then_get_cut_off()) == 1012
        output, _ = process.communicate(timeout=120)
        # uvicorn re-raises the captured SIGTERM once its graceful shutdown is complete
        assert process.returncode in (0, -signal.SIGTERM), output
        assert "Application shutdown complete" in output
    finally:
        if process.poll() is None:
            process.kill()
    lines = (tmp_path / "meetings.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert "quarterly" in json.dumps(record).lower()


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_memory_stays_flat_over_successive_meetings(tmp_path: Path) -> None:
    """Before malloc arenas were capped and free pages handed back, each 62 s meeting grew the
    server by 60-300 MB (1362 -> 1788 MB over four); a leak or a cache without bound would too."""
    port = free_port()
    process = _start(tmp_path, PORT=str(port), LOG_LEVEL="WARNING")
    meeting = np.concatenate([load_wav(name)[0] for name in ("meeting_three_voices.wav", "meeting_two_voices.wav")])
    try:
        _wait_until_healthy(process, port)
        rss = []
        for _ in range(5):
            result = asyncio.run(stream_audio(f"ws://127.0.0.1:{port}/ws", meeting, 16000, realtime=0, limit=300))
            assert "supplier" in result["final"]["transcript"].lower()
            deadline = time.monotonic() + 60
            while httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["queue_depth"] and (
                time.monotonic() < deadline
            ):
                time.sleep(0.2)
            rss.append(_rss_mb(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert rss[-1] - rss[0] < 150, rss  # after the first meeting has warmed everything up
