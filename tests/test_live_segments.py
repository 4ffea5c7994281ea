"""The live segments' bookkeeping: ids in order, drafts replaced id for id by the commit that covers them."""

from __future__ import annotations

import pytest

from services.live_segments import LiveSegments
from services.transcript_words import segment_of
from services.types import Segment, Word


def _words(*timed: tuple[float, float, str]) -> list[Segment]:
    return [segment_of([Word(start, end, f" {text}") for start, end, text in timed])]


def test_ids_grow_and_each_draft_replaces_the_last_of_its_utterance() -> None:
    segments = LiveSegments()
    first = segments.open(0.0)
    update, previous = segments.draft(Segment(0.0, 1.0, "hello"))
    assert (update.segment_id, update.committed, previous) == (first, False, None)
    update, previous = segments.draft(Segment(0.0, 1.5, "hello there"))
    assert update.segment_id == first and previous is not None and previous.text == "hello"
    segments.close()
    assert segments.open(2.0) == first + 1 and segments.pending


def test_a_commit_deals_its_words_back_to_the_drafts_by_time() -> None:
    segments = LiveSegments()
    segments.open(0.0)
    segments.draft(Segment(0.0, 1.0, "good morning"))
    segments.close()
    segments.open(2.0)
    segments.draft(Segment(2.0, 3.0, "every one"))
    job = segments.hand_over(0, 48_000)
    assert not segments.pending and segments.open_id is None
    updates = segments.settle(job, _words((0.1, 0.5, "Good"), (0.5, 0.9, "morning."), (2.1, 2.8, "Everyone.")))
    assert [(u.segment_id, u.committed, u.segment.text) for u in updates] == [
        (0, True, "Good morning."),
        (1, True, "Everyone."),
    ]
    assert [segment.text for segment in segments.committed] == ["Good morning.", "Everyone."]


def test_a_continuing_draft_is_committed_with_the_one_it_split_from() -> None:
    segments = LiveSegments()
    segments.open(0.0)
    segments.draft(Segment(0.0, 4.0, "so the plan"))
    segments.close()
    segments.open(4.0, continuing=True)  # the stalled draft was split off at 4 s
    segments.draft(Segment(4.0, 6.0, "is to ship"))
    updates = segments.settle(segments.hand_over(0, 96_000), _words((0.2, 1.0, "So"), (4.5, 5.0, "ship.")))
    assert [(u.segment_id, u.segment.text) for u in updates] == [(0, ""), (1, "So ship.")]  # clients drop the empty one


def test_a_failed_pass_commits_the_drafts_shown() -> None:
    segments = LiveSegments()
    segments.open(0.0)
    segments.draft(Segment(0.0, 1.0, "hello"))
    updates = segments.settle(segments.hand_over(0, 16_000), None)
    assert [(u.segment_id, u.committed, u.segment.text) for u in updates] == [(0, True, "hello")]


def test_words_with_no_draft_get_new_ids_after_a_takeover() -> None:
    segments = LiveSegments()
    segments.resume_after([Segment(0.0, 1.0, "earlier")], next_id=7)
    updates = segments.settle(segments.hand_over(16_000, 32_000), _words((1.2, 1.8, "later")))
    assert [(u.segment_id, u.segment.text) for u in updates] == [(7, "later")]
    assert "earlier later" in segments.prompt()


def test_a_draft_needs_an_open_utterance() -> None:
    with pytest.raises(RuntimeError, match="open"):
        LiveSegments().draft(Segment(0.0, 1.0, "stray"))
