"""The live transcription of one session: draft, freeze and commit as the audio streams in.

The policy it follows (two windows, careful passes, forced cuts) is described in
`live_policy.py`; what the client was shown (segment ids, drafts, the committed transcript) is kept
in `live_segments.py`. The streaming VAD gates everything: silence is never decoded. All methods
block (model work): call them on the inference executor, one at a time.
"""

from __future__ import annotations

from observability import Metrics
from services.asr_counters import recognition_context
from services.asr_service import SpeechRecognizer
from services.audio_buffer import SecureAudioBuffer
from services.careful_pass import CarefulPass
from services.draft_stall import DraftStall
from services.live_policy import CommitJob, DraftJob, LivePolicy
from services.live_segments import LiveSegments
from services.transcript_words import segment_of, split_head, word_key, words_between
from services.types import SAMPLE_RATE, DraftRequest, Segment, TranscriptUpdate
from services.vad import FRAME_SAMPLES, SpeechMap, StreamingVAD

_PRE_ROLL = int(0.2 * SAMPLE_RATE)
_POST_ROLL = int(0.3 * SAMPLE_RATE)
_HOLDBACK_SECONDS = 1.5
_HYSTERESIS = 4 / 7  # speech goes on while the probability stays above this share of the threshold
_MIN_DRAFT_SPEECH = int(0.3 * SAMPLE_RATE)  # shorter openings mostly decode to noise words
_DRAFT_SPACING = 0.1  # a draft re-decodes its utterance: re-draft after new audio of this share of it
_STABLE_BACKOFF = int(0.4 * SAMPLE_RATE)  # a draft like the one before pushes the next back this far
_MAX_STABLE = 2
_MAX_BACKLOG_DRAFT = 25 * SAMPLE_RATE  # a draft decodes one 30 s window


