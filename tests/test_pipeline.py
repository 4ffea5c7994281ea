"""The after-stop job (`MeetingPipeline.finish`) with a fake recogniser, diariser, provider and hooks.

The audio is a real scripted recording (the VAD is the real Silero model); what Whisper would
hear is scripted by time, so each test says exactly which words and speakers come out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from services.diarization_backends.fake import ScriptedDiarizer
from services.errors import TransientLLMError
from services.fake_recognizer import FakeRecognizer
from services.llm_providers.fake import ScriptedProvider
from services.pipeline import MeetingPipeline
from services.recording import FinishedRecording
from services.types import TranscriptUpdate
from tests.fakes.llm import answer_json
from tests.fakes.pipeline import RecordingHook, fake_pipeline, scripted_turns, scripted_words
from tests.support import load_wav


def _recorded(pipeline: MeetingPipeline, name: str, seconds: float | None = None) -> FinishedRecording:
    """A stopped recording of fixture `name` (its first `seconds`), never drafted live."""
    pcm, _ = load_wav(f"{name}.wav")
    parts = pipeline.open_session(name, lambda update, lag: None)
    parts.buffer.append(pcm if seconds is None else pcm[: int(seconds * 16000)])
    return FinishedRecording(name, "Weekly sync", time.time(), time.perf_counter(), parts)


async def _finish(pipeline: MeetingPipeline, recording: FinishedRecording) -> tuple[dict[str, Any], list[dict]]:
    sent: list[dict[str, Any]] = []
    final = await pipeline.finish(recording, sent.append)
    return final, sent


async def test_finish_commits_diarises_summarises_and_hands_on_the_meeting() -> None:
    hook = RecordingHook()
    diarizer = ScriptedDiarizer(scripted_turns("meeting_two_voices"))
    provider = ScriptedProvider("vllm", [answer_json("They planned the website launch.")])
    recognizer = FakeRecognizer(scripted_words("meeting_two_voices"))
    async with fake_pipeline(recognizer, diarizer=diarizer, providers=[provider], hooks=[hook]) as (pipeline, _):
        recording = _recorded(pipeline, "meeting_two_voices")
        final, sent = await _finish(pipeline, recording)
    assert [m["status"] for m in sent if m["type"] == "status"] == ["transcribing", "diarizing", "summarizing", "done"]
    assert final["type"] == "final" and final["session_id"] == "meeting_two_voices"
    assert "launch plan for the new website" in final["transcript"] and "next week" in final["transcript"]
    assert [s["speaker"] for s in final["segments"]][:2] == ["SPEAKER_1", "SPEAKER_2"]
    assert final["metrics"]["speakers"] == 2 and final["provider"] == "vllm" and final["errors"] == []
    assert final["summary"]["summary"] == "They planned the website launch."
    assert final["metrics"]["stop_to_final_seconds"] >= final["metrics"]["summary_seconds"]
    assert hook.records[0].title == "Weekly sync" and hook.records[0].transcript == final["transcript"]
    assert recording.parts.buffer.samples == 0, "the audio is dropped once the meeting is finished"


async def test_a_failing_diariser_leaves_unlabelled_segments_and_says_why() -> None:
    recognizer = FakeRecognizer(scripted_words("one_voice"))
    async with fake_pipeline(recognizer, diarizer=ScriptedDiarizer([], error="GPU on fire")) as (pipeline, _):
        final, _ = await _finish(pipeline, _recorded(pipeline, "one_voice"))
    assert "quarterly numbers" in final["transcript"]
    assert all(s["speaker"] is None for s in final["segments"])
    assert any("Speaker labels unavailable" in e and "GPU on fire" in e for e in final["errors"])


async def test_a_failing_tail_commit_is_reported_and_the_meeting_still_ends() -> None:
    recognizer = FakeRecognizer(scripted_words("one_voice"), fail_transcribe=True, fail_window=True)
    async with fake_pipeline(recognizer) as (pipeline, _):
        recording = _recorded(pipeline, "one_voice")
        final, sent = await _finish(pipeline, recording)
    assert [m["code"] for m in sent if m["type"] == "error"] == ["transcription_failed"]
    assert any("injected fault" in e for e in final["errors"])
    assert final["provider"] == "none" and final["segments"] == []
    assert recording.parts.buffer.samples == 0


async def test_the_final_is_the_full_context_reading_and_either_reading_stands_in_for_the_other() -> None:
    """A recording nobody watched live (an upload, a recovered one) is read once, by the full-context
    pass; when that fails, the careful pass reads it instead, and no error is shown: nothing is lost."""
    for fail_window, calls in ((False, {"window"}), (True, {"window", "transcribe"})):
        recognizer = FakeRecognizer(scripted_words("one_voice"), fail_window=fail_window)
        async with fake_pipeline(recognizer) as (pipeline, _):
            final, _ = await _finish(pipeline, _recorded(pipeline, "one_voice"))
        assert "quarterly numbers" in final["transcript"] and final["errors"] == []
        assert {kind for kind, _, _ in recognizer.calls} == calls


@pytest.mark.parametrize("fail_window", [False, True])
async def test_at_stop_the_open_tail_is_committed_from_the_words_just_read(fail_window: bool) -> None:
    """The full-context pass reads the rest at stop: the utterance still open is committed from its words,
    with no careful pass of its own; only when that reading failed does a careful pass commit it."""
    updates: list[TranscriptUpdate] = []
    pcm, _ = load_wav("one_voice.wav")
    pcm = pcm[: int(7.5 * 16000)]  # stopped mid-sentence: "Marketing will publish the customer" is open
    recognizer = FakeRecognizer(scripted_words("one_voice"), fail_window=fail_window)
    async with fake_pipeline(recognizer) as (pipeline, _):
        parts = pipeline.open_session("tail", lambda update, lag: updates.append(update))
        parts.pump.start()
        for offset in range(0, len(pcm), 1600):
            parts.buffer.append(pcm[offset : offset + 1600])
            parts.pump.notify()
            await asyncio.sleep(0.01)
        final, _ = await _finish(pipeline, FinishedRecording("tail", None, time.time(), time.perf_counter(), parts))
    careful_at_stop = [call for call in recognizer.calls if call[0] == "transcribe" and call[2] >= 7.4]
    assert bool(careful_at_stop) is fail_window, recognizer.calls
    committed = " ".join(u.segment.text for u in updates if u.committed)
    assert "publish the customer" in committed and "publish the customer" in final["transcript"]
    assert {u.segment_id for u in updates if not u.committed} <= {u.segment_id for u in updates if u.committed}


async def test_silence_gives_a_no_speech_final_without_calling_a_provider() -> None:
    provider = ScriptedProvider("vllm", [answer_json()])
    async with fake_pipeline(FakeRecognizer([]), providers=[provider]) as (pipeline, _):
        parts = pipeline.open_session("quiet", lambda update, lag: None)
        parts.buffer.append(np.zeros(16000 * 3, dtype=np.int16))
        final, _ = await _finish(pipeline, FinishedRecording("quiet", None, time.time(), time.perf_counter(), parts))
    assert final["provider"] == "none" and final["transcript"] == "" and provider.calls == []
    assert final["summary"]["summary"].startswith("No speech")


async def test_failing_provider_and_hook_are_listed_and_the_offline_summary_answers() -> None:
    hook = RecordingHook(error="webhook answered 500")
    provider = ScriptedProvider("vllm", [TransientLLMError("vllm", "server error 503", reason="server_error")])
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), providers=[provider], hooks=[hook]) as (
        pipeline,
        _,
    ):
        final, _ = await _finish(pipeline, _recorded(pipeline, "one_voice"))
    assert final["provider"] == "offline" and final["summary"]["summary"]
    assert any(e.startswith("vllm:") for e in final["errors"])
    assert "recorder: webhook answered 500" in final["errors"]


async def test_live_updates_reach_emit_and_the_tail_is_committed_at_finish() -> None:
    """Drafts while audio streams in, then `finish` commits every drafted segment."""
    updates: list[TranscriptUpdate] = []
    pcm, _ = load_wav("one_voice.wav")
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice"))) as (pipeline, _):
        parts = pipeline.open_session("live", lambda update, lag: updates.append(update))
        parts.pump.start()
        for offset in range(0, len(pcm), 1600):
            parts.buffer.append(pcm[offset : offset + 1600])
            parts.pump.notify()
            await asyncio.sleep(0.01)  # the pump's step runs on the executor meanwhile
        final, _ = await _finish(pipeline, FinishedRecording("live", None, time.time(), time.perf_counter(), parts))
    drafts = [u for u in updates if not u.committed]
    assert drafts and "quarterly" in " ".join(u.segment.text for u in drafts)
    drafted_ids = {u.segment_id for u in drafts}
    assert drafted_ids <= {u.segment_id for u in updates if u.committed}, "every drafted segment ends committed"
    assert "survey results next month" in final["transcript"]
