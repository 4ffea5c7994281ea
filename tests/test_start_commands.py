"""Both start commands as a newcomer runs them: a real server process, its whole log captured.

`uvicorn app:app` and `python app.py` are started as subprocesses on a loopback port with
`API_KEY` set, no `.env` and no provider keys. Clients connect with the right and a wrong token
in every accepted way (query, `Authorization: Bearer`, the subprotocol), the page is fetched
with a token in its URL, one meeting is recorded and one oversized frame is sent; then the
server is stopped and its stdout and stderr (uvicorn's access and error logs included) must
show neither token, in any encoding.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.auth import token_subprotocol
from tests.support import free_port, load_wav, stream_audio

ROOT = Path(__file__).resolve().parent.parent
RIGHT = "s3cret/Key+with=chars"
WRONG = "wr0ng/Guess+1234"
MAX_FRAME = 8192
pytestmark = pytest.mark.timeout(240)


def _forms(token: str) -> list[str]:
    encoded = base64.urlsafe_b64encode(token.encode()).decode()
    return [token, quote(token, safe=""), encoded.rstrip("=")]


def _server_env(tmp_path: Path, port: int) -> dict[str, str]:
    """The developer's environment without anything of ours or any provider key."""
    prefixes = ("ASR_", "LLM_", "VLLM_", "XAI_", "OPENAI_", "AZURE_", "ANTHROPIC_", "GOOGLE_", "HF_TOKEN", "API_KEY")
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    env.update(
        API_KEY=RIGHT,
        LOG_LEVEL="debug",  # lower case, and the most talkative level: nothing may leak even here
        WS_MAX_MESSAGE_BYTES=str(MAX_FRAME),
        MEETING_LOG_PATH=str(tmp_path / "meetings.jsonl"),
        ASR_BEAM_SIZ="3",  # a typo the server should point out
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(params=["uvicorn", "python"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server process; yields its base URL and the file its whole output goes to."""
    port = free_port()
    if request.param == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(ROOT), "--port", str(port)]
    else:
        command = [sys.executable, str(ROOT / "app.py")]
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(  # cwd has no .env: the server sees only the environment given
            command, cwd=tmp_path, env=_server_env(tmp_path, port), stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", process)
            yield f"http://127.0.0.1:{port}", output
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _exercise(base_url: str) -> dict[str, object]:
    ws = base_url.replace("http://", "ws://") + "/ws"
    seen: dict[str, object] = {}
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base_url}/?token={quote(RIGHT)}")).status_code == 200
        seen["health"] = (await client.get(f"{base_url}/health")).json()
    for refused in (
        {"uri": f"{ws}?token={quote(WRONG)}"},
        {"uri": ws, "additional_headers": {"Authorization": f"Bearer {WRONG}"}},
        {"uri": ws, "subprotocols": ["meeting-assistant", token_subprotocol(WRONG)]},
    ):
        with pytest.raises(InvalidStatus) as refusal:
            await websockets.connect(**refused)  # type: ignore[arg-type]
        assert refusal.value.response.status_code == 403
    async with websockets.connect(ws, additional_headers={"Authorization": f"Bearer {RIGHT}"}) as bearer:
        assert json.loads(await bearer.recv())["status"] == "recording"
    async with websockets.connect(ws, subprotocols=["meeting-assistant", token_subprotocol(RIGHT)]) as browser_like:
        assert browser_like.subprotocol == "meeting-assistant"  # the token is never echoed
        assert json.loads(await browser_like.recv())["status"] == "recording"
        await browser_like.send(b"\0" * (MAX_FRAME + 2))  # WS_MAX_MESSAGE_BYTES holds under both commands
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(browser_like.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    pcm, rate = load_wav("one_voice.wav")
    result = await stream_audio(f"{ws}?token={quote(RIGHT)}", pcm, rate, realtime=0)
    seen["final"] = result["final"]
    return seen


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_token_in_any_log_line_and_a_clean_zero_config_result(server: tuple[str, Path]) -> None:
    base_url, output = server
    vllm_default_port_free = not _port_open(8001)
    seen = asyncio.run(_exercise(base_url))
    time.sleep(0.5)  # let the last access-log lines reach the file
    log = output.read_text(errors="replace")

    for token in (RIGHT, WRONG):
        for form in _forms(token):
            assert form not in log, f"{form!r} was logged"
    # the lines are there, redacted: the test saw uvicorn's access log, not an empty file
    assert "/ws?token=[REDACTED]" in log and "GET /?token=[REDACTED]" in log
    assert "[accepted]" in log and "403" in log

    # point 2: one start-up line saying where transcripts go; /health says it too
    assert "LLM provider chain: vllm (http://localhost:8001/v1/) -> offline (in this process)" in log
    health = seen["health"]
    assert isinstance(health, dict)
    assert [link["provider"] for link in health["llm_chain"]] == ["vllm", "offline"]
    assert not any(link["leaves_machine"] for link in health["llm_chain"])

    # point 7: lower-case LOG_LEVEL accepted (DEBUG lines present), the typo pointed out
    assert " DEBUG " in log
    assert "ASR_BEAM_SIZ (from environment) is not a setting" in log and "did you mean ASR_BEAM_SIZE?" in log

    # point 4: nothing configured, nothing failed the user should hear about
    final = seen["final"]
    assert isinstance(final, dict)
    assert final["provider"] == "offline" and final["summary"]["summary"]
    if vllm_default_port_free:
        assert final["errors"] == []
