"""The final transcript's full-context pass: bare faster-whisper's 30 s windows, read while recording."""

from __future__ import annotations

import asyncio
import json
import re

import jiwer
import numpy as np
import pytest

from observability import Metrics
from services.asr_service import WhisperRecognizer, load_recognizer
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.errors import ASRError
from services.fake_recognizer import FakeRecognizer
from services.full_context_pass import FullContextPass, FullContextReaders, FullContextRunner
from services.live_policy import LivePolicy
from services.live_transcriber import LiveTranscriber
from services.types import SAMPLE_RATE, Segment
from tests.fakes.pipeline import scripted_words
from tests.support import FIXTURES, load_wav, make_settings


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> WhisperRecognizer:
    return load_recognizer(make_settings(tmp_path_factory.mktemp("full")), Metrics())


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _script(*names: str) -> str:
    turns = [turn for name in names for turn in json.loads((FIXTURES / f"{name}.json").read_text())["turns"]]
    return " ".join(turn["text"] for turn in turns)


def _record(full: FullContextPass, buffer: SecureAudioBuffer, pcm: np.ndarray) -> int:
    """Feed `pcm` in 0.4 s frames, reading each window once due (as the pump does); how many were read."""
    windows = 0
    for offset in range(0, len(pcm), int(0.4 * SAMPLE_RATE)):
        buffer.append(pcm[offset : offset + int(0.4 * SAMPLE_RATE)])
        if full.due():
            full.step()
            windows += 1
    return windows


def test_windows_are_read_while_recording_and_the_final_is_as_accurate_as_bare_whisper(
    recognizer: WhisperRecognizer,
) -> None:
    names = ("meeting_two_voices", "meeting_three_voices", "one_voice")
    pcm = np.concatenate([load_wav(f"{name}.wav")[0] for name in names])  # 63 s, four voices
    buffer = SecureAudioBuffer(AudioCipher(None))
    full = FullContextPass(recognizer, buffer)
    assert _record(full, buffer, pcm) >= 1 and full.segments, "a window is read once 30 s have come"
    before_stop = full.segments[-1].end
    full.finish()
    text = " ".join(segment.text for segment in full.transcript([]))
    bare, _ = recognizer.model.transcribe(pcm.astype(np.float32) / 32768, beam_size=5)
    reference = _words(_script(*names))
    final_wer = jiwer.wer(reference, _words(text))
    bare_wer = jiwer.wer(reference, _words(" ".join(piece.text for piece in bare)))
    assert final_wer <= bare_wer + 0.05, (final_wer, bare_wer, text)
    assert before_stop >= 20.0, "the windows read while recording covered most of the first 30 s"
    starts = [segment.start for segment in full.segments]
    assert starts == sorted(starts) and all(s.words for s in full.segments), "in order, with word times"


def test_a_new_capture_is_never_read_in_one_window_with_the_old(recognizer: WhisperRecognizer) -> None:
    old, _ = load_wav("one_voice.wav")
    new, _ = load_wav("meeting_two_voices.wav")
    buffer = SecureAudioBuffer(AudioCipher(None))
    full = FullContextPass(recognizer, buffer)
    buffer.append(old[: len(old) - SAMPLE_RATE])  # the page reloaded mid-word, a second before the end
    full.cut(buffer.samples)
    cut = buffer.samples / SAMPLE_RATE
    assert full.due(), "the old capture is read up to the cut at once"
    full.step()
    buffer.append(new)
    full.finish()
    after = [segment for segment in full.transcript([]) if segment.start >= cut - 0.1]
    assert all(segment.end <= cut + 0.1 for segment in full.segments if segment not in after)
    assert _words(after[0].text).startswith("good morning"), [segment.text for segment in full.segments]


def test_silence_is_never_read() -> None:
    fake = FakeRecognizer([])
    buffer = SecureAudioBuffer(AudioCipher(None))
    live = LiveTranscriber(fake, buffer, LivePolicy())
    full = FullContextPass(fake, buffer, live.speech)
    buffer.append(np.zeros(45 * SAMPLE_RATE, dtype=np.int16))
    live.hear_to()
    full.step()
    full.finish()
    assert fake.calls == [] and full.transcript([]) == []


def test_a_failed_window_leaves_the_rest_to_the_live_text_and_a_takeover_keeps_what_came_before() -> None:
    fake = FakeRecognizer(scripted_words("one_voice"))
    buffer = SecureAudioBuffer(AudioCipher(None))
    pcm, _ = load_wav("one_voice.wav")
    full = FullContextPass(fake, buffer)
    earlier = Segment(start=0.0, end=2.0, text="Committed by the worker before.")
    full.start_after([earlier])
    buffer.append(np.concatenate([pcm, np.zeros(25 * SAMPLE_RATE, dtype=np.int16), pcm]))
    full.step()  # [0.5 s, 30.5 s): the window read, heard with 1.5 s before the takeover point
    fake.fail_window = True
    with pytest.raises(ASRError):
        full.finish()
    live = [earlier, Segment(start=20.0, end=21.0, text="already covered"), Segment(start=36.0, end=40.0, text="live")]
    final = full.transcript(live)
    assert final[0] is earlier and final[-1].text == "live" and "already covered" not in [s.text for s in final]
    assert [call[:2] for call in fake.calls] == [("window", 0.5), ("window", 30.5)]
    assert all(word.start >= 1.9 for segment in final[1:-1] for word in segment.words), "no word of the text before"
    assert not full.due(), "a failed pass reads nothing more"


