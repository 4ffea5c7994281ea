"""The offline summariser on scripted meetings (tests/fixtures/meetings/*.json)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from services.llm_providers.base import LLMRequest
from services.llm_providers.offline import OfflineProvider, offline_summary
from services.llm_providers.offline_extract import split_sentences
from services.llm_service import LLMResponseModel
from services.types import Segment

MEETINGS = sorted((Path(__file__).parent / "fixtures" / "meetings").glob("*.json"))


def load(path: Path) -> tuple[list[Segment], str | None, dict[str, Any]]:
    data = json.loads(path.read_text())
    return [Segment(**s) for s in data["segments"]], data["title"], data["expect"]


def test_there_are_at_least_four_scripted_meetings() -> None:
    assert len(MEETINGS) >= 4


@pytest.mark.parametrize("path", MEETINGS, ids=lambda p: p.stem)
def test_action_items_found_with_owner_and_due(path: Path) -> None:
    segments, title, expect = load(path)
    result = offline_summary(segments, title)
    items = result["action_items"]
    for wanted in expect["action_items"]:
        matches = [i for i in items if wanted["contains"].lower() in i["text"].lower()]
        assert matches, f"no action item about {wanted['contains']!r} in {[i['text'] for i in items]}"
        item = matches[0]
        owners = wanted["owner"] if isinstance(wanted["owner"], list) else [wanted["owner"]]
        assert item["owner"] in owners, (wanted, item)
        if "due" in wanted:
            assert item["due"] == wanted["due"], (wanted, item)
        assert item["time"] is not None and item["time"] >= 0
    assert len(items) <= expect["max_action_items"], [i["text"] for i in items]
    for forbidden in expect.get("forbidden_action_text", []):
        assert all(forbidden not in i["text"].lower() for i in items)


@pytest.mark.parametrize("path", MEETINGS, ids=lambda p: p.stem)
def test_decisions_questions_and_topics(path: Path) -> None:
    segments, title, expect = load(path)
    result = offline_summary(segments, title)
    for wanted in expect["decisions"]:
        assert any(wanted.lower() in d.lower() for d in result["decisions"]), (wanted, result["decisions"])
    if not expect["decisions"]:
        assert result["decisions"] == []
    for wanted in expect["open_questions"]:
        assert any(wanted.lower() in q.lower() for q in result["open_questions"]), result["open_questions"]
    if "max_open_questions" in expect:
        assert len(result["open_questions"]) <= expect["max_open_questions"], result["open_questions"]
    for wanted in expect["topics"]:
        assert any(wanted in t for t in result["key_topics"]), result["key_topics"]


@pytest.mark.parametrize("path", MEETINGS, ids=lambda p: p.stem)
def test_answer_matches_the_llm_schema(path: Path) -> None:
    segments, title, _ = load(path)
    model = LLMResponseModel.model_validate(offline_summary(segments, title))
    summary = model.to_summary()
    assert summary.summary and len(summary.summary) < 1000
    if title:
        assert summary.summary.startswith(title)


def test_summary_mentions_decisions_and_owners() -> None:
    segments, title, _ = load(Path(__file__).parent / "fixtures" / "meetings" / "sprint_planning.json")
    text = offline_summary(segments, title)["summary"]
    assert "blue-green" in text and "Carol" in text and "3 speakers" in text


def test_empty_transcript() -> None:
    result = offline_summary([], None)
    assert result["summary"] == "No speech was recorded."
    assert result["action_items"] == [] and result["decisions"] == []


def test_sentence_spanning_segments_of_one_speaker_is_joined() -> None:
    segments = [
        Segment(0.0, 2.0, "Carol, please send the", "SPEAKER_1"),
        Segment(2.0, 4.0, "budget by Thursday.", "SPEAKER_1"),
        Segment(4.5, 5.0, "Sure.", "SPEAKER_2"),
    ]
    assert [s.text for s in split_sentences(segments)] == ["Carol, please send the budget by Thursday.", "Sure."]
    item = offline_summary(segments)["action_items"][0]
    assert (item["text"], item["owner"], item["due"], item["time"]) == ("Send the budget", "Carol", "Thursday", 0.0)


@pytest.mark.parametrize(
    ("line", "owner", "due"),
    [
        ("I will draft the proposal by Monday.", "SPEAKER_1", "Monday"),
        ("I'm going to migrate the billing tables next week.", "SPEAKER_1", "next week"),
        ("Let me check with legal about the contract tomorrow.", "SPEAKER_1", "tomorrow"),
        ("Dave will prepare the demo environment before the 15th.", "Dave", "the 15th"),
        ("Action item: Sam to renew the SSL certificate by end of the month.", "Sam", "end of the month"),
        ("Can you send the slides to the client, Maria?", "Maria", None),
        ("We need to update the onboarding docs.", None, None),
    ],
)
def test_action_phrasings(line: str, owner: str | None, due: str | None) -> None:
    items = offline_summary([Segment(0.0, 3.0, line, "SPEAKER_1")])["action_items"]
    assert len(items) == 1, items
    assert (items[0]["owner"], items[0]["due"]) == (owner, due)


@pytest.mark.parametrize(
    "line",
    [
        "I'll be honest, that demo was rough.",
        "I think the numbers look fine.",
        "Let me know if you have questions.",
        "We'll see how it goes.",
        "I can see your screen now.",
    ],
)
def test_small_talk_is_not_an_action(line: str) -> None:
    assert offline_summary([Segment(0.0, 3.0, line, "SPEAKER_1")])["action_items"] == []


@pytest.mark.parametrize(
    ("line", "decision"),
    [
        ("We decided to move the standup to 10am.", "Move the standup to 10am"),
        ("Okay, let's go with the annual plan.", "Go with the annual plan"),
        ("We've agreed that the beta stays invite-only.", "The beta stays invite-only"),
        ("So the decision is to hire two contractors.", "Hire two contractors"),
    ],
)
def test_decision_phrasings(line: str, decision: str) -> None:
    assert offline_summary([Segment(0.0, 3.0, line, "SPEAKER_1")])["decisions"] == [decision]


async def test_offline_provider_is_fast_on_a_long_meeting() -> None:
    segments, title, _ = load(Path(__file__).parent / "fixtures" / "meetings" / "incident_review.json")
    long_meeting = [Segment(s.start + 70 * n, s.end + 70 * n, s.text, s.speaker) for n in range(100) for s in segments]
    request = LLMRequest(system="", prompt="", json_schema={}, segments=tuple(long_meeting), title=title)
    started = time.perf_counter()
    result = await OfflineProvider().complete(request)
    assert time.perf_counter() - started < 2.0
    assert LLMResponseModel.model_validate(result).action_items
