"""POST /api/meetings over a real uvicorn server: every format through the whole pipeline, 413, 415, 401,
status polling, and a live session streamed meanwhile that still gets its final.

Test recordings are encoded at test time from the committed WAV fixtures (tests/audio_files.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from tests.audio_files import FORMATS, AudioFile, encode
from tests.support import load_wav, make_settings, run_server, stream_audio, ws_url

pytestmark = pytest.mark.timeout(300)

API_KEY = "upload-s3cret"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_UPLOAD_MB = 1.0
KEY_WORDS = ("quarterly", "numbers", "customer", "survey")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("uploads")
    with run_server(make_settings(tmp_path, api_key=API_KEY, max_upload_mb=MAX_UPLOAD_MB)) as base_url:
        yield base_url


@pytest.fixture()
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=60) as client:
        yield client


def one_voice(extension: str) -> AudioFile:
    pcm, rate = load_wav("one_voice.wav")
    return encode(pcm, rate, extension, stem="one_voice")


async def upload(http: httpx.AsyncClient, audio: AudioFile, **fields: str) -> httpx.Response:
    return await http.post("/api/meetings", files={"file": (audio.name, audio.data, audio.media_type)}, data=fields)


async def wait_until_finished(http: httpx.AsyncClient, meeting_id: str, limit: float = 240) -> tuple[dict, list[str]]:
    """Poll the meeting until it is done or failed; return it and the statuses seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        meeting = (await http.get(f"/api/meetings/{meeting_id}")).json()
        if not seen or seen[-1] != meeting["status"]:
            seen.append(meeting["status"])
        if meeting["status"] in ("done", "failed"):
            return meeting, seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"meeting {meeting_id} not finished after {limit} s (statuses {seen})")


def assert_right_words(transcript: str, what: str) -> None:
    lowered = transcript.lower()
    missing = [word for word in KEY_WORDS if word not in lowered]
    assert not missing, f"{what}: {missing} missing from {transcript!r}"


async def test_every_format_goes_through_the_whole_pipeline(http: httpx.AsyncClient) -> None:
    accepted: dict[str, str] = {}
    for extension in FORMATS:
        answer = await upload(http, one_voice(extension), title=f"Sales call ({extension})", language="en")
        assert answer.status_code == 202, (extension, answer.text)
        body = answer.json()
        assert body["status"] == "queued"
        assert answer.headers["location"] == f"/api/meetings/{body['id']}"
        accepted[extension] = body["id"]
    listed = {m["id"]: m for m in (await http.get("/api/meetings", params={"limit": 50})).json()["meetings"]}
    for extension, meeting_id in accepted.items():
        assert listed[meeting_id]["source"] == "upload", extension
    for extension, meeting_id in accepted.items():
        meeting, seen = await wait_until_finished(http, meeting_id)
        assert meeting["status"] == "done", (extension, meeting["errors"])
        assert seen == [s for s in ("queued", "processing", "done") if s in seen], f"{extension}: statuses {seen}"
        assert_right_words(meeting["transcript"], extension)
        assert meeting["source"] == "upload" and meeting["title"] == f"Sales call ({extension})"
        assert meeting["language"] == "en"
        assert 9.5 < meeting["duration"] < 10.5, (extension, meeting["duration"])
        assert meeting["speakers"], f"{extension}: no speakers"
        assert all(segment["speaker"] for segment in meeting["segments"]), extension
        assert "survey" in meeting["summary"]["summary"].lower() or meeting["summary"]["action_items"], extension
        assert meeting["provider"] == "offline"


async def test_status_polling_sees_queued_then_done(http: httpx.AsyncClient) -> None:
    answer = await upload(http, one_voice("flac"))
    meeting_id = answer.json()["id"]
    first = (await http.get(f"/api/meetings/{meeting_id}")).json()
    assert first["status"] in ("queued", "processing", "done"), "listed at the 202, before any processing"
    assert first["title"] == "one_voice.flac", "the file name is the title when none is given"
    meeting, seen = await wait_until_finished(http, meeting_id)
    assert seen[-1] == "done" and meeting["transcript"]
    export = await http.get(f"/api/meetings/{meeting_id}/transcript.txt")
    assert "quarterly" in export.text.lower()


