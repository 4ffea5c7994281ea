"""The live transcription policy of one session: when to draft, when to commit, what to send.

The open window runs from the end of the last committed text to the newest audio. Each
`advance()`:

- scores new audio with the streaming VAD; a window with no speech is dropped, so silence is
  never decoded (and never hallucinated into "Thank you.");
- when the speaker has paused for `min_silence`, commits the utterance with the careful path
  (beam search, 30 s context, word times) and the committed tail as the prompt;
- when the utterance runs past `max_utterance` without a pause, commits the careful words up to
  the widest word gap that is at least `holdback` seconds old, and keeps the rest open;
- otherwise drafts the open utterance with the cheap path and sends it as tentative text.

Committed text is never revised, so it never flickers; the tentative tail is replaced as it
improves. All methods block (model work): call them on the inference executor, one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.asr_service import SpeechRecognizer
from services.audio_buffer import SecureAudioBuffer
from services.types import SAMPLE_RATE, Segment, Word
from services.vad import FRAME_SAMPLES, StreamingVAD

_PRE_ROLL = int(0.2 * SAMPLE_RATE)
_POST_ROLL = int(0.3 * SAMPLE_RATE)
_HOLDBACK_SECONDS = 1.5
_PROMPT_CHARS = 200
_HYSTERESIS = 0.15
_MIN_DRAFT_SPEECH = int(0.3 * SAMPLE_RATE)  # shorter openings mostly decode to noise words


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    """One `partial_transcript` message: the current text of segment `segment_id`."""

    segment_id: int
    segment: Segment
    committed: bool


class LiveTranscriber:
    """Streaming ASR state of one session over its `SecureAudioBuffer`."""

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        buffer: SecureAudioBuffer,
        *,
        max_utterance_seconds: float,
        min_silence_seconds: float,
        vad_threshold: float,
    ) -> None:
        self._recognizer = recognizer
        self._buffer = buffer
        self._vad = StreamingVAD()
        self._max_utterance = int(max_utterance_seconds * SAMPLE_RATE)
        self._min_silence = int(min_silence_seconds * SAMPLE_RATE)
        self._threshold = vad_threshold
        self._window_start = 0
        self._vad_fed = 0
        self._segment_id = 0
        self._draft_open = False
        self._drafted_until = 0
        self.committed: list[Segment] = []
        self.processed_samples = 0
        """Samples of audio the last call looked at: the client's lag is what came after."""

    def advance(self) -> list[TranscriptUpdate]:
        """Look at the audio received so far; draft or commit the open utterance."""
        return self._step(final=False)

    def finish(self) -> list[TranscriptUpdate]:
        """Commit whatever is still open: the recording is over."""
        return self._step(final=True)

    def _step(self, *, final: bool) -> list[TranscriptUpdate]:
        now = self._buffer.samples
        self._vad.feed(self._buffer.read(self._vad_fed, now))
        self._vad_fed = now
        self.processed_samples = now
        vad_end = self._vad.frames * FRAME_SAMPLES if not final else now
        speech = self._speech_span(vad_end)
        if speech is None:
            if final:
                return self._close_draft()
            self._window_start = max(self._window_start, vad_end - _PRE_ROLL)
            return []
        first, last = speech
        start = max(self._window_start, first - _PRE_ROLL)
        if final or vad_end - last >= self._min_silence:
            return self._commit_all(start, min(now, last + _POST_ROLL))
        if now - start >= self._max_utterance:
            return self._commit_head(start, now)
        if last <= self._drafted_until or last - first < _MIN_DRAFT_SPEECH:
            return []  # nothing new was said since the last draft: it still stands
        self._drafted_until = last
        return self._draft(start, now)

    def _speech_span(self, vad_end: int) -> tuple[int, int] | None:
        """First and last speech sample of the open window, by the VAD, or None."""
        first_frame = self._window_start // FRAME_SAMPLES
        probabilities = np.asarray(self._vad.probabilities[first_frame:])
        onsets = np.flatnonzero(probabilities >= self._threshold)
        if onsets.size == 0:
            return None
        continuing = np.flatnonzero(probabilities >= self._threshold - _HYSTERESIS)
        first = (first_frame + int(onsets[0])) * FRAME_SAMPLES
        last = min(vad_end, (first_frame + int(continuing[-1]) + 1) * FRAME_SAMPLES)
        return first, last

    def _prompt(self) -> str:
        return " ".join(segment.text for segment in self.committed[-4:])[-_PROMPT_CHARS:]

    def _draft(self, start: int, end: int) -> list[TranscriptUpdate]:
        text = self._recognizer.draft(self._buffer.read(start, end), self._prompt())
        if not text and not self._draft_open:
            return []
        self._draft_open = True
        segment = Segment(start=start / SAMPLE_RATE, end=end / SAMPLE_RATE, text=text)
        return [TranscriptUpdate(self._segment_id, segment, committed=False)]

    def _close_draft(self) -> list[TranscriptUpdate]:
        """An open draft turned out to be nothing: commit it empty so clients drop it."""
        if not self._draft_open:
            return []
        update = TranscriptUpdate(self._segment_id, Segment(start=0.0, end=0.0, text=""), committed=True)
        self._draft_open = False
        self._segment_id += 1
        return [update]

    def _commit_all(self, start: int, end: int) -> list[TranscriptUpdate]:
        segments = self._recognizer.transcribe(self._buffer.read(start, end), start / SAMPLE_RATE, self._prompt())
        self._window_start = end
        if not segments:
            return self._close_draft()
        return self._emit_committed(segments)

    def _commit_head(self, start: int, end: int) -> list[TranscriptUpdate]:
        """A long utterance: commit its settled head, keep the recent tail open."""
        segments = self._recognizer.transcribe(self._buffer.read(start, end), start / SAMPLE_RATE, self._prompt())
        words = [word for segment in segments for word in segment.words]
        cut = _cut_index(words, end / SAMPLE_RATE - _HOLDBACK_SECONDS)
        if cut is None:
            self._window_start = end
            return self._emit_committed(segments) if segments else self._close_draft()
        head, tail = words[: cut + 1], words[cut + 1 :]
        boundary = (head[-1].end + tail[0].start) / 2 if tail else head[-1].end
        self._window_start = max(start, min(end, int(boundary * SAMPLE_RATE)))
        updates = self._emit_committed([_segment_of(head)])
        if tail:
            self._draft_open = True
            updates.append(TranscriptUpdate(self._segment_id, _segment_of(tail), committed=False))
        return updates

    def _emit_committed(self, segments: list[Segment]) -> list[TranscriptUpdate]:
        updates = []
        for segment in segments:
            self.committed.append(segment)
            updates.append(TranscriptUpdate(self._segment_id, segment, committed=True))
            self._segment_id += 1
        self._draft_open = False
        return updates


def _cut_index(words: list[Word], latest_end: float) -> int | None:
    """Index of the word after which to cut: the widest gap among words ending by `latest_end`."""
    candidates = [i for i, word in enumerate(words[:-1]) if word.end <= latest_end]
    if not candidates:
        return None
    return max(candidates, key=lambda i: (round(words[i + 1].start - words[i].end, 2), i))


def _segment_of(words: list[Word]) -> Segment:
    return Segment(
        start=words[0].start, end=words[-1].end, text="".join(w.text for w in words).strip(), words=list(words)
    )
