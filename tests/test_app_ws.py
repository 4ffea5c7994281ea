"""The /ws contract end to end: a real uvicorn server on a loopback port, a real WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soxr
import websockets
from cryptography.fernet import Fernet
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import load_wav, make_settings, receive_until, run_server, stream_audio, ws_url

pytestmark = pytest.mark.timeout(180)


async def _health(base_url: str) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base_url}/health")).json()


async def _wait_for_idle(base_url: str, limit: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + limit
    while True:
        health = await _health(base_url)
        if health["active_sessions"] == 0 and health["queue_depth"] == 0 or time.monotonic() > deadline:
            return health
        await asyncio.sleep(0.1)


async def _record_and_drop(base_url: str, pcm: np.ndarray, rate: int) -> dict[str, Any]:
    """A client records `pcm` as "Dropped", sees a partial, and loses its network: the server's hello."""
    first = await websockets.connect(ws_url(base_url))
    await first.send(json.dumps({"type": "start", "sample_rate": rate, "title": "Dropped"}))
    await first.send(pcm.tobytes())
    hello, _ = await receive_until(first, "status")
    await receive_until(first, "partial_transcript")
    first.transport.abort()  # the network goes; the recording waits for its client
    return hello


async def test_live_partials_arrive_before_stop_and_final_has_the_words(live_server: str) -> None:
    pcm, rate = load_wav("one_voice.wav")
    result = await stream_audio(ws_url(live_server), pcm, rate, realtime=1.0)
    partials = [m for m in result["messages"] if m["type"] == "partial_transcript"]
    before_stop = [m for m in partials if m["received_at"] < result["stop_sent_at"]]
    assert before_stop, "partials must arrive while the person is still speaking"
    assert any(not m["committed"] for m in before_stop)
    assert {m["segment_id"] for m in partials} == {m["segment_id"] for m in partials if m["committed"]}, (
        "every live segment ends committed"
    )
    assert all(set(m) >= {"segment_id", "text", "start", "end", "committed", "speaker"} for m in partials)
    committed_text = [m for m in partials if m["committed"] and m["text"]]
    assert committed_text and all(m["speaker"] == "SPEAKER_1" for m in committed_text), "live speaker labels"
    final = result["final"]
    text = final["transcript"].lower()
    for word in ("quarterly", "numbers", "region", "marketing", "survey", "month"):
        assert word in text
    assert all(s["speaker"] == "SPEAKER_1" for s in final["segments"]) and final["metrics"]["speakers"] == 1
    assert final["segments"] and all(set(s) == {"start", "end", "speaker", "text"} for s in final["segments"])
    assert {"summary", "action_items", "decisions"} <= set(final["summary"])
    assert final["provider"] == "offline" and isinstance(final["errors"], list)
    statuses = [m["status"] for m in result["messages"] if m["type"] == "status"]
    assert statuses[0] == "recording" and statuses[-1] == "done"
    assert {"queued", "transcribing", "summarizing"} <= set(statuses)
    assert sum(m["type"] == "final" for m in result["messages"]) == 1


async def test_48khz_audio_in_odd_sized_frames_is_resampled_and_reassembled(live_server: str) -> None:
    pcm, _ = load_wav("one_voice.wav")
    pcm48 = (soxr.resample(pcm.astype(np.float32) / 32768, 16000, 48000) * 32767).astype("<i2")
    raw = pcm48.tobytes()
    async with websockets.connect(ws_url(live_server)) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 48000, "title": "Odd frames"}))
        sizes = [4801, 3, 9599, 1, 7777]  # odd byte counts split samples across frames
        offset, index = 0, 0
        while offset < len(raw):
            size = sizes[index % len(sizes)]
            await ws.send(raw[offset : offset + size])
            offset, index = offset + size, index + 1
        await ws.send(json.dumps({"type": "stop"}))
        final, seen = await receive_until(ws, "final")
    # the frames arrive faster than MAX_FRAMES_PER_SECOND: reading is slowed down, nothing is dropped
    assert {m["code"] for m in seen if m["type"] == "error"} <= {"rate_limited"}
    assert "quarterly" in final["transcript"].lower() and "marketing" in final["transcript"].lower()
    assert abs(final["metrics"]["audio_seconds"] - len(pcm) / 16000) < 0.05
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{live_server}/metrics")).text
    # where the ASR work went, by path (draft, careful, stop): this meeting was encoded and decoded
    assert re.search(r'asr_model_calls_total\{op="encode",path="(draft|careful|stop)"\} [1-9]', metrics)
    assert re.search(r'asr_model_calls_total\{op="generate",path="(careful|stop)"\} [1-9]', metrics)
    assert re.search(r'asr_audio_seconds_total\{path="(careful|stop)"\} [1-9]', metrics)


