"""Incremental drafts: lock the opening of the open utterance once two drafts agree on it.

Every draft used to re-decode the whole open utterance, so its cost grew with the utterance
(encoder and, mostly, greedy decoding: ~3-6 ms per token per core). As in whisper_streaming's
LocalAgreement, the words on which the last two drafts agree, except the last `HOLD` (still
moving), are locked: later drafts decode only the audio after the last locked word, with the
locked words as the prompt (read in one decoder pass), and show them in front of what they hear.

Why the audio is dropped rather than the words forced as a decoder prefix: CTranslate2's
`generate` runs forced prefix tokens after `<|notimestamps|>` one decoder step each, which costs
what decoding them does; the prompt before `<|startoftranscript|>` is read in one pass. Where a
locked word ends comes from cross-attention alignment of the agreed words (one decoder pass), made
only when there is something to lock.

A wrong lock cannot last: every `VERIFY_EVERY`-th draft of a locked utterance decodes it whole
again, and a lock whose words that draft does not repeat is dropped. Locks never outlive their
utterance, and the careful pass decides every committed word whatever the drafts said.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from services.asr_service import Draft, IncrementalDrafts
from services.transcript_words import word_key
from services.types import SAMPLE_RATE, Word

HOLD = 1
"""Agreed words left unlocked at the end (the last agreed word may still change)."""
MIN_LOCK = 1
"""Fewer agreed words are not worth an alignment pass."""
VERIFY_EVERY = 6
"""Every this many drafts of a locked utterance, one decodes it whole and checks the lock."""
MARGIN = 0.5
"""A lock ends at least this many seconds before the end of the audio drafted."""
EARLY = 0.15
"""The next draft's audio starts this much before the aligned word boundary: alignment times are
rough, and a clipped first word is misheard ("send" as "end"), a repeated last word is dropped."""


class DraftAgreement:
    """The locked opening of one open utterance. Reset it when the utterance ends or is cut."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, start: int) -> None:
        self.start = start  # first sample the next incremental draft decodes
        self.locked: list[str] = []
        self._previous: list[str] = []  # the last draft's words after `start`
        self._since_full = 0

    @property
    def full_due(self) -> bool:
        """Whether the next draft decodes the whole utterance (nothing locked, or a check is due)."""
        return not self.locked or self._since_full + 1 >= VERIFY_EVERY

    def draft(
        self, recognizer: IncrementalDrafts, read: Callable[[int, int], np.ndarray], start: int, end: int, prompt: str
    ) -> str:
        """Draft the utterance [start, end) (samples; `read` gives its audio); the text to show."""
        window, prompt, previous, after = self.request(start, prompt)
        draft = recognizer.draft_agreed(
            read(window, end), window / SAMPLE_RATE, prompt, previous, MIN_LOCK + HOLD, after
        )
        return self.update(draft, start, end)

    def request(self, utterance_start: int, prompt: str) -> tuple[int, str, list[str], str]:
        """Where the next draft starts, its prompt, the words it is compared with, the word it follows."""
        if self.start < utterance_start:
            self.reset(utterance_start)
        if self.full_due:
            return utterance_start, prompt, [*self.locked, *self._previous], ""
        return self.start, f"{prompt} {' '.join(self.locked)}".strip(), self._previous, self.locked[-1]

    def update(self, draft: Draft, utterance_start: int, end: int) -> str:
        """Take in a draft made as `request` said; the text to show for the utterance."""
        words = draft.text.split()
        if self.full_due:
            kept = len(self.locked)
            verified = [word_key(w) for w in words[:kept]] == [word_key(w) for w in self.locked]
            if not verified:
                self.reset(utterance_start)
                kept = 0
            self._since_full = 0
            self._previous = words[kept:]
            self._extend(draft.agreed[kept:], words[kept:], end)
            return draft.text
        self._since_full += 1
        self._previous = words
        self._extend(draft.agreed, words, end)
        return " ".join([*self.locked, *self._previous])

    def _extend(self, agreed: list[Word], words: list[str], end: int) -> None:
        """Lock all but the last `HOLD` agreed words, up to `MARGIN` before `end`."""
        count = len(agreed) - HOLD
        while count >= MIN_LOCK and agreed[count].start > end / SAMPLE_RATE - MARGIN:
            count -= 1
        if count < MIN_LOCK:
            return
        cut = max(agreed[count - 1].start, (agreed[count - 1].end + agreed[count].start) / 2 - EARLY)
        self.start = max(self.start, int(cut * SAMPLE_RATE))
        self.locked += words[:count]
        self._previous = words[count:]
