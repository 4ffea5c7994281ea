"""Where a stalled draft is split: in the pause after its words, never before its text first came."""

from __future__ import annotations

import numpy as np

from services.draft_stall import DraftStall
from services.vad import StreamingVAD
from tests.support import load_wav

SR = 16000


def _vad_of_two_turns() -> StreamingVAD:
    pcm, _ = load_wav("meeting_two_voices.wav")  # Alice 0.5-5.11 s, Bob 5.91-11.05 s, Alice 11.85-15.88 s
    vad = StreamingVAD()
    vad.feed(pcm[: 16 * SR].astype(np.float32) / 32768.0)
    return vad


def test_a_stalled_draft_is_split_in_the_pause_after_its_text() -> None:
    stall = DraftStall(_vad_of_two_turns(), threshold=0.35)
    stall.drafted(int(5.4 * SR), changed=True)  # "Good morning everyone ... website" first came here
    stall.drafted(int(6.6 * SR), changed=False)  # and again, while Bob talks on
    assert stall.split(int(0.3 * SR), int(8.0 * SR))
    assert 5.11 <= stall.split_at / SR <= 5.91, stall.split_at / SR


def test_no_split_before_the_text_came_nor_in_a_short_draft_nor_without_a_pause() -> None:
    vad = _vad_of_two_turns()
    late = DraftStall(vad, threshold=0.35)
    late.drafted(int(14.0 * SR), changed=True)  # the repeated text came late in Alice's second turn
    # not in the pauses between the turns (5.1-5.9 s, 11.05-11.85 s), whose words it already shows
    late.split(int(0.3 * SR), int(15.5 * SR))
    assert late.split_at == 0 or late.split_at >= 12 * SR, late.split_at / SR
    short = DraftStall(vad, threshold=0.35)
    assert not short.split(int(4.0 * SR), int(6.0 * SR))  # under STALL_SECONDS
    speech_only = DraftStall(vad, threshold=0.0)  # nothing scores under 0: no pause to split at
    assert not speech_only.split(int(0.3 * SR), int(8.0 * SR)) and speech_only.split_at == 0