async def _full_windows(client: httpx.AsyncClient, base_url: str) -> float:
    metrics = (await client.get(f"{base_url}/metrics")).text
    found = re.search(r'asr_model_calls_total\{op="encode",path="full"\} ([0-9.]+)', metrics)
    return float(found.group(1)) if found else 0.0


async def test_a_long_meeting_is_read_in_full_windows_while_it_records(live_server: str) -> None:
    """Past 30 s the final transcript's first window is read before stop, not all of it after."""
    pcm = np.concatenate([load_wav("ami_dev00.wav")[0], load_wav("one_voice.wav")[0]])  # 40 s
    async with httpx.AsyncClient() as client, websockets.connect(ws_url(live_server)) as ws:
        windows_before = await _full_windows(client, live_server)
        for offset in range(0, len(pcm), 1600):
            await ws.send(pcm[offset : offset + 1600].tobytes())
        for _ in range(600):
            if await _full_windows(client, live_server) > windows_before:
                break
            await asyncio.sleep(0.1)
        assert await _full_windows(client, live_server) > windows_before, "no window was read while recording"
        await ws.send(json.dumps({"type": "stop"}))
        final, _ = await receive_until(ws, "final")
    assert "quarterly" in final["transcript"].lower() and "ready to begin" in final["transcript"].lower()
    starts = [segment["start"] for segment in final["segments"]]
    assert starts == sorted(starts) and final["errors"] == []


async def test_bad_frames_get_errors_and_the_session_carries_on(live_server: str) -> None:
    pcm, rate = load_wav("one_voice.wav")
    async with websockets.connect(ws_url(live_server)) as ws:
        await ws.send(pcm[:rate].tobytes())  # audio before start: allowed, 16 kHz defaults
        await ws.send(b"")  # empty frame: ignored
        bad = [
            "not json",
            json.dumps([1, 2]),
            json.dumps({"type": "pause"}),
            json.dumps({"type": "start"}),
            "[" * 2000 + "]" * 2000,
            json.dumps({"type": "start", "title": "x" * 10000}),
        ]
        for text in bad:
            await ws.send(text)
        await ws.send(pcm[rate:].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        await ws.send(json.dumps({"type": "stop"}))
        await ws.send(pcm[:1600].tobytes())
        final, seen = await receive_until(ws, "final")
        await asyncio.sleep(0.3)
        with pytest.raises(ConnectionClosed):  # the server closes normally after the final
            while True:
                extra = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert extra["type"] != "final", "exactly one final per session"
    codes = [m["code"] for m in seen if m["type"] == "error"]
    assert codes[:6] == [
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "already_started",
        "invalid_json",
        "message_too_long",
    ]
    assert "already_stopped" in codes and "audio_after_stop" in codes
    assert all(m["message"] for m in seen if m["type"] == "error")
    assert "quarterly" in final["transcript"].lower(), "audio around the bad frames is kept"


async def test_a_flooding_client_is_slowed_down_without_losing_audio_or_hurting_others(tmp_path: Path) -> None:
    pcm, rate = load_wav("one_voice.wav")
    with run_server(make_settings(tmp_path, max_frames_per_second=100)) as base_url:

        async def flood() -> tuple[dict[str, object], list[dict[str, object]], float]:
            async with websockets.connect(ws_url(base_url)) as ws:
                started = time.monotonic()
                for offset in range(0, 16000 * 5, 160):  # 500 frames of 10 ms
                    await ws.send(pcm[offset : offset + 160].tobytes())
                await ws.send(json.dumps({"type": "stop"}))
                final, seen = await receive_until(ws, "final")
                return final, seen, time.monotonic() - started

        flooding = asyncio.create_task(flood())
        normal = await stream_audio(ws_url(base_url), pcm, rate, realtime=4.0)
        final, seen, elapsed = await flooding
    assert any(m.get("code") == "rate_limited" for m in seen)
    assert final["metrics"]["audio_seconds"] == 5.0, "throttled, not dropped"
    assert elapsed > 3.0  # 500 frames at 100 per second, after a burst of 100
    assert "marketing" in normal["final"]["transcript"].lower()
    assert not [m for m in normal["messages"] if m["type"] == "error"]


async def test_stop_without_audio_gives_an_empty_final(live_server: str) -> None:
    async with websockets.connect(ws_url(live_server)) as ws:
        await ws.send(json.dumps({"type": "stop"}))
        final, _ = await receive_until(ws, "final")
    assert final["transcript"] == "" and final["segments"] == []
    assert final["summary"]["summary"]


async def test_sample_rate_out_of_range_is_refused_with_a_reason(live_server: str) -> None:
    async with websockets.connect(ws_url(live_server)) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 96000}))
        error, _ = await receive_until(ws, "error")
        assert error["code"] == "invalid_message" and "sample_rate" in error["message"]
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))  # still open, can start properly
        await ws.send(json.dumps({"type": "stop"}))
        await receive_until(ws, "final")