class LiveTranscriber:
    """Streaming ASR state of one session over its `SecureAudioBuffer`."""

    def __init__(
        self, recognizer: SpeechRecognizer, buffer: SecureAudioBuffer, policy: LivePolicy,
        metrics: Metrics | None = None,
    ) -> None:
        self._recognizer = recognizer
        self._metrics = metrics
        self._buffer = buffer
        self._vad = StreamingVAD()
        self._careful_pass = CarefulPass(recognizer, buffer, self._skipped_speech)
        self._threshold = policy.vad_threshold
        self._min_silence = int(policy.min_silence * SAMPLE_RATE)
        self._commit_silence = int(policy.commit_silence * SAMPLE_RATE)
        self._commit_window = int(policy.commit_window * SAMPLE_RATE)
        self._max_utterance = int(policy.max_utterance * SAMPLE_RATE)
        self._commit_start = 0  # first sample not yet committed
        self._draft_start = 0  # first sample of the utterance being drafted
        self._vad_fed = 0
        self._segments = LiveSegments()
        self._drafted_until = 0
        self._drafted_at = 0  # buffer length at the last draft
        self._stable = 0  # drafts in a row of the open utterance that repeated the previous one
        self._head_retry_at = 0
        self._stall = DraftStall(self._vad, self._threshold)
        self._cut_at = -1  # where the last forced cut fell (a window starting there starts mid-phrase)
        self._staged: CommitJob | None = None  # scheduled by `advance`, not yet taken
        self._draft_due: DraftJob | None = None  # staged by `step`, not yet taken
        self._in_flight: CommitJob | None = None  # taken, not yet applied
        self._read: list[Segment] | None = None  # the whole recording read at `finish` (the full-context pass)
        self.processed_samples = 0
        """Samples of audio the last call looked at: the client's lag is what came after."""

    def resume_after(self, committed: list[Segment], next_id: int) -> None:
        """Start after a transcript another worker committed (a takeover), before any `advance`: the
        audio before its last word only feeds the VAD, and segment ids go on from `next_id`."""
        self._segments.resume_after(committed, next_id)
        if committed:
            until = int(max(segment.end for segment in committed) * SAMPLE_RATE)
            self._commit_start = self._draft_start = self._drafted_until = until
            self._cut_at = until  # a window from here may start mid-word: heard with context, no word twice

    def draft_backlog(self) -> list[TranscriptUpdate]:
        """A takeover's first step, the stored audio in: one draft of the speech after the committed text,
        shown within a draft's time, not after a careful pass over it all (which the next `advance`
        stages, to commit in this draft's place)."""
        self.processed_samples = now = self._buffer.samples
        self.hear_to(now)
        span = self._speech_span(self._commit_start, self._vad.frames * FRAME_SAMPLES)
        if span is None or span[1] - span[0] < _MIN_DRAFT_SPEECH:
            return []
        start = max(self._commit_start, span[0] - _PRE_ROLL)
        self._drafted_until, self._drafted_at = span[1], now
        end = min(now, span[1] + _POST_ROLL, start + _MAX_BACKLOG_DRAFT)
        job = DraftJob(self._segments.open_id, start, end, None, self._request(start, end))
        return self._show_draft(job, self.decode_draft(job.request))

    def advance(self, *, draft: bool = True) -> list[TranscriptUpdate]:
        """`step`, with the draft it found due decoded here (no batching): for one-session callers."""
        updates = self.step(draft=draft)
        if (job := self.take_draft()) is not None:
            updates += self.apply_draft(job, self.decode_draft(job.request))
        return updates

    def step(self, *, draft: bool = True) -> list[TranscriptUpdate]:
        """Look at the audio received so far: freeze; stage (not run) a careful pass and a draft that are
        due (`take_draft`: the caller decodes it, perhaps with other sessions', then `apply_draft`).
        `draft=False` (drafts thinned under load) stages no draft: careful passes keep time."""
        return self._step(final=False, draft=draft)

    def decode_draft(self, request: DraftRequest) -> str:
        """The draft text of a staged draft's request (blocking model work)."""
        return self._recognizer.draft(request.audio, request.offset, request.prompt)

    def take_draft(self) -> DraftJob | None:
        """The draft `step` staged, if any."""
        job, self._draft_due = self._draft_due, None
        return job

    def apply_draft(self, job: DraftJob, text: str) -> list[TranscriptUpdate]:
        """Show `text` as the draft of `job`'s utterance, unless that utterance was frozen or committed
        since `step` staged it (the draft came too late: dropped)."""
        if job.segment_id != self._segments.open_id or self._draft_start > job.start:
            return []
        return self._show_draft(job, text)

    def take_commit(self) -> CommitJob | None:
        """The careful pass `step` staged, if any: `transcribe_commit` it (beside the drafts), then `apply_commit`.
        No other pass is staged until then."""
        job, self._staged = self._staged, None
        if job is not None:
            self._in_flight = job
        return job

    def transcribe_commit(self, job: CommitJob) -> list[Segment]:
        """The careful segments of `job` (blocking model work), or the words of its audio read at `finish`."""
        if self._read is not None:
            return words_between(self._read, job.start / SAMPLE_RATE, job.end / SAMPLE_RATE)
        return self._careful(job.start, job.end)

    def apply_commit(self, job: CommitJob, segments: list[Segment] | None) -> list[TranscriptUpdate]:
        """Commit `job`'s segments in place of its drafts; None (the pass failed) commits the drafts."""
        self._in_flight = None
        return self._settle(job, segments)

    def finish(self, read: list[Segment] | None = None) -> list[TranscriptUpdate]:
        """Commit whatever is still open: the recording is over. Apply a taken pass first. `read`: the whole
        recording read already (the full-context pass): the open tail is committed from its words, no model call."""
        if self._in_flight is not None:
            raise RuntimeError("finish() while a careful pass is in flight: apply it first")
        self._read = read
        updates = []
        with recognition_context(path="stop"):
            if (job := self.take_commit()) is not None:
                updates += self.apply_commit(job, self.transcribe_commit(job))
            return updates + self._step(final=True)

    def seal(self, at: int) -> list[TranscriptUpdate]:
        """Commit what is open before sample `at`, as at a pause: the client left there. What comes next is heard
        as after a forced cut (the rest may come mid-phrase) unless `hear_afresh`. Not while a pass is pending."""
        if self._staged is not None or self._in_flight is not None or at <= self._commit_start:
            return []
        updates = self._step(final=True, until=at)
        self._cut_at = self._commit_start
        return updates

    def hear_afresh(self) -> list[TranscriptUpdate]:
        """The audio after the last `seal` is a new capture (a reloaded page): heard on its own, not with the
        second before the seal, whose last syllable Whisper reads into it ("new" -> "one. Good morning")."""
        self._cut_at = -1
        return []  # no updates: run like the other steps

    def hear_to(self, end: int | None = None) -> list[TranscriptUpdate]:
        """Score the audio up to sample `end` (all received) with the VAD, a few ms: `speech` answers for it then."""
        end = self._buffer.samples if end is None else end
        self._vad.feed(self._buffer.read(self._vad_fed, end))
        self._vad_fed = max(self._vad_fed, end)
        return []  # no updates: run like the other steps

    @property
    def committed(self) -> list[Segment]:
        """The committed transcript so far, in order."""
        return self._segments.committed

    @property
    def speech(self) -> SpeechMap:
        """What the VAD heard, for readers on other threads (the full-context pass)."""
        return SpeechMap(self._vad, self._threshold, self._threshold * _HYSTERESIS)

    def _step(self, *, final: bool, draft: bool = True, until: int | None = None) -> list[TranscriptUpdate]:
        now = self._buffer.samples if until is None else min(until, self._buffer.samples)
        self.hear_to(now)
        self.processed_samples = now
        vad_end = now if final else self._vad.frames * FRAME_SAMPLES
        busy = self._staged is not None or self._in_flight is not None
        pending = self._speech_span(self._commit_start, vad_end)
        if pending is None:
            if not final:
                self._commit_start = self._draft_start = max(self._commit_start, vad_end - _PRE_ROLL)
            if self._segments.pending and not busy:  # drafts of what the VAD no longer calls speech
                return self._settle(self._stage(self._commit_start, self._commit_start), [])
            return []
        first, last = pending
        pause = vad_end - last
        start, end = max(self._commit_start, first - _PRE_ROLL), min(now, last + _POST_ROLL)
        due = (
            final
            or pause >= self._commit_silence
            or (pause >= self._min_silence and last - first >= self._commit_window)
        )
        if due and final:
            return self._settle(job := self._stage(start, end), self.transcribe_commit(job))
        if due and not busy:
            self._staged = self._stage(start, end)
            return []
        utterance = self._speech_span(self._draft_start, vad_end)
        if utterance is None:
            return []
        if pause >= self._min_silence:
            self._freeze_draft(end)
            return []
        draft_start = max(self._draft_start, utterance[0] - _PRE_ROLL)
        if self._stable and self._stall.split(max(draft_start, self._stall.split_at), now):
            self._segments.close()  # the stalled draft stays on screen as it is
            self._stable = 0
        if now - draft_start >= self._max_utterance and now >= self._head_retry_at and not busy:
            return self._commit_head(start, now, not_before=draft_start)
        if last <= self._drafted_until or last - utterance[0] < _MIN_DRAFT_SPEECH:
            return []  # nothing new was said since the last draft: it still stands
        draft_from = max(draft_start, self._stall.split_at)
        if not draft or now - self._drafted_at < (now - draft_from) * _DRAFT_SPACING + self._stable * _STABLE_BACKOFF:
            return []
        self._drafted_until, self._drafted_at = last, now
        onset = utterance[0] if draft_from == draft_start else None  # a split's draft is no utterance onset
        self._draft_due = DraftJob(self._segments.open_id, draft_from, now, onset, self._request(draft_from, now))
        return []

    def _speech_span(self, since: int, vad_end: int) -> tuple[int, int] | None:
        """First and last speech sample after `since`, by the VAD, or None."""
        return self._vad.speech_span(since, vad_end, self._threshold, self._threshold * _HYSTERESIS)

    def _request(self, start: int, end: int) -> DraftRequest:
        return DraftRequest(self._buffer.read(start, end), start / SAMPLE_RATE, self._segments.prompt())

    def _show_draft(self, job: DraftJob, text: str) -> list[TranscriptUpdate]:
        if not text and self._segments.open_id is None:
            return []
        if self._segments.open_id is None:
            if self._metrics is not None and job.onset is not None:  # how late the first words show, in audio time
                self._metrics.vad_onset_delay.observe((job.end - job.onset) / SAMPLE_RATE)
            # a draft from where a stalled one was split off is committed with it, as one utterance
            self._segments.open(job.start / SAMPLE_RATE, continuing=job.start == self._stall.split_at)
        segment = Segment(start=job.start / SAMPLE_RATE, end=job.end / SAMPLE_RATE, text=text)
        update, previous = self._segments.draft(segment)
        same = previous is not None and word_key(previous.text) == word_key(text)
        self._stable = min(_MAX_STABLE, self._stable + 1) if same else 0
        self._stall.drafted(job.end, changed=not same)
        return [update]

    def _freeze_draft(self, end: int) -> None:
        """The utterance ended: keep its draft on screen and draft the next one separately."""
        self._segments.close()
        self._stable = 0
        self._draft_start = max(self._draft_start, end)

    def _careful(self, start: int, end: int, *, whole: bool = True) -> list[Segment]:
        after_cut = self.committed[-1:] if start == self._cut_at else None
        return self._careful_pass.segments(start, end, prompt=self._segments.prompt(), after_cut=after_cut, whole=whole)

    def _skipped_speech(self, start: int, end: int) -> bool:
        """Whether [start, end) is at least a second long and the VAD heard speech in it."""
        speech = self._speech_span(start, end)
        return end - start >= SAMPLE_RATE and speech is not None and end - speech[0] >= _MIN_DRAFT_SPEECH

    def _commit_head(self, start: int, end: int, not_before: int) -> list[TranscriptUpdate]:
        """A long utterance: commit its settled head, keep the recent tail open as a draft. Nothing after
        Whisper's last word is committed: it drops a sentence the window cuts off, to be decoded later."""
        segments = self._careful(start, end, whole=False)
        words = [word for segment in segments for word in segment.words]
        split = split_head(words, not_before / SAMPLE_RATE, end / SAMPLE_RATE - _HOLDBACK_SECONDS)
        if split is None:  # nothing settled yet: let more audio come before paying for this again
            self._head_retry_at = end + self._max_utterance // 2
            return []
        head, tail = split
        self._stall.split_at = 0  # the tail's draft starts at the head's end
        boundary = int((head[-1].end + tail[0].start) / 2 * SAMPLE_RATE)
        updates = self._settle(self._stage(start, max(start, min(end, boundary))), [segment_of(head)])
        self._cut_at = self._commit_start
        self._segments.open(tail[0].start)  # the tail stays open, shown as the utterance's draft
        update, _ = self._segments.draft(segment_of(tail))
        return [*updates, update]

    def _stage(self, start: int, end: int) -> CommitJob:
        """Hand the drafts of [start, end) to a commit; drafting goes on after `end`."""
        job = self._segments.hand_over(start, end)
        self._stable = 0
        self._commit_start = self._draft_start = max(self._commit_start, end)
        return job

    def _settle(self, job: CommitJob, segments: list[Segment] | None) -> list[TranscriptUpdate]:
        """Commit `segments` in place of the job's drafts (`LiveSegments.settle`). A pass that returned
        nothing for audio the VAD calls speech commits the drafts shown, as a failed one does: Whisper's
        no-speech guess can sit near its threshold when a window opens on a pause."""
        if segments == [] and job.pending and self._skipped_speech(job.start, job.end):
            segments = None
        return self._segments.settle(job, segments)
