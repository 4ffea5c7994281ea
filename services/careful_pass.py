"""The careful pass over one commit window: what Whisper skipped decoded again, a forced cut heard whole.

The live transcriber (`live_transcriber.py`) decides when a window [start, end) of a session's
audio is committed; this decides what it says. Two faults of Whisper's are mended here:

- it sometimes skips the opening of a window that starts mid-phrase, and stops early after a
  change of speaker or at a sentence it judges unfinished, returning nothing for that audio. The
  skipped opening is decoded again on its own (prompted with the committed text), and so is the
  skipped end when the whole window is being committed (unprompted, as faster-whisper's own next
  window would be); a long utterance's open tail stays open instead;
- a window that starts where a forced cut fell (mid-phrase) makes it skip its first words: it is
  heard with 1.5 s of the committed audio before it, and the words before the cut are dropped
  (the committed head's last word too, when it is heard again across the cut).

Blocking model work: call it on the inference executor.
"""

from __future__ import annotations

from collections.abc import Callable

from services.asr_counters import recognition_context
from services.asr_service import SpeechRecognizer
from services.audio_buffer import SecureAudioBuffer
from services.transcript_words import segment_of, word_key
from services.types import SAMPLE_RATE, Segment

_CUT_CONTEXT = int(1.5 * SAMPLE_RATE)

SkippedSpeech = Callable[[int, int], bool]
"""Whether the VAD heard speech worth decoding in [start, end) samples."""


class CarefulPass:
    """Careful segments of windows of one session's audio."""

    def __init__(self, recognizer: SpeechRecognizer, buffer: SecureAudioBuffer, skipped: SkippedSpeech) -> None:
        self._recognizer = recognizer
        self._buffer = buffer
        self._skipped = skipped

    def segments(
        self, start: int, end: int, *, prompt: str, after_cut: list[Segment] | None = None, whole: bool = True
    ) -> list[Segment]:
        """The careful segments of [start, end), conditioned on `prompt` (the committed tail).

        `after_cut`: when `start` is where a forced cut fell, the last committed segment (if any);
        None otherwise. `whole`: the whole window is being committed, so a skipped end is decoded too.
        """
        if after_cut is not None:
            last_words = after_cut[-1].words if after_cut else []
            segments = self._after_cut(start, end, word_key(last_words[-1].text) if last_words else "")
        else:
            segments = self._read(start, end, prompt)
        if not segments:
            return segments
        opening = int(segments[0].start * SAMPLE_RATE)
        if self._skipped(start, opening):
            with recognition_context(purpose="opening"):
                segments = self._read(start, opening, prompt) + segments
        covered = int(segments[-1].end * SAMPLE_RATE)
        if whole and self._skipped(covered, end):
            with recognition_context(purpose="tail"):  # unprompted, as faster-whisper's own next window
                segments += self._read(covered, end, "")
        return segments

    def _after_cut(self, start: int, end: int, cut_word: str) -> list[Segment]:
        with recognition_context(purpose="cut_context"):
            segments = self._read(max(0, start - _CUT_CONTEXT), end, "")
        cut = start / SAMPLE_RATE
        kept: list[Segment] = []
        for segment in segments:
            words = [word for word in segment.words if word.end > cut]
            if not kept and words and words[0].start < cut and word_key(words[0].text) == cut_word:
                words = words[1:]  # the committed head's last word, heard again across the cut
            if words:
                kept.append(segment_of(words))
        return kept

    def _read(self, start: int, end: int, prompt: str) -> list[Segment]:
        return self._recognizer.transcribe(self._buffer.read(start, end), start / SAMPLE_RATE, prompt)
