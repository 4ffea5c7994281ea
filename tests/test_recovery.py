"""Nothing lost on a crash: the real server SIGKILLed mid-meeting and started again, a resumed
session's spool, and start-up recovery / retention against a real SQLite store.

The end-to-end tests run the real parts: `python app.py` (or uvicorn in-process) with the bundled
faster-whisper tiny.en, a real WebSocket client streaming a committed speech fixture. The
`AudioUpkeep` tests use the project's scripted recogniser (tests/fakes/pipeline.py) because they
are about which meetings get finished and what happens to their audio, not about the words.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from cryptography.fernet import Fernet

from observability import Metrics
from services.data_key import KEY_FILE
from services.fake_recognizer import FakeRecognizer
from services.recovery import NO_AUDIO, UNREADABLE, UPLOAD_CUT, AudioUpkeep
from services.spool import AudioSpool, SpoolMeta, read_spool, spool_path
from services.spool_directory import SPOOL_DIR, SpoolDirectory
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from services.stored_meeting import MeetingSource, MeetingStatus
from tests.fakes.pipeline import fake_pipeline, scripted_words
from tests.support import free_port, load_wav, make_settings, receive_until, run_server, ws_url

ROOT = Path(__file__).resolve().parent.parent
KILL_AFTER_SECONDS = 14.0  # of meeting_two_voices.wav (26 s): its first three turns, not the fourth
pytestmark = pytest.mark.timeout(400)


# --- the real server, killed -------------------------------------------------------------------


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    prefixes = ("ASR_", "LLM_", "VLLM_", "XAI_", "OPENAI_", "AZURE_", "ANTHROPIC_", "GOOGLE_", "HF_TOKEN", "API_KEY")
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    env.pop("AUDIO_ENCRYPTION_KEY", None)  # the server generates its key into DATA_DIR
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        LLM_PROVIDER_ORDER="offline",
        MEETING_LOG_PATH=str(tmp_path / "meetings.jsonl"),
        HOST="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def servers(tmp_path: Path, server_env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_server(tmp_path: Path, env: dict[str, str], started: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    log = tmp_path / f"server-{len(started)}.log"
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=tmp_path,
            env={**env, "PORT": str(port)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    started.append(process)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: see {log}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


async def stream_until_killed(base_url: str, pcm: np.ndarray, rate: int, process: subprocess.Popen[bytes]) -> str:
    """Stream at real-time pace in 100 ms frames, SIGKILL the server after KILL_AFTER_SECONDS; the meeting id."""
    async with websockets.connect(ws_url(base_url), max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "title": "Launch review"}))
        hello, _ = await receive_until(ws, "status")
        step = rate // 10
        began = time.monotonic()
        for index in range(int(KILL_AFTER_SECONDS * 10)):
            await ws.send(pcm[index * step : (index + 1) * step].tobytes())
            await asyncio.sleep(max(0.0, began + (index + 1) * 0.1 - time.monotonic()))
        process.send_signal(signal.SIGKILL)
        process.wait()
        return str(hello["session_id"])


def test_a_server_killed_mid_meeting_finishes_it_after_restart(
    tmp_path: Path, server_env: dict[str, str], servers: list[subprocess.Popen[bytes]]
) -> None:
    pcm, rate = load_wav("meeting_two_voices.wav")
    data = tmp_path / "data"
    first = start_server(tmp_path, server_env, servers)
    meeting_id = asyncio.run(stream_until_killed(first, pcm, rate, servers[0]))
    killed_at = time.monotonic()

    # What the dead process left: a sealed spool, no clear audio, a key only its owner can read.
    key_file = data / KEY_FILE
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    spool = spool_path(data / SPOOL_DIR, meeting_id)
    on_disk = spool.read_bytes()
    voiced = pcm[3 * rate : 3 * rate + 64].tobytes()
    assert np.abs(pcm[3 * rate : 3 * rate + 64]).max() > 100
    assert voiced not in on_disk
    left = read_spool(spool, Fernet(key_file.read_bytes().strip()))
    assert voiced in left.pcm16.tobytes()
    lost = KILL_AFTER_SECONDS - left.pcm16.size / rate
    assert np.array_equal(left.pcm16, pcm[: left.pcm16.size])

    restarted = start_server(tmp_path, server_env, servers)
    healthy_after = time.monotonic() - killed_at
    listed = None
    with httpx.Client(base_url=restarted, timeout=10) as client:
        for _ in range(600):  # polled for up to ~5 minutes: no timed assertion
            listed = next(m for m in client.get("/api/meetings").json()["meetings"] if m["id"] == meeting_id)
            if listed["status"] not in ("recording", "queued", "processing"):
                break
            time.sleep(0.5)
        recovered_after = time.monotonic() - killed_at
        meeting = client.get(f"/api/meetings/{meeting_id}").json()
        metrics = client.get("/metrics").text
    print(
        f"\naudio lost at SIGKILL: {lost:.2f} s (client-side); kill -> restarted server healthy: "
        f"{healthy_after:.1f} s; kill -> listed recovered: {recovered_after:.1f} s"
    )
    assert listed is not None and listed["status"] == "recovered", meeting
    assert meeting["title"] == "Launch review"
    text = meeting["transcript"].lower()
    heard = [word for word in ("morning", "website", "design", "monday", "alice") if word in text]
    assert len(heard) >= 3, text  # words of the first turns (tiny.en hears "launch" as "lunch" at times)
    assert "budget" not in text and "friday" not in text  # spoken after the kill
    assert 0 < meeting["duration"] <= KILL_AFTER_SECONDS
    assert meeting["summary"]["summary"]
    assert 'meeting_assistant_recoveries_total{result="recovered"} 1.0' in metrics
    assert not spool.exists()  # AUDIO_RETENTION_DAYS=0: the audio went once the meeting was stored
    logged = [json.loads(line) for line in (tmp_path / "meetings.jsonl").read_text().splitlines()]
    assert [entry["session_id"] for entry in logged] == [meeting_id]  # the hooks ran for it


async def test_a_resumed_session_keeps_appending_to_one_spool(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, resume_grace_seconds=30, audio_retention_days=1)
    pcm, rate = load_wav("one_voice.wav")
    cut = int(4.6 * rate)
    with run_server(settings) as base_url:
        first = await websockets.connect(ws_url(base_url))
        await first.send(json.dumps({"type": "start", "sample_rate": rate}))
        await first.send(pcm[:cut].tobytes())
        hello, _ = await receive_until(first, "status")
        await receive_until(first, "partial_transcript")
        first.transport.abort()
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": rate, "resume": hello["session_id"]}))
            answer = None
            while answer is None:
                message, _ = await receive_until(ws, "status")
                answer = message if message.get("resumed") else None
            await ws.send(pcm[round(answer["received_seconds"] * rate) :].tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            final, _ = await receive_until(ws, "final")
        async with httpx.AsyncClient() as client:
            meeting = (await client.get(f"{base_url}/api/meetings/{final['session_id']}")).json()
    key = (settings.data_dir / KEY_FILE).read_bytes().strip()
    (spooled,) = (settings.data_dir / SPOOL_DIR).iterdir()  # one spool, kept a day after the meeting
    assert spooled.stem == hello["session_id"] == final["session_id"]
    contents = read_spool(spooled, Fernet(key))
    assert contents.complete and np.array_equal(contents.pcm16, pcm)
    assert meeting["status"] == "done"


# --- recovery and retention against a real store ---------------------------------------------


KEY = Fernet.generate_key().decode()


def leave_spool(
    spools: SpoolDirectory, meeting_id: str, pcm: np.ndarray, *, source: str = "live", complete: bool = False
) -> None:
    """A spool as a process that died leaves it: written, never finished."""
    spool = AudioSpool(
        spool_path(spools.path, meeting_id),
        spools.fernet,
        SpoolMeta(meeting_id, time.time() - 60, title="Left", source=source),
        delete_when_finished=False,
    )
    for start in range(0, pcm.size, 1600):
        spool.append(pcm[start : start + 1600], start)
    if complete:
        spool.audio_complete(pcm.size)
    spool.close()
    spool.flush()


async def test_recovery_finishes_what_a_dead_process_left_and_says_what_it_could_not(tmp_path: Path) -> None:
    pcm, _ = load_wav("one_voice.wav")
    metrics = Metrics()
    spools = SpoolDirectory(tmp_path, KEY, 0.0, metrics)
    booted_at = time.time()
    async with await SqlMeetingStore.open(sqlite_url(tmp_path)) as store:
        for meeting_id, source, status in [
            ("live1", MeetingSource.LIVE, MeetingStatus.RECORDING),
            ("upcut", MeetingSource.UPLOAD, MeetingStatus.PROCESSING),
            ("upok", MeetingSource.UPLOAD, MeetingStatus.QUEUED),
            ("nospool", MeetingSource.LIVE, MeetingStatus.RECORDING),
        ]:
            await store.create(meeting_id, title=meeting_id, created_at=booted_at - 60, source=source, status=status)
        await store.create("newborn", title=None, created_at=booted_at + 1)  # this process's own, just started
        leave_spool(spools, "live1", pcm)
        leave_spool(spools, "upcut", pcm[:16000], source="upload")
        leave_spool(spools, "upok", pcm, source="upload", complete=True)
        leave_spool(spools, "unlisted", pcm)  # the store never got its row
        owned = spools.open("owned")  # a live session of this process
        owned.append(pcm[:1600], 0)
        spools.flush_all()
        async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), store=store) as (pipeline, _):
            upkeep = AudioUpkeep(
                spools=spools, store=store, pipeline=pipeline, metrics=metrics, booted_at=booted_at, owns_store=True
            )
            assert await upkeep.recover_all() == 3
        meetings = {m: await store.get(m) for m in ("live1", "upcut", "upok", "nospool", "unlisted", "newborn")}
    for recovered in ("live1", "upok", "unlisted"):
        assert meetings[recovered].status is MeetingStatus.RECOVERED
        assert "quarterly" in meetings[recovered].transcript.lower()
    assert meetings["live1"].title == "live1" and meetings["upok"].source is MeetingSource.UPLOAD
    assert meetings["unlisted"].title == "Left"  # from the spool's own record
    assert (meetings["upcut"].status, meetings["upcut"].errors) == (MeetingStatus.FAILED, [UPLOAD_CUT])
    assert (meetings["nospool"].status, meetings["nospool"].errors) == (MeetingStatus.FAILED, [NO_AUDIO])
    assert meetings["newborn"].status is MeetingStatus.RECORDING
    assert [path.stem for path in spools.files()] == ["owned"]  # the others' audio went with retention 0
    rendered = metrics.render().decode()
    for result, count in (("recovered", 3), ("failed", 1), ("audio_lost", 1)):
        assert f'meeting_assistant_recoveries_total{{result="{result}"}} {count}.0' in rendered


async def test_a_spool_under_another_key_fails_until_the_key_is_back(tmp_path: Path) -> None:
    pcm, _ = load_wav("one_voice.wav")
    async with await SqlMeetingStore.open(sqlite_url(tmp_path)) as store:
        await store.create("m1", title=None, created_at=time.time() - 60)
        leave_spool(SpoolDirectory(tmp_path, KEY, 0.0, Metrics()), "m1", pcm)
        async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), store=store) as (pipeline, _):
            for key, status in ((Fernet.generate_key().decode(), MeetingStatus.FAILED), (KEY, MeetingStatus.RECOVERED)):
                spools = SpoolDirectory(tmp_path, key, 0.0, Metrics())
                upkeep = AudioUpkeep(
                    spools=spools,
                    store=store,
                    pipeline=pipeline,
                    metrics=Metrics(),
                    booted_at=time.time(),
                    owns_store=True,
                )
                await upkeep.recover_all()
                await upkeep.sweep()  # never deletes audio that is waiting for its key
                meeting = await store.get("m1")
                assert meeting.status is status
                if status is MeetingStatus.FAILED:
                    assert meeting.errors[0].startswith(UNREADABLE) and spools.files()
    assert "quarterly" in meeting.transcript.lower()


async def test_the_sweep_deletes_only_finished_meetings_audio_past_the_retention(tmp_path: Path) -> None:
    pcm, _ = load_wav("one_voice.wav")
    spools = SpoolDirectory(tmp_path, KEY, 1.0, Metrics())
    old = time.time() - 2 * 86400
    async with await SqlMeetingStore.open(sqlite_url(tmp_path)) as store:
        for meeting_id, status in [("old_done", MeetingStatus.DONE), ("new_done", MeetingStatus.DONE),
                                   ("old_open", MeetingStatus.RECORDING)]:  # fmt: skip
            await store.create(meeting_id, title=None, created_at=old, status=status)
            leave_spool(spools, meeting_id, pcm[:1600])
        leave_spool(spools, "old_unknown", pcm[:1600])
        for meeting_id in ("old_done", "old_open", "old_unknown"):
            os.utime(spool_path(spools.path, meeting_id), (old, old))
        async with fake_pipeline(FakeRecognizer([]), store=store) as (pipeline, _):
            upkeep = AudioUpkeep(
                spools=spools,
                store=store,
                pipeline=pipeline,
                metrics=Metrics(),
                booted_at=time.time(),
                owns_store=False,
            )
            assert await upkeep.sweep() == 1
    assert sorted(path.stem for path in spools.files()) == ["new_done", "old_open", "old_unknown"]
