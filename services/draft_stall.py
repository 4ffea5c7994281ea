"""Where a stalled draft of the open utterance is split (see `live_transcriber.py`).

Re-decoding a long utterance, the greedy draft sometimes ends early, most often at a change of
speaker, and keeps ending there while people talk on: the words after it showed only when a careful
pass committed them, 2-4 s later on the AMI excerpts. When a draft of at least `STALL_SECONDS`
repeats itself while speech goes on, it stays on screen as it is and the words after it are drafted
on their own, from the quietest moment (under the VAD threshold) between shortly before its text
first came and the last `TAIL_SECONDS`. Pooled over four start offsets of each AMI excerpt: word lag
p50 / p90 dev00 0.23 / 3.64 -> 0.18 / 2.93 s, dev01 0.48 / 3.23 -> 0.36 / 3.10, trn00 0.20 / 1.46
-> 0.10 / 1.36, trn07 0.38 / 1.28 -> 0.38 / 1.18; scripted meetings unchanged; CPU +0-7 %.
"""

from __future__ import annotations

from services.types import SAMPLE_RATE
from services.vad import StreamingVAD

STALL_SECONDS = 2.5
TAIL_SECONDS = 0.8  # the split leaves at least this much audio to the next draft
LOOKBACK_SECONDS = 2.0  # a split earlier before the text first came makes the next draft repeat it


class DraftStall:
    """The open utterance's split point for one session's drafts."""

    def __init__(self, vad: StreamingVAD, threshold: float) -> None:
        self._vad = vad
        self._threshold = threshold
        self.split_at = 0
        """Where the stalled draft was split: the utterance's next draft starts there (0: not split)."""
        self._text_since = 0  # end of the draft window where the shown draft's text first came

    def drafted(self, end: int, *, changed: bool) -> None:
        """A draft of the window ending at sample `end` was shown; `changed`: its text is new."""
        if changed:
            self._text_since = end

    def split(self, start: int, now: int) -> bool:
        """Split the draft of [start, now), which repeated itself, if it is long enough and has a pause."""
        if now - start < STALL_SECONDS * SAMPLE_RATE:
            return False
        since = max(start + SAMPLE_RATE, self._text_since - int(LOOKBACK_SECONDS * SAMPLE_RATE))
        dip = self._vad.quietest(since, now - int(TAIL_SECONDS * SAMPLE_RATE), below=self._threshold)
        if dip is None:
            return False
        self.split_at = dip
        return True