async def test_too_big_is_413_and_nothing_is_kept(http: httpx.AsyncClient) -> None:
    before = (await http.get("/api/meetings", params={"limit": 200})).json()["meetings"]
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(int(16_000 * 40)) * 3000).astype(np.int16)  # 40 s of WAV: 1.28 MB
    answer = await upload(http, encode(noise, 16_000, "wav"))
    assert answer.status_code == 413, answer.text
    assert "MAX_UPLOAD_MB" in answer.json()["detail"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--b0undary--\r\n"

    answer = await http.post(
        "/api/meetings", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b0undary"}
    )
    assert answer.status_code == 413, answer.text
    after = (await http.get("/api/meetings", params={"limit": 200})).json()["meetings"]
    assert len(after) == len(before), "a refused upload is not listed"
    assert (await upload(http, one_voice("mp3"))).status_code == 202, "the server takes the next upload"


async def test_not_audio_is_415(http: httpx.AsyncClient) -> None:
    page = AudioFile("notes.txt", b"These are meeting notes, not a recording.\n" * 200, "text/plain")
    answer = await upload(http, page)
    assert answer.status_code == 415, answer.text
    garbage = AudioFile(
        "fake.mp3", bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8)), "audio/mpeg"
    )
    assert (await upload(http, garbage)).status_code == 415
    assert (await http.post("/api/meetings", data={"title": "no file"})).status_code == 400
    answer = await upload(http, one_voice("m4a"))
    assert answer.status_code == 202, "the server takes the next upload"
    meeting, _ = await wait_until_finished(http, answer.json()["id"])
    assert meeting["status"] == "done"


async def test_uploads_need_the_api_key(server: str) -> None:
    audio = one_voice("wav")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with httpx.AsyncClient(base_url=server, headers=headers) as http:
            answer = await upload(http, audio)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == "Bearer"


async def test_metrics_count_uploads_by_result(http: httpx.AsyncClient) -> None:
    await upload(http, AudioFile("notes.txt", b"not audio" * 100, "text/plain"))
    lines = (await http.get("/metrics")).text.splitlines()
    counts = {
        line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("meeting_assistant_uploads_total{")
    }
    assert set(counts) == {
        "accepted",
        "rejected_too_big",
        "rejected_not_audio",
        "rejected_bad_request",
        "done",
        "failed",
    }
    assert counts["rejected_not_audio"] >= 1


async def test_a_live_session_streamed_meanwhile_still_gets_its_final(server: str, http: httpx.AsyncClient) -> None:
    """A long upload is queued behind a live meeting: the live meeting still gets its final, with its words."""
    meeting, rate = load_wav("meeting_two_voices.wav")
    gap = np.zeros(16_000, dtype=np.int16)
    others = [load_wav(name)[0] for name in ("meeting_three_voices.wav", "one_voice.wav", "meeting_two_voices.wav")]
    long_pcm = np.concatenate([part for pcm in others for part in (pcm, gap)])  # 66 s of three recordings
    uploaded = await upload(http, encode(long_pcm, 16_000, "mp3", stem="long"), title="Long upload")
    assert uploaded.status_code == 202
    live = await stream_audio(ws_url(server, f"token={API_KEY}"), meeting, rate, realtime=2.0, limit=240)
    final = live["final"]
    assert not final["errors"], final["errors"]
    for word in ("launch", "budget"):
        assert word in final["transcript"].lower(), final["transcript"]
    stored, _ = await wait_until_finished(http, uploaded.json()["id"], limit=280)
    assert stored["status"] == "done" and stored["source"] == "upload"
    for word in ("supplier", "chairs", "quarterly", "survey", "launch", "website"):
        assert word in stored["transcript"].lower(), f"{word!r} missing from {stored['transcript']!r}"
    assert abs(stored["duration"] - long_pcm.size / 16_000) < 0.1
