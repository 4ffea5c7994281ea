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
from pathlib import Path

import numpy as np
import pytest

from services.admission import SessionLimits
from services.fake_recognizer import FakeRecognizer
from services.pipeline import MeetingPipeline
from services.resume import ResumeRegistry
from services.session import RecordingSession
from services.session_state import SessionState
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from services.stored_meeting import MeetingStatus
from tests.fakes.pipeline import FakeWebSocket, RecordingHook, fake_pipeline, scripted_words
from tests.support import load_wav, straddles

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


async def test_a_stop_while_the_server_shuts_down_ends_with_a_clear_error(tmp_path: Path) -> None:
    store = await SqlMeetingStore.open(sqlite_url(tmp_path))
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), store=store) as (pipeline, orchestrator):
        await orchestrator.drain()  # shutting down: no new jobs
        session, socket = _session(pipeline)
        socket.audio(_pcm(2.0))
        socket.json({"type": "stop"})
        await session.run()
        await store.aclose()  # what shutdown does next
    assert _codes(socket) == ["shutting_down"] and not socket.of_type("final")
    assert session.state is SessionState.DONE
    async with await SqlMeetingStore.open(sqlite_url(tmp_path)) as reopened:
        # Listed before the store closed, so start-up recovery finds the meeting and its spool.
        assert (await reopened.get("s1")).status is MeetingStatus.RECORDING


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


