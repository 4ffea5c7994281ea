"""The final transcript, read the way bare faster-whisper reads a whole recording.

The live transcriber commits each utterance from a careful pass over that utterance alone, as
soon as its speaker pauses: the participants get settled text within seconds, but Whisper hears
the last words of such a short window wrong three times as often as words inside it, and the live
text ends up ~20 % further from the reference than bare faster-whisper on the whole file
(`bench/wer_bench.py`). This pass reads the recording as faster-whisper's own loop does, while
it is recorded: a 30 s window of real audio once 30 s have arrived past the last finished
segment, prompted with the tokens of the text before it, the next window starting where the last
finished segment ended. At stop only the rest (under 30 s when the pass keeps up) is left: the
final transcript is this pass's text, as accurate as bare faster-whisper on the same recording.

A reloaded page records a new capture: `cut` ends a window there, so its words are never read
together with the old capture's last syllables. A worker that takes a meeting over starts after
the transcript committed before it (`start_after`). If a window fails, the pass stops there and
the final keeps the live committed text from that point on: nothing said is lost. The session's
VAD keeps it from reading silence: a window it heard no speech in is not read, a segment it heard
nothing around is dropped, and a segment spans the utterance the VAD heard it in.

`FullContextPass.step` and `finish` block (model work); `FullContextRunner` runs them on the
inference executor for the live pump: a window once one is due, behind the live work, and the rest
at stop, whose words then commit the live tail (`LiveTranscriber.finish`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from observability import Metrics
from services.asr_counters import recognition_context
from services.asr_service import SpeechRecognizer
from services.audio_buffer import SecureAudioBuffer
from services.orchestrator import ModelRunner
from services.transcript_words import segment_of
from services.types import SAMPLE_RATE, Segment
from services.vad import SpeechMap

logger = logging.getLogger(__name__)

WINDOW = 30 * SAMPLE_RATE  # Whisper's window: faster-whisper encodes the audio 30 s at a time
_CONTEXT = int(1.5 * SAMPLE_RATE)  # audio before a takeover point a window hears it with
_AROUND = int(0.25 * SAMPLE_RATE)  # a word's time may be off this much from the VAD's speech (its padding too)
_SHORTEST = int(0.3 * SAMPLE_RATE)  # the rest of a window that ended at the recording's end: no word fits
_PROMPT_TOKENS = 223  # faster-whisper prompts with the last half of the decoder's 448 tokens, less one


class FullContextPass:
    """Bare faster-whisper's windows over one session's growing `SecureAudioBuffer`."""

    def __init__(
        self, recognizer: SpeechRecognizer, buffer: SecureAudioBuffer, speech: SpeechMap | None = None
    ) -> None:
        self._recognizer = recognizer
        self._buffer = buffer
        self._speech = speech
        self._seek = 0  # first sample not yet read by a window
        self._prompt: list[int] = []  # tokens of the text since the last prompt reset
        self._cuts: list[int] = []  # where new captures start, in order
        self._failed = False
        self._before: list[Segment] = []  # committed by another worker before this pass began
        self._drop_before = 0  # the end of that text: words before it are not this pass's
        self.segments: list[Segment] = []

    def start_after(self, committed: list[Segment]) -> None:
        """Begin after a transcript committed elsewhere (a takeover): that text stands in the final. The
        first window opens `_CONTEXT` before its last word (Whisper skips the first words of a window
        that starts mid-phrase) and keeps only the words after it."""
        self._before = [segment for segment in committed if segment.text]
        if self._before:
            self._drop_before = int(max(segment.end for segment in self._before) * SAMPLE_RATE)
            self._seek = max(0, self._drop_before - _CONTEXT)

    def cut(self, at: int) -> None:
        """A new capture starts at sample `at` (a reloaded page): no window reads across it."""
        if at > self._seek:
            self._cuts.append(at)

    def due(self) -> bool:
        """Whether a window can be read now: 30 s of audio past the seek, or all of it up to a cut."""
        return not self._failed and self._buffer.samples >= self._window_end()

    def step(self) -> None:
        """Read one due window (blocking). A failure stops the pass here, then re-raises."""
        end = self._window_end()
        self._read(end, last=bool(self._cuts) and end == self._cuts[0])

    def finish(self) -> bool:
        """Read the rest of the recording (blocking), window by window as faster-whisper would: whether
        all of it is read (not after a window failed)."""
        while not self._failed and self._seek < self._buffer.samples:
            end = min(self._window_end(), self._buffer.samples)
            self._read(end, last=end == self._buffer.samples or end in self._cuts)
        return not self._failed

    def transcript(self, committed: list[Segment]) -> list[Segment]:
        """The final segments: this pass's, then the live `committed` ones after the audio it read
        (there are none unless it failed or never finished)."""
        covered = max(self._seek, self._drop_before) / SAMPLE_RATE
        rest = [segment for segment in committed if segment.text and (segment.start + segment.end) / 2 >= covered]
        return [*self._before, *self.segments, *rest]

    def _window_end(self) -> int:
        while self._cuts and self._cuts[0] <= self._seek:
            self._cuts.pop(0)
        end = self._seek + WINDOW
        return min(end, self._cuts[0]) if self._cuts else end

    def _read(self, end: int, *, last: bool) -> None:
        start = self._seek
        if end - start < _SHORTEST or (self._speech is not None and not self._speech.heard(start, end)):
            self._seek = end  # silence, or a syllable's worth: nothing to read (Whisper would invent "Thank you.")
            return
        try:
            with recognition_context(path="full"):
                window = self._recognizer.transcribe_window(
                    self._buffer.read(start, end), start / SAMPLE_RATE, self._prompt, last=last
                )
        except Exception:
            self._failed = True
            raise
        self._prompt = [] if window.reset_prompt else (self._prompt + window.tokens)[-_PROMPT_TOKENS:]
        resume = None if window.resume_at is None else start + int(window.resume_at * SAMPLE_RATE)
        self._seek = resume if resume is not None and start < resume < end else end
        for segment in window.segments:
            self._keep(_before(segment, self._seek / SAMPLE_RATE), start)

    def _keep(self, segment: Segment, window_start: int) -> None:
        """Keep `segment` unless the VAD heard nothing around it (Whisper reads words into faint noise
        and stretches them over seconds: on AMI trn07 ten words over 9 s where one talker spoke 1.5 s),
        spanning the utterance the VAD heard it in (word times from a 30 s window run over pauses or
        stop short of the talk; a reader's speaker turns take an utterance's pauses as speech), never
        over its neighbour."""
        if segment.start < self._drop_before / SAMPLE_RATE:
            words = [word for word in segment.words if (word.start + word.end) / 2 * SAMPLE_RATE >= self._drop_before]
            if not words:
                return
            segment = segment_of(words)
        start, end = segment.start, segment.end  # its words' span
        if self._speech is not None:
            first, last = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
            if not self._speech.heard(first - _AROUND, last + _AROUND):
                return
            first, last = self._speech.fit(first, last, pad=_AROUND)
            start, end = max(first, window_start) / SAMPLE_RATE, min(last, self._seek) / SAMPLE_RATE
        start = max(start, min(segment.start, self._drop_before / SAMPLE_RATE))  # not over the text before a takeover
        if self.segments:
            previous = self.segments[-1]
            previous.end = max(previous.start, min(previous.end, segment.start))
            start = max(start, previous.end)
        segment.start, segment.end = start, max(start, end)
        self.segments.append(segment)


class FullContextRunner:
    """Runs one session's `FullContextPass` beside its live pump; without one (`ASR_FULL_CONTEXT_FINAL=false`)
    the final transcript is the live committed text."""

    def __init__(
        self,
        session_id: str,
        full_pass: FullContextPass | None,
        *,
        run_window: ModelRunner,
        run_rest: ModelRunner,
        metrics: Metrics,
        busy: Callable[[], bool] = lambda: False,
        windows: asyncio.Semaphore | None = None,
    ) -> None:
        self._session_id = session_id
        self._pass = full_pass
        self._run_window = run_window  # behind the live work: nobody waits for a window while recording
        self._run_rest = run_rest
        self._metrics = metrics
        # The box is short of CPU (the load meter thins drafts): this pass is thinned too, its windows wait
        # and the rest is not read at stop (the committed text stands in), so the live meetings and their
        # finals keep their pace: 8 meetings on 2 cores stopping at once waited 7 s for their finals, not 2.4.
        self._busy = busy
        self._windows = windows or asyncio.Semaphore(1)  # shared by the process's runners (`FullContextReaders`)
        self._window: asyncio.Task[None] | None = None
        self._reading = False  # the window task holds `_windows` and reads

    @classmethod
    def off(cls, session_id: str, run_model: ModelRunner, metrics: Metrics) -> FullContextRunner:
        """No full-context pass: the final is the live committed text."""
        return cls(session_id, None, run_window=run_model, run_rest=run_model, metrics=metrics)

    def start_after(self, committed: list[Segment]) -> None:
        if self._pass is not None:
            self._pass.start_after(committed)

    def cut(self, at: int) -> None:
        if self._pass is not None:
            self._pass.cut(at)

    def transcript(self, committed: list[Segment]) -> list[Segment]:
        """The final segments (see `FullContextPass.transcript`)."""
        return committed if self._pass is None else self._pass.transcript(committed)

    def poke(self) -> None:
        """Read a window if one is due and none is being read."""
        if self._pass is None or (self._window is not None and not self._window.done()):
            return
        if self._pass.due() and not self._busy():
            self._window = asyncio.create_task(self._read_window(), name=f"full-{self._session_id}")

    async def finish(self) -> bool:
        """Read the rest of the recording (after the window in flight), unless the box is busy: whether
        all of it was read."""
        if self._pass is None:
            return False
        if self._window is not None:
            if not self._reading:  # still waiting its turn: the rest read now includes its audio
                self._window.cancel()
            await asyncio.wait([self._window])  # the task never raises; a cancelled one is done too
        if self._busy():
            self._metrics.asr_full_context_skipped.inc()
            return False
        try:
            return await self._run_rest(self._pass.finish)  # False: a window failed while recording
        except Exception:  # the final keeps the committed text for what the pass did not read
            logger.exception("full-context pass failed (session %s); the final keeps the live text", self._session_id)
            self._metrics.job_failures.labels(stage="asr_final").inc()
            return False

    def cancel(self) -> None:
        if self._window is not None:
            self._window.cancel()

    async def _read_window(self) -> None:
        assert self._pass is not None
        async with self._windows:
            if self._busy():  # the box filled up while this window waited its turn
                return
            self._reading = True
            try:
                await self._run_window(self._pass.step)
            except Exception:  # never raises: `finish` awaits this task; the pass stopped where it failed
                logger.exception("a full-context window failed (session %s)", self._session_id)
                self._metrics.job_failures.labels(stage="asr_final").inc()
            finally:
                self._reading = False


class FullContextReaders:
    """The process's full-context passes: a runner per session, and one window read at a time across
    all of them. A window is nobody's wait, and meetings that started together come due together: 8
    meetings on 2 cores reading their windows at once pushed the worst live lag p90 from 1.6 to 2.8 s."""

    def __init__(
        self, recognizer: SpeechRecognizer, metrics: Metrics, *, enabled: bool, busy: Callable[[], bool]
    ) -> None:
        self._recognizer = recognizer
        self._metrics = metrics
        self._enabled = enabled  # ASR_FULL_CONTEXT_FINAL
        self._busy = busy
        self._windows = asyncio.Semaphore(1)

    def runner(
        self,
        session_id: str,
        buffer: SecureAudioBuffer,
        speech: SpeechMap | None,
        *,
        run_window: ModelRunner,
        run_rest: ModelRunner,
    ) -> FullContextRunner:
        """One session's runner: its windows at `run_window`, the rest at stop at `run_rest`."""
        if not self._enabled:
            return FullContextRunner.off(session_id, run_rest, self._metrics)
        reading = FullContextPass(self._recognizer, buffer, speech)
        return FullContextRunner(
            session_id, reading, run_window=run_window, run_rest=run_rest, metrics=self._metrics,
            busy=self._busy, windows=self._windows,
        )


def _before(segment: Segment, seek: float) -> Segment:
    """`segment` with no word after `seek`, where the next window starts: Whisper's timestamps put the
    window's text before it, but the word alignment can stretch a far-field word across the rest (on
    AMI a segment ran 9 s into the next window's, which read that audio again as other words)."""
    if segment.end <= seek:
        return segment
    words = [replace(word, start=min(word.start, seek), end=min(word.end, seek)) for word in segment.words]
    return Segment(min(segment.start, seek), seek, segment.text, segment.speaker, words)