async def test_oversized_frame_closes_with_1009_and_frees_the_session(tmp_path: Path) -> None:
    with run_server(make_settings(tmp_path, ws_max_message_bytes=64 * 1024)) as base_url:
        async with websockets.connect(ws_url(base_url), max_size=None) as ws:
            await ws.send(b"\x00" * (64 * 1024 + 2))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert (await _wait_for_idle(base_url))["active_sessions"] == 0


async def test_repeated_violations_close_with_1008(tmp_path: Path) -> None:
    with run_server(make_settings(tmp_path, max_protocol_violations=3)) as base_url:
        async with websockets.connect(ws_url(base_url)) as ws:
            for _ in range(5):
                await ws.send("garbage")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_abrupt_disconnects_leak_nothing_and_recorded_audio_is_finished(tmp_path: Path) -> None:
    # aborted sockets are noticed asynchronously: neither the count nor the load may refuse the last one
    settings = make_settings(tmp_path, max_sessions=1000, admission_by_load=False)
    pcm, rate = load_wav("one_voice.wav")
    with run_server(settings) as base_url:
        for _ in range(1000):  # vanish without a close frame, with and without audio
            ws = await websockets.connect(ws_url(base_url))
            await ws.send(pcm[:800].tobytes())
            ws.transport.abort()
        ws = await websockets.connect(ws_url(base_url))
        await ws.send(pcm.tobytes())
        await asyncio.sleep(0.5)
        ws.transport.abort()  # mid-recording, with speech: policy says finish it in the background
        health = await _wait_for_idle(base_url, limit=60)
        assert health["active_sessions"] == 0 and health["queue_depth"] == 0
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
        assert "meeting_assistant_active_sessions 0.0" in metrics
    lines = [json.loads(line) for line in settings.meeting_log_path.read_text().splitlines()]
    assert any("quarterly" in json.dumps(line).lower() for line in lines), "the abandoned recording was kept"


