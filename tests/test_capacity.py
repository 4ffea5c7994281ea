"""Admission by load and thinned drafts: the load meter on injected readings, a live pump under load,
and a real server refusing past its measured capacity."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from observability import Metrics
from services.admission import SessionCounter
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.calibration import prior_from_reference
from services.capacity import CapacityPolicy, LoadMeter, SessionPrior
from services.fake_recognizer import FakeRecognizer
from services.live_load import LiveLoad, Reading
from services.live_policy import LivePolicy
from services.live_pump import LivePump
from services.live_transcriber import LiveTranscriber
from services.types import TranscriptUpdate
from tests.fakes.pipeline import scripted_words
from tests.support import load_wav, make_settings, receive_until, run_server, ws_url

POLICY = CapacityPolicy(max_sessions=16, cores=2.0, cpu_target=0.9, session_cpu=0.25, max_lag=3.0, probation=10.0)


def _feed(
    meter: LoadMeter,
    seconds: float,
    *,
    cores_busy: float,
    audio_rate: float,
    start: float = 0.0,
    lag: float = 0.0,
    queue_wait: float = 0.0,
) -> float:
    """Readings every 0.5 s for `seconds`: `cores_busy` CPU-s and `audio_rate` live audio-s per second."""
    at = start
    while at <= start + seconds:
        meter.update(
            Reading(at=at, cpu_seconds=at * cores_busy, audio_seconds=at * audio_rate, lag=lag, queue_wait=queue_wait)
        )
        at += 0.5
    return at


def test_an_idle_box_admits_what_the_prior_cost_says_fits_and_max_sessions_caps_it() -> None:
    meter = LoadMeter(POLICY, Metrics())
    _feed(meter, 5, cores_busy=0.0, audio_rate=0.0)
    assert meter.fits() == 7  # floor(2 cores x 0.9 / 0.25)
    assert meter.capacity(active=0) == 7 and meter.capacity(active=6) == 1 and meter.capacity(active=7) == 0
    assert LoadMeter(CapacityPolicy(max_sessions=3, cores=2.0)).capacity(active=1) == 2
    assert LoadMeter(CapacityPolicy(max_sessions=30, cores=2.0, by_load=False)).capacity(active=20) == 10


def test_short_cpu_thins_drafts_to_the_limit_and_room_brings_them_back() -> None:
    meter = LoadMeter(POLICY, Metrics())
    assert meter.draft_interval == pytest.approx(0.4)
    at = _feed(meter, 10, cores_busy=2.0, audio_rate=8.0)
    assert meter.draft_interval == pytest.approx(2.0)
    _feed(meter, 30, cores_busy=0.3, audio_rate=1.0, start=at)
    assert meter.draft_interval == pytest.approx(0.4)


def test_the_cost_is_measured_once_drafts_are_thinned_and_sets_how_many_fit() -> None:
    meter = LoadMeter(POLICY, Metrics())
    _feed(meter, 120, cores_busy=1.9, audio_rate=9.6)  # 0.198 CPU-s per audio s with drafts thinned
    assert meter.session_cost == pytest.approx(0.2, rel=0.05)
    assert meter.fits() == 9
    expensive = LoadMeter(POLICY, Metrics())
    _feed(expensive, 120, cores_busy=1.95, audio_rate=3.0)  # 0.65: a box where meetings cost more
    assert expensive.fits() == 2 and expensive.capacity(active=2) == 0
    quiet = LoadMeter(POLICY, Metrics())
    _feed(quiet, 120, cores_busy=0.4, audio_rate=4.1)  # 0.098 with full drafts: thinned can only be cheaper
    assert quiet.draft_interval == pytest.approx(0.4) and quiet.fits() == 18


def test_the_cheap_first_seconds_of_a_burst_do_not_open_the_box() -> None:
    """Young meetings cost little (no careful pass yet): measured then, a 1-core worker at prior 0.17
    said 10 more fit beside its 6. The prior plans through the warm-up, then the measured average
    (started from the prior) takes over."""
    one_core = CapacityPolicy(max_sessions=16, cores=1.0, cpu_target=0.9, session_cpu=0.17)
    meter = LoadMeter(one_core, Metrics())
    at = _feed(meter, 10, cores_busy=0.3, audio_rate=6.0)  # 0.05 CPU-s per audio s in the first seconds
    assert meter.fits() == 5 and meter.capacity(active=5) == 0  # floor(1 core x 0.9 / 0.17)
    at = _feed(meter, 15, cores_busy=0.3, audio_rate=6.0, start=at)
    assert meter.fits() == 5, "25 s of live audio: still the prior"
    _feed(meter, 120, cores_busy=0.3, audio_rate=6.0, start=at)  # a cheap box for minutes: believed
    assert meter.fits() == 17  # floor(0.9 / 0.0501): the average started from the prior


def test_the_calibrated_prior_plans_until_the_measured_cost_replaces_it() -> None:
    meter = LoadMeter(CapacityPolicy(max_sessions=16, cores=2.0, cpu_target=0.9, session_cpu=0.6), Metrics())
    assert meter.fits() == 3
    meter.use_prior(SessionPrior(0.2, "calibrated", reference_cpu_seconds=0.44))
    assert meter.fits() == 9  # floor(2 cores x 0.9 / 0.2)
    described = meter.describe(active=0)
    assert (described["session_cpu_prior"], described["prior_source"], described["reference_cpu_seconds"]) == (
        0.2,
        "calibrated",
        0.44,
    )
    _feed(meter, 120, cores_busy=1.9, audio_rate=3.8)  # a full box where meetings cost 0.5 CPU-s per audio s
    assert meter.draft_interval == pytest.approx(2.0) and meter.session_cost == pytest.approx(0.5, rel=0.05)
    assert meter.fits() == 3 and meter.describe(active=0)["session_cpu"] == pytest.approx(0.5, rel=0.05)


def test_the_lag_guard_closes_admission_and_reopens_only_after_probation() -> None:
    meter = LoadMeter(POLICY, Metrics())
    at = _feed(meter, 3, cores_busy=1.0, audio_rate=4.0)
    assert meter.capacity(active=4, now=at) == 3
    at = _feed(meter, 2, cores_busy=2.0, audio_rate=4.0, start=at, lag=5.0)  # live meetings fall behind
    assert meter.overloaded(at) and meter.capacity(active=4, now=at) == 0
    at = _feed(meter, 5, cores_busy=1.0, audio_rate=4.0, start=at, lag=1.0)  # under the limit, not yet half
    assert meter.capacity(active=4, now=at) == 0
    calm = _feed(meter, 3, cores_busy=1.0, audio_rate=4.0, start=at, lag=0.2)
    assert meter.overloaded(calm) and meter.capacity(active=1, now=calm) == 0, "on probation"
    assert not meter.overloaded(calm + POLICY.probation) and meter.capacity(active=1, now=calm + POLICY.probation) > 0
    waiting = LoadMeter(POLICY, Metrics())
    _feed(waiting, 2, cores_busy=1.0, audio_rate=4.0, queue_wait=1.5)  # live calls wait for a thread
    assert waiting.overloaded(2.0)


def test_refusals_say_busy_with_a_retry_hint_and_name_their_reason() -> None:
    meter = LoadMeter(CapacityPolicy(max_sessions=2, cores=1.0, cpu_target=0.9, session_cpu=0.4, retry_after=20))
    counter = SessionCounter(2, Metrics(), meter)
    assert counter.admit() is None and counter.admit() is None  # floor(0.9 / 0.4) = 2
    busy = counter.admit()
    assert busy is not None and busy.reason == "busy"
    counter.release()
    _feed(meter, 2, cores_busy=1.0, audio_rate=1.0, lag=10.0, start=time.monotonic())  # the orchestrator's clock
    busy = counter.admit()
    assert busy is not None and busy.reason == "overloaded"
    message = busy.message()
    assert message["type"] == "error" and message["code"] == "busy" and message["retry_after"] == 20
    assert "20 s" in message["message"]



def test_past_the_limit_one_socket_each_may_come_for_a_parked_recording() -> None:
    counter = SessionCounter(1, Metrics())
    assert counter.admit() is None and counter.admit() is not None
    assert not counter.admit_past_limit(parked=0), "nothing waits for its client: busy"
    assert counter.admit_past_limit(parked=1) and counter.active == 2
    assert not counter.admit_past_limit(parked=1), "one socket for the one parked recording"
    counter.release()
    assert counter.admit_past_limit(parked=1)
    below = SessionCounter(4, Metrics())  # refused by the load, below the count: only for a parked recording
    assert not below.admit_past_limit(parked=0) and below.admit_past_limit(parked=1)


class _Source:
    def __init__(self, received: float, lag: float) -> None:
        self.processed_seconds, self.lag_seconds = received, lag


def test_live_load_keeps_audio_cumulative_and_reports_lag_beyond_the_interval() -> None:
    live, first, second = LiveLoad(), _Source(10.0, 0.3), _Source(20.0, 2.5)
    live.track(first)
    live.track(second)
    reading = live.read(interval=0.4, queue_wait=0.0, at=1.0, cpu_seconds=0.0)
    assert reading.audio_seconds == 30.0 and reading.lag == pytest.approx(2.1)
    live.untrack(second)
    assert live.read(interval=0.4, queue_wait=0.0, at=2.0, cpu_seconds=0.0).audio_seconds == 30.0


async def _pump_meeting(meter: LoadMeter | None) -> tuple[FakeRecognizer, list[TranscriptUpdate], list[str]]:
    """The two-voice meeting through a live pump; model work inline, so every step is deterministic."""
    pcm, _ = load_wav("meeting_two_voices.wav")
    recognizer = FakeRecognizer(scripted_words("meeting_two_voices"))
    buffer = SecureAudioBuffer(AudioCipher(None))
    updates: list[TranscriptUpdate] = []

    async def inline(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    pump = LivePump(
        session_id="s",
        buffer=buffer,
        transcriber=LiveTranscriber(recognizer, buffer, LivePolicy()),
        speakers=None,
        run_model=inline,
        emit=lambda update, lag: updates.append(update),
        interval=0.4,
        metrics=Metrics(),
        load=meter,
    )
    pump.start()
    for offset in range(0, len(pcm), 1600):
        buffer.append(pcm[offset : offset + 1600])
        pump.notify()
        for _ in range(5):
            await asyncio.sleep(0)
    committed_live = [u.segment.text for u in updates if u.committed and u.segment.text]
    pump.stop()
    await pump.settle()
    await pump.finish()
    return recognizer, updates, committed_live


async def test_thinned_drafts_leave_committed_text_flowing_and_lose_no_word() -> None:
    calm_recognizer, calm_updates, calm_live = await _pump_meeting(None)
    loaded = LoadMeter(POLICY, Metrics())
    _feed(loaded, 10, cores_busy=2.0, audio_rate=8.0)  # a full box: drafts at their longest interval
    assert loaded.draft_interval == pytest.approx(2.0)
    recognizer, updates, live = await _pump_meeting(loaded)

    def count(calls: list[tuple[str, float, float]], kind: str) -> int:
        return sum(1 for call in calls if call[0] == kind)

    assert count(recognizer.calls, "draft") * 2 < count(calm_recognizer.calls, "draft"), "drafts are thinned"
    # careful passes are not: committed text keeps coming while the meeting records
    assert count(recognizer.calls, "transcribe") >= count(calm_recognizer.calls, "transcribe") - 1
    assert len(live) >= len(calm_live) - 1 and live
    words = " ".join(u.segment.text for u in updates if u.committed).split()
    assert words == " ".join(u.segment.text for u in calm_updates if u.committed).split()
    assert len(words) == len(scripted_words("meeting_two_voices"))


async def _get(base_url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"{base_url}{path}")


async def test_a_real_server_refuses_when_the_meter_says_full_and_ready_says_so(tmp_path: Path) -> None:
    # a meeting costs 1.5 CPU-s per audio s here (the prior, nothing measured yet) and the server may
    # plan with one core at 0.9: no meeting fits, although MAX_SESSIONS would allow four
    settings = make_settings(tmp_path, admission_session_cpu=1.5, admission_cpu_cores=1, max_sessions=4)
    with run_server(settings) as base_url:
        ready = await _get(base_url, "/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False, "capacity": 0, "active_sessions": 0}
        health = await _get(base_url, "/health")
        assert health.status_code == 200 and health.json()["capacity"]["remaining"] == 0
        capacity = health.json()["capacity"]  # the operator's prior wins: nothing calibrated
        assert (capacity["session_cpu_prior"], capacity["prior_source"]) == (1.5, "ADMISSION_SESSION_CPU")
        assert capacity["reference_cpu_seconds"] is None
        async with websockets.connect(ws_url(base_url)) as ws:
            error, seen = await receive_until(ws, "error")  # before any start or audio is taken
            assert not seen, "refused before the session started"
            assert error["code"] == "busy" and error["retry_after"] == 15 and "15 s" in error["message"]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        metrics = (await _get(base_url, "/metrics")).text
    assert 'meeting_assistant_sessions_refused_total{reason="capacity"} 1.0' in metrics
    assert "meeting_assistant_capacity_sessions 0.0" in metrics


async def test_ready_answers_while_meetings_fit_and_health_shows_the_measurements(live_server: str) -> None:
    ready = await _get(live_server, "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["capacity"] >= 1
    capacity = (await _get(live_server, "/health")).json()["capacity"]
    assert capacity["by_load"] is True and capacity["cores"] >= 1 and capacity["session_cpu"] > 0
    assert capacity["remaining"] >= 1 and capacity["overloaded"] is False


async def test_a_real_server_calibrates_its_prior_and_says_so_in_health_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), run_server(make_settings(tmp_path, max_sessions=16)) as base_url:
        capacity = (await _get(base_url, "/health")).json()["capacity"]
    reference = capacity["reference_cpu_seconds"]
    assert capacity["prior_source"] == "calibrated" and reference > 0
    assert capacity["session_cpu_prior"] == pytest.approx(prior_from_reference(reference), abs=0.002)
    assert capacity["session_cpu"] == capacity["session_cpu_prior"], "nothing measured yet: the prior plans"
    fits = math.floor(capacity["cores"] * 0.9 / capacity["session_cpu"] + 1e-9)
    assert capacity["remaining"] == min(16, fits)
    ready = re.search(r"ready: .* admission prior ([0-9.]+) CPU-s per audio s \(calibrated\)", caplog.text)
    assert ready is not None and float(ready.group(1)) == pytest.approx(capacity["session_cpu_prior"], abs=0.001)
