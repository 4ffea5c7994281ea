"""The session's state machine and bad-input paths, driven without a network.

A `FakeWebSocket` stands in for the transport and `FakeRecognizer` for Whisper; the session,
the pipeline, the orchestrator, the live pump and the VAD are the real ones. What needs a real
transport (frame sizes on the wire, abrupt TCP disconnects, shutdown) is in test_app_ws.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest

from services.admission import SessionLimits
from services.fake_recognizer import FakeRecognizer
from services.pipeline import MeetingPipeline
from services.session import RecordingSession, SessionState
from tests.fakes.pipeline import FakeWebSocket, RecordingHook, fake_pipeline, scripted_words
from tests.support import load_wav

pytestmark = pytest.mark.timeout(60)

LIMITS = SessionLimits(max_session_seconds=3600, max_message_bytes=1 << 20, max_violations=4, max_frames_per_second=1e6)


@pytest.fixture
async def pipeline_and_hook() -> AsyncIterator[tuple[MeetingPipeline, RecordingHook]]:
    hook = RecordingHook()
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), hooks=[hook]) as (pipeline, _):
        yield pipeline, hook


def _session(pipeline: MeetingPipeline, limits: SessionLimits = LIMITS) -> tuple[RecordingSession, FakeWebSocket]:
    socket = FakeWebSocket()
    return RecordingSession(socket, "s1", pipeline, limits), socket  # type: ignore[arg-type]


def _pcm(seconds: float | None = None) -> bytes:
    pcm, _ = load_wav("one_voice.wav")
    return (pcm if seconds is None else pcm[: int(seconds * 16000)]).tobytes()


def _codes(socket: FakeWebSocket) -> list[str]:
    return [message["code"] for message in socket.of_type("error")]


async def test_start_audio_stop_gives_one_final_and_closes_normally(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0])
    socket.json({"type": "start", "sample_rate": 16000, "title": "Numbers"})
    audio = _pcm()
    for offset in range(0, len(audio), 3200):
        socket.audio(audio[offset : offset + 3200])
    socket.json({"type": "stop"})
    await session.run()
    statuses = [m["status"] for m in socket.of_type("status")]
    assert statuses == ["recording", "queued", "transcribing", "diarizing", "summarizing", "done"]
    (final,) = socket.of_type("final")
    assert socket.sent[-1] is final and socket.close_code == 1000
    assert "quarterly numbers look strong" in final["transcript"] and final["metrics"]["audio_seconds"] > 9
    assert session.state is SessionState.DONE
    assert pipeline_and_hook[1].records[0].title == "Numbers"


async def test_bad_text_frames_get_errors_and_the_socket_stays_open(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0])
    socket.text("not json")
    socket.text("[1, 2]")
    socket.json({"type": "dance"})
    socket.audio(_pcm(2.0))
    socket.json({"type": "stop"})
    await session.run()
    assert _codes(socket) == ["invalid_json", "invalid_message", "unknown_type"]
    assert len(socket.of_type("final")) == 1 and socket.close_code == 1000


async def test_start_twice_stop_twice_and_audio_after_stop_change_nothing(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0])
    socket.json({"type": "start"})
    socket.audio(_pcm(3.0))
    socket.json({"type": "start"})
    socket.json({"type": "stop"})
    socket.json({"type": "stop"})
    socket.audio(_pcm(1.0))
    await session.run()
    assert _codes(socket) == ["already_started", "already_stopped", "audio_after_stop"]
    (final,) = socket.of_type("final")
    assert final["metrics"]["audio_seconds"] == pytest.approx(3.0, abs=0.01), "audio after stop is not kept"


async def test_repeated_violations_close_with_1008_and_the_recording_is_still_finished(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    session, socket = _session(pipeline)
    socket.audio(_pcm())
    for _ in range(LIMITS.max_violations):
        socket.text("{broken")
    await session.run()
    assert socket.close_code == 1008 and _codes(socket)[-1] == "too_many_errors"
    await asyncio.wait_for(hook.arrived.wait(), 20)  # finished in the background
    assert "quarterly" in hook.records[0].transcript
    assert not socket.of_type("final"), "nothing is sent after the server closed the socket"


async def test_a_frame_over_the_limit_closes_with_1009(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    limits = dataclasses.replace(LIMITS, max_message_bytes=4096)
    session, socket = _session(pipeline_and_hook[0], limits)
    socket.audio(b"\0" * 4097)
    await session.run()
    assert socket.close_code == 1009


async def test_a_client_that_vanishes_mid_recording_has_its_meeting_finished(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    session, socket = _session(pipeline)
    socket.audio(_pcm())
    socket.disconnect()
    await session.run()
    assert session.state in (SessionState.DETACHED, SessionState.DONE) and socket.close_code is None
    await asyncio.wait_for(hook.arrived.wait(), 20)
    assert "survey results" in hook.records[0].transcript
    async with asyncio.timeout(10):
        while session.state is not SessionState.DONE:  # noqa: ASYNC110 - stored after the hooks ran; a 10 ms poll
            await asyncio.sleep(0.01)


async def test_a_client_that_leaves_before_any_audio_leaves_nothing_to_finish(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    session, socket = _session(pipeline)
    socket.json({"type": "start"})
    socket.disconnect()
    await session.run()
    assert session.state is SessionState.DONE
    await asyncio.sleep(0.2)
    assert hook.records == [] and pipeline.metrics.jobs_total.labels(stage="meeting")._value.get() == 0


async def test_the_maximum_length_stops_the_session_and_says_so(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    limits = dataclasses.replace(LIMITS, max_session_seconds=4.0)
    session, socket = _session(pipeline_and_hook[0], limits)
    audio = _pcm()
    for offset in range(0, len(audio), 3200):
        socket.audio(audio[offset : offset + 3200])
    socket.json({"type": "stop"})
    await session.run()
    assert any("maximum session length" in m["message"] for m in socket.of_type("status"))
    (final,) = socket.of_type("final")
    assert final["metrics"]["audio_seconds"] == pytest.approx(4.0, abs=0.01)
    assert _codes(socket) == ["audio_after_stop", "already_stopped"], "one notice for the frames still coming"


async def test_odd_sized_48khz_frames_are_reassembled(pipeline_and_hook: tuple[MeetingPipeline, RecordingHook]) -> None:
    import soxr

    pcm, _ = load_wav("one_voice.wav")
    raw = (soxr.resample(pcm.astype(np.float32) / 32768, 16000, 48000) * 32767).astype("<i2").tobytes()
    session, socket = _session(pipeline_and_hook[0])
    socket.json({"type": "start", "sample_rate": 48000})
    for offset in range(0, len(raw), 4801):
        socket.audio(raw[offset : offset + 4801])
    socket.json({"type": "stop"})
    await session.run()
    (final,) = socket.of_type("final")
    assert final["metrics"]["audio_seconds"] == pytest.approx(len(pcm) / 16000, abs=0.05)
    assert "marketing will publish" in final["transcript"].lower()


async def test_a_stop_while_the_server_shuts_down_ends_with_a_clear_error() -> None:
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice"))) as (pipeline, orchestrator):
        await orchestrator.drain()  # shutting down: no new jobs
        session, socket = _session(pipeline)
        socket.audio(_pcm(2.0))
        socket.json({"type": "stop"})
        await session.run()
    assert _codes(socket) == ["shutting_down"] and not socket.of_type("final")
    assert session.state is SessionState.DONE


async def test_live_partials_are_sent_while_audio_streams_in(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0])
    running = asyncio.create_task(session.run())
    audio = _pcm()
    for offset in range(0, len(audio), 6400):
        socket.audio(audio[offset : offset + 6400])
        await asyncio.sleep(0.02)
    partials_before_stop = list(socket.of_type("partial_transcript"))
    socket.json({"type": "stop"})
    await running
    assert any(not m["committed"] and "quarterly" in m["text"] for m in partials_before_stop)
    assert all(json.dumps(m) for m in socket.sent)


async def test_a_socket_that_sends_nothing_is_closed_after_the_handshake_timeout(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    session, socket = _session(pipeline, dataclasses.replace(LIMITS, handshake_timeout=0.2))
    await session.run()
    assert _codes(socket) == ["handshake_timeout"] and socket.close_code == 1008
    assert session.state is SessionState.DONE and hook.records == []


async def test_an_idle_recording_is_finished_with_what_it_has(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0], dataclasses.replace(LIMITS, idle_timeout=0.5))
    socket.json({"type": "start"})
    socket.audio(_pcm(5.0))
    await session.run()  # no stop: the idle limit ends it
    assert any("No audio for 0.5 s" in m["message"] for m in socket.of_type("status"))
    (final,) = socket.of_type("final")
    assert "quarterly numbers" in final["transcript"] and socket.close_code == 1000