async def test_a_client_that_leaves_after_stop_still_gets_its_meeting_logged(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    pcm, rate = load_wav("one_voice.wav")
    with run_server(settings) as base_url:
        ws = await websockets.connect(ws_url(base_url))
        await ws.send(pcm.tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        await receive_until(ws, "status")
        ws.transport.abort()  # gone while the meeting is being finished
        await _wait_for_idle(base_url)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    lines = settings.meeting_log_path.read_text().splitlines()
    assert len(lines) == 1 and "marketing" in lines[0].lower()
    assert 'meeting_assistant_job_failures_total{stage="meeting"} 0.0' in metrics


async def test_health_answers_quickly_while_transcription_runs(live_server: str) -> None:
    pcm, rate = load_wav("meeting_two_voices.wav")
    streaming = asyncio.create_task(stream_audio(ws_url(live_server), pcm, rate, realtime=4.0))
    latencies = []
    async with httpx.AsyncClient() as client:
        while not streaming.done():
            started = time.perf_counter()
            response = await client.get(f"{live_server}/health")
            latencies.append(time.perf_counter() - started)
            assert response.json()["status"] == "ok"
            await asyncio.sleep(0.05)
    await streaming
    # Model work runs on the executor: a blocked loop would stall /health for whole decodes.
    assert len(latencies) > 20 and max(latencies) < 1.0


async def test_encrypted_session_transcribes_the_same(tmp_path: Path) -> None:
    pcm, rate = load_wav("one_voice.wav")
    settings = make_settings(tmp_path, audio_encryption_key=Fernet.generate_key().decode())
    with run_server(settings) as base_url:
        assert (await _health(base_url))["audio_encrypted"] is True
        result = await stream_audio(ws_url(base_url), pcm, rate, realtime=0)
    assert "quarterly" in result["final"]["transcript"].lower()


async def test_sessions_past_the_limit_are_refused_as_busy(tmp_path: Path) -> None:
    with run_server(make_settings(tmp_path, max_sessions=1)) as base_url:
        async with websockets.connect(ws_url(base_url)) as first:
            await receive_until(first, "status")
            async with websockets.connect(ws_url(base_url)) as second:
                error, _ = await receive_until(second, "error")
                assert error["code"] == "busy" and "try again" in error["message"]
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(second.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            await first.send(json.dumps({"type": "stop"}))
            await receive_until(first, "final")


async def test_a_full_server_still_takes_back_the_client_of_a_parked_recording(tmp_path: Path) -> None:
    """MAX_SESSIONS=1: a client's network drops and another meeting takes the slot its socket gave back.
    The recording is served all along, so its client still resumes it; a socket that does anything else
    while the server is full is refused `busy`, close 1013, as any other."""
    pcm, rate = load_wav("one_voice.wav")
    cut = int(4.6 * rate)
    settings = make_settings(tmp_path, max_sessions=1, resume_grace_seconds=30, admission_by_load=False)
    with run_server(settings) as base_url:
        hello = await _record_and_drop(base_url, pcm[:cut], rate)
        await _wait_for_idle(base_url)  # its socket gave the slot back
        async with websockets.connect(ws_url(base_url)) as other:
            await receive_until(other, "status")  # another meeting took the slot
            async with websockets.connect(ws_url(base_url)) as stranger:
                await stranger.send(json.dumps({"type": "start", "sample_rate": rate}))
                error, _ = await receive_until(stranger, "error")
                assert error["code"] == "busy" and "try again" in error["message"]
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(stranger.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            async with websockets.connect(ws_url(base_url)) as back:
                await back.send(json.dumps({"type": "start", "sample_rate": rate, "resume": hello["session_id"]}))
                answer, _ = await receive_until(back, "status")
                while not answer.get("resumed"):
                    answer, _ = await receive_until(back, "status")
                await back.send(pcm[cut:].tobytes())
                await back.send(json.dumps({"type": "stop"}))
                final, _ = await receive_until(back, "final")
            await other.send(json.dumps({"type": "stop"}))
            await receive_until(other, "final")
    assert final["session_id"] == hello["session_id"]
    assert abs(final["metrics"]["audio_seconds"] - len(pcm) / rate) < 0.05, "one final for the whole meeting"
    assert "quarterly" in final["transcript"].lower() and "marketing" in final["transcript"].lower()


async def test_session_past_the_maximum_duration_is_stopped_and_finalised(tmp_path: Path) -> None:
    pcm, rate = load_wav("one_voice.wav")
    with run_server(make_settings(tmp_path, max_session_seconds=3)) as base_url:
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(pcm.tobytes())
            final, seen = await receive_until(ws, "final")
    assert any("maximum session length" in m.get("message", "") for m in seen)
    assert final["metrics"]["audio_seconds"] <= 3.1


async def test_frames_in_flight_after_stop_get_one_notice_and_the_final_still_comes(tmp_path: Path) -> None:
    """A browser's worklet posts a few more buffers after the button is pressed (issue: a lost final)."""
    pcm, rate = load_wav("one_voice.wav")
    with run_server(make_settings(tmp_path, max_protocol_violations=3)) as base_url:
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(pcm[: 4 * rate].tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            for offset in range(4 * rate, len(pcm), 640):  # 40 ms frames keep coming, as from an AudioWorklet
                await ws.send(pcm[offset : offset + 640].tobytes())
            final, seen = await receive_until(ws, "final")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
    assert [m["code"] for m in seen if m["type"] == "error"] == ["audio_after_stop"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert final["metrics"]["audio_seconds"] == 4.0 and "quarterly" in final["transcript"].lower()


async def test_a_naive_client_that_keeps_sending_past_the_maximum_duration_gets_its_final(tmp_path: Path) -> None:
    pcm, rate = load_wav("one_voice.wav")
    with run_server(make_settings(tmp_path, max_session_seconds=3, max_protocol_violations=3)) as base_url:
        async with websockets.connect(ws_url(base_url)) as ws:
            for offset in range(0, len(pcm), 1600):
                await ws.send(pcm[offset : offset + 1600].tobytes())
            final, seen = await receive_until(ws, "final")
    assert [m["code"] for m in seen if m["type"] == "error"] == ["audio_after_stop"]
    assert final["metrics"]["audio_seconds"] <= 3.1


async def test_silent_sockets_are_closed_and_idle_recordings_finished(tmp_path: Path) -> None:
    """Four sockets that never send a byte must not hold MAX_SESSIONS=4 slots for long."""
    pcm, rate = load_wav("one_voice.wav")
    settings = make_settings(
        tmp_path,
        ws_handshake_timeout_seconds=1.0,
        session_idle_timeout_seconds=2.0,
        admission_by_load=False,  # the slots of MAX_SESSIONS are under test, not what 2 cores can serve
    )
    with run_server(settings) as base_url:
        silent = [await websockets.connect(ws_url(base_url)) for _ in range(4)]
        for ws in silent:
            error, _ = await receive_until(ws, "error", limit=10)
            assert error["code"] == "handshake_timeout"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert (await _wait_for_idle(base_url, limit=10))["active_sessions"] == 0
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
            await ws.send(pcm.tobytes())  # then nothing, and no stop
            final, seen = await receive_until(ws, "final", limit=60)
    assert any("No audio for 2 s" in m.get("message", "") for m in seen)
    assert "quarterly" in final["transcript"].lower()


async def test_a_vanished_flooder_frees_its_slot_without_waiting_out_its_backlog(tmp_path: Path) -> None:
    """Frames a killed flooder left behind are read at once (none dropped) instead of at the rate limit."""
    settings = make_settings(tmp_path, max_frames_per_second=2)  # what the buffers hold is a long backlog
    with run_server(settings) as base_url:
        ws = await websockets.connect(ws_url(base_url))
        # 5 ms frames as fast as TCP takes them for 5 s; once the socket buffers are full (the server
        # reads at the rate limit), a send waits for room: the flood ends there too
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while True:
                    await ws.send(b"\x01\x00" * 80)
        ws.transport.abort()
        gone_at = time.monotonic()
        await _wait_for_idle(base_url, limit=120)
        released_after = time.monotonic() - gone_at
    (line,) = settings.meeting_log_path.read_text().splitlines()
    frames = json.loads(line)["duration"] / 0.005
    backlog_at_rate_limit = frames / 2 - 5.0  # what reading the rest at 2 frames a second would take
    assert backlog_at_rate_limit > 10, "the flood must leave a backlog for this test to mean anything"
    assert released_after < backlog_at_rate_limit / 4, (released_after, backlog_at_rate_limit)


async def test_abandoned_recordings_wait_behind_a_live_meeting(tmp_path: Path) -> None:
    """Clients that send a recording in one frame and vanish must not starve a meeting being watched."""
    settings = make_settings(tmp_path, inference_workers=2)
    abandoned, _ = load_wav("meeting_two_voices.wav")
    pcm, rate = load_wav("one_voice.wav")
    with run_server(settings) as base_url:
        for _ in range(6):
            ws = await websockets.connect(ws_url(base_url))
            await ws.send(abandoned.tobytes())
            await (await ws.ping())  # the frame has arrived (abort() drops what is still unsent)
            ws.transport.abort()
        live = await stream_audio(ws_url(base_url), pcm, rate, realtime=4.0)
        finished_before_live = len(settings.meeting_log_path.read_text().splitlines())
        health = await _wait_for_idle(base_url, limit=120)
        async with asyncio.timeout(120):  # the last background jobs may still be running
            while len(settings.meeting_log_path.read_text().splitlines()) < 7:  # noqa: ASYNC110 - polls a file
                await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    assert "marketing" in live["final"]["transcript"].lower()
    # first come, first served would finish at least four of them before the live meeting's final
    assert finished_before_live <= 3, finished_before_live
    assert health["queue_depth"] == 0
    assert len(settings.meeting_log_path.read_text().splitlines()) == 7, "every abandoned recording is finished"
    assert "meeting_assistant_background_jobs_dropped_total 0.0" in metrics


async def test_a_dropped_socket_resumes_the_same_session(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, resume_grace_seconds=30)
    pcm, rate = load_wav("one_voice.wav")
    cut = int(4.6 * rate)
    with run_server(settings) as base_url:
        hello = await _record_and_drop(base_url, pcm[:cut], rate)
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": rate, "resume": hello["session_id"]}))
            answer = None
            while answer is None:
                message, _ = await receive_until(ws, "status")
                answer = message if message.get("resumed") else None
            await ws.send(pcm[int(answer["received_seconds"] * rate) :].tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            final, _ = await receive_until(ws, "final")
        await _wait_for_idle(base_url)
    assert answer["session_id"] == hello["session_id"] and answer["received_seconds"] == pytest.approx(4.6, abs=0.01)
    assert final["session_id"] == hello["session_id"]
    assert abs(final["metrics"]["audio_seconds"] - len(pcm) / rate) < 0.05, "one final for the whole meeting"
    text = final["transcript"].lower()
    assert "quarterly" in text and "marketing" in text
    (line,) = settings.meeting_log_path.read_text().splitlines()
    assert json.loads(line)["title"] == "Dropped"


async def test_token_and_origin_are_checked_before_accept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="s3cret-token", allowed_origins="http://good.example")
    with run_server(settings) as base_url:
        for query, origin in [("", None), ("token=wrong", None), ("token=s3cret-token", "http://evil.example")]:
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(ws_url(base_url, query), origin=origin)
            assert refused.value.response.status_code == 403
        async with websockets.connect(ws_url(base_url, "token=s3cret-token"), origin="http://good.example") as ws:
            status, _ = await receive_until(ws, "status")
            assert status["status"] == "recording"
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    assert 'meeting_assistant_sessions_refused_total{reason="token"} 2.0' in metrics
    assert 'meeting_assistant_sessions_refused_total{reason="origin"} 1.0' in metrics


async def test_metrics_exposes_the_contract_series(live_server: str) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{live_server}/metrics")).text
    for name in (
        'meeting_assistant_inference_queue_depth{backend="asyncio"}',
        "meeting_assistant_asr_latency_seconds",
        "meeting_assistant_diarization_latency_seconds",
        "meeting_assistant_llm_latency_seconds",
        "meeting_assistant_end_to_end_latency_seconds",
        "meeting_assistant_jobs_total",
        "meeting_assistant_job_failures_total",
        "meeting_assistant_llm_failures_total",
        "meeting_assistant_active_sessions",
    ):
        assert name in text
    health = await _health(live_server)
    assert health["status"] == "ok" and health["workers"] >= 1 and "queue_depth" in health
    assert "tiny.en" in str(health["asr_model"])