def test_a_window_s_words_never_run_into_the_next_window(recognizer: WhisperRecognizer) -> None:
    """AMI trn04 (far-field, CC BY 4.0): the first window ends on an unfinished segment, so the next
    reads from its last timestamp; the word alignment had stretched that window's words 9 s past it."""
    pcm, _ = load_wav("ami_trn04.wav")
    buffer = SecureAudioBuffer(AudioCipher(None))
    full = FullContextPass(recognizer, buffer)
    buffer.append(pcm)
    full.step()
    full.finish()
    segments = full.transcript([])
    assert len(segments) >= 2, [segment.text for segment in segments]
    for earlier, later in zip(segments, segments[1:], strict=False):
        assert earlier.end <= later.start + 0.05, [(s.start, s.end, s.text) for s in segments]
        assert all(word.end <= later.start + 0.05 for word in earlier.words)


async def test_a_busy_box_leaves_the_final_to_the_live_text() -> None:
    """When the load meter thins drafts the full-context reading waits, and at stop the committed text
    stands in for what it did not read: finals of a full box keep their pace."""
    fake = FakeRecognizer(scripted_words("one_voice"))
    buffer = SecureAudioBuffer(AudioCipher(None))
    busy = True
    metrics = Metrics()

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    runner = FullContextRunner(
        "busy", FullContextPass(fake, buffer), run_window=run, run_rest=run, metrics=metrics, busy=lambda: busy
    )
    buffer.append(np.zeros(31 * SAMPLE_RATE, dtype=np.int16))
    runner.poke()
    assert not await runner.finish() and fake.calls == [], "nothing read while the box is short of CPU"
    live = [Segment(start=1.0, end=2.0, text="committed live")]
    assert runner.transcript(live) == live
    assert metrics.asr_full_context_skipped._value.get() == 1
    busy = False
    assert await runner.finish() and [kind for kind, _, _ in fake.calls] == ["window", "window"]


async def test_the_process_reads_one_window_at_a_time_and_a_stop_takes_a_waiting_one_into_its_rest() -> None:
    """Meetings that started together come due together: their windows are read one after another, and
    a meeting that stops while its window waits its turn reads that audio with its rest, at once."""
    fake = FakeRecognizer(scripted_words("one_voice"))
    readers = FullContextReaders(fake, Metrics(), enabled=True, busy=lambda: False)
    release = asyncio.Event()
    reading: list[str] = []

    async def run_window(fn, *args):  # type: ignore[no-untyped-def]
        reading.append("window")
        await release.wait()
        return fn(*args)

    async def run_rest(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    buffers = [SecureAudioBuffer(AudioCipher(None)) for _ in range(2)]
    runners = [readers.runner(str(n), b, None, run_window=run_window, run_rest=run_rest) for n, b in enumerate(buffers)]
    for buffer, runner in zip(buffers, runners, strict=True):
        buffer.append(np.zeros(31 * SAMPLE_RATE, dtype=np.int16))
        runner.poke()
    for _ in range(5):
        await asyncio.sleep(0)
    assert reading == ["window"], "the second meeting's window waits for the first"
    assert await asyncio.wait_for(runners[1].finish(), 2.0), "its stop did not wait for the other's window"
    assert [kind for kind, _, _ in fake.calls] == ["window", "window"], "the waiting window read once, with the rest"
    release.set()
    assert await runners[0].finish()
    assert len(fake.calls) == 4 and reading == ["window"]


async def test_a_pass_that_failed_while_recording_says_at_stop_that_it_did_not_read_the_rest() -> None:
    """A window failed while recording: the pass stops there, and at stop the runner says the rest is
    unread, so the live tail is committed by a careful pass, not from words nobody read."""
    fake = FakeRecognizer(scripted_words("one_voice"), fail_window=True)
    buffer = SecureAudioBuffer(AudioCipher(None))

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    runner = FullContextRunner("failed", FullContextPass(fake, buffer), run_window=run, run_rest=run, metrics=Metrics())
    buffer.append(np.zeros(31 * SAMPLE_RATE, dtype=np.int16))
    runner.poke()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [kind for kind, _, _ in fake.calls] == ["window"], "the window was read, and failed"
    fake.fail_window = False
    assert not await runner.finish()


async def test_a_failing_window_does_not_hold_up_another_meeting_s() -> None:
    """One meeting's window fails while the other's waits its turn: the turn passes on, and the other
    meeting's window is read."""
    failing = FakeRecognizer(scripted_words("one_voice"), fail_window=True)
    working = FakeRecognizer(scripted_words("one_voice"))
    shared = asyncio.Semaphore(1)

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        return fn(*args)

    runners = []
    for name, fake in (("failing", failing), ("working", working)):
        buffer = SecureAudioBuffer(AudioCipher(None))
        buffer.append(np.zeros(31 * SAMPLE_RATE, dtype=np.int16))
        runner = FullContextRunner(
            name, FullContextPass(fake, buffer), run_window=run, run_rest=run, metrics=Metrics(), windows=shared
        )
        runner.poke()
        runners.append(runner)
    for _ in range(10):
        await asyncio.sleep(0)
    assert [kind for kind, _, _ in failing.calls] == ["window"] and [kind for kind, _, _ in working.calls] == ["window"]
    assert not shared.locked()
    assert not await runners[0].finish() and await runners[1].finish()