async def test_a_dropped_client_resumes_its_recording_and_gets_one_final_for_all_of_it(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    resumes = ResumeRegistry(30.0, lambda parked: pytest.fail("the recording was resumed, not expired"))
    first = FakeWebSocket()
    session = RecordingSession(first, "drop", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    first.json({"type": "start", "title": "Numbers"})
    first.audio(_pcm(4.5))  # "The quarterly numbers look strong and sales grew in every region."
    first.disconnect()
    await session.run()
    assert len(resumes) == 1 and hook.records == []
    second = FakeWebSocket()
    resumed = RecordingSession(second, "other", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    second.json({"type": "start", "resume": "drop"})
    audio = _pcm()
    second.audio(audio[int(4.5 * 16000) * 2 :])
    second.json({"type": "stop"})
    await resumed.run()
    answer = next(m for m in second.of_type("status") if m.get("resumed"))
    assert answer["session_id"] == "drop" and answer["received_seconds"] == pytest.approx(4.5, abs=0.01)
    (final,) = second.of_type("final")
    assert final["session_id"] == "drop"
    assert final["metrics"]["audio_seconds"] == pytest.approx(len(audio) / 32000, abs=0.02), "the whole meeting"
    assert "quarterly numbers" in final["transcript"] and "survey results" in final["transcript"]
    assert len(hook.records) == 1 and hook.records[0].title == "Numbers"


async def test_a_client_that_left_mid_phrase_finds_what_came_before_committed_apart(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    """The socket drops in the middle of "The quarterly numbers look strong and sales grew": what came
    before is committed as the client left (a reloaded page records afresh, so what follows may not
    continue it) and no committed segment runs across the drop."""
    pipeline, _ = pipeline_and_hook
    resumes = ResumeRegistry(30.0, lambda parked: pytest.fail("the recording was resumed, not expired"))
    first = FakeWebSocket()
    session = RecordingSession(first, "drop", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    first.json({"type": "start"})
    audio = _pcm()
    first.audio(audio[: 3 * 32000])
    first.disconnect()
    await session.run()
    second = FakeWebSocket()
    resumed = RecordingSession(second, "other", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    second.json({"type": "start", "resume": "drop"})
    second.audio(audio[3 * 32000 :])
    second.json({"type": "stop"})
    await resumed.run()
    committed = [m for m in second.of_type("partial_transcript") if m["committed"] and m["text"]]
    assert len(committed) >= 2 and not any(straddles(m, 3.0) for m in committed), committed
    (final,) = second.of_type("final")
    assert "quarterly numbers" in final["transcript"] and "survey results" in final["transcript"]


@pytest.mark.parametrize("new_capture", [False, True])
async def test_a_returning_client_is_heard_with_the_second_before_unless_it_sends_a_new_capture(
    new_capture: bool,
) -> None:
    """A client resending the rest of a phrase (a dropped socket) is heard with the 1.5 s before where it
    left, so a word cut in two is not lost; a reloaded page's new capture (`new_capture`) on its own. (The
    live transcriber's careful pass at stop: the full-context pass would read the tail in its stead.)"""
    recognizer = FakeRecognizer(scripted_words("one_voice"))
    async with fake_pipeline(recognizer, full_context_final=False) as (pipeline, _):
        resumes = ResumeRegistry(30.0, lambda parked: pytest.fail("the recording was resumed, not expired"))
        first = FakeWebSocket()
        session = RecordingSession(first, "drop", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
        first.json({"type": "start"})
        audio = _pcm()
        first.audio(audio[: 3 * 32000])  # mid-phrase
        first.disconnect()
        await session.run()
        second = FakeWebSocket()
        resumed = RecordingSession(second, "other", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
        second.json({"type": "start", "resume": "drop", "new_capture": new_capture})
        second.audio(audio[3 * 32000 :])
        second.json({"type": "stop"})
        await resumed.run()
    after = min(start for kind, start, end in recognizer.calls if kind == "transcribe" and end > 3.5)
    assert after == (pytest.approx(3.0, abs=0.1) if new_capture else pytest.approx(1.5, abs=0.1))
    (final,) = second.of_type("final")
    assert "quarterly numbers" in final["transcript"] and "survey results" in final["transcript"]


async def test_resuming_an_unknown_session_is_refused_and_a_new_one_can_start(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    session, socket = _session(pipeline_and_hook[0])
    socket.json({"type": "start", "resume": "nope"})
    socket.json({"type": "start"})
    socket.audio(_pcm(2.0))
    socket.json({"type": "stop"})
    await session.run()
    assert _codes(socket) == ["unknown_session"]
    assert len(socket.of_type("final")) == 1


async def test_a_recording_nobody_resumes_is_finished_after_the_grace(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    resumes = ResumeRegistry(
        0.2, lambda parked: pipeline.finish_unheard(parked.session_id, parked.title, parked.started_at, parked.parts)
    )
    socket = FakeWebSocket()
    session = RecordingSession(socket, "gone", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    socket.audio(_pcm())
    socket.disconnect()
    await session.run()
    await asyncio.wait_for(hook.arrived.wait(), 20)
    assert "survey results" in hook.records[0].transcript and len(resumes) == 0


async def test_a_client_that_reconnects_before_its_old_socket_is_noticed_dead_takes_the_recording_over(
    pipeline_and_hook: tuple[MeetingPipeline, RecordingHook],
) -> None:
    pipeline, hook = pipeline_and_hook
    resumes = ResumeRegistry(30.0, lambda parked: pytest.fail("the recording was resumed, not expired"))
    old = FakeWebSocket()
    first = RecordingSession(old, "race", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    first_run = asyncio.create_task(first.run())
    old.audio(_pcm(4.5))
    await asyncio.sleep(0.1)
    new = FakeWebSocket()
    second = RecordingSession(new, "other", pipeline, LIMITS, resumes)  # type: ignore[arg-type]
    new.json({"type": "start", "resume": "race"})
    new.audio(_pcm()[int(4.5 * 16000) * 2 :])
    new.json({"type": "stop"})
    await second.run()
    await asyncio.wait_for(first_run, 10)
    assert old.close_code == 1000 and not old.of_type("final"), "the old socket lets go of the recording"
    (final,) = new.of_type("final")
    assert "quarterly numbers" in final["transcript"] and "survey results" in final["transcript"]
    assert len(hook.records) == 1
