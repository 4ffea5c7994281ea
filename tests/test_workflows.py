"""Workflow hooks: Slack Block Kit to a loopback webhook, the JSONL audit log, TTS, isolation."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from integrations import workflows
from integrations.workflows import (
    JsonlAuditLog,
    SlackHook,
    SpeakSummaryHook,
    WorkflowRunner,
    build_workflows,
)
from observability import Metrics
from services.errors import WorkflowError
from services.types import ActionItem, MeetingRecord, MeetingSummary, Segment
from tests.fakes.llm import make_settings
from tests.fakes.provider_server import FakeServer, Reply, fake_server

__all__ = ["fake_server"]


def record(session_id: str = "sess-1", *, words: int = 3) -> MeetingRecord:
    summary = MeetingSummary(
        summary="The team agreed on <blue-green> deploys & the release date.",
        action_items=[ActionItem("Update the release notes", "Carol", "Thursday", 40.2), ActionItem("Resize staging")],
        decisions=["Go with blue-green deploys"],
    )
    text = " ".join(f"word{n}" for n in range(words))
    return MeetingRecord(
        session_id=session_id,
        title="Sprint planning",
        started_at=1_700_000_000.0,
        duration=125.0,
        segments=[Segment(0.0, 4.0, text, "SPEAKER_0"), Segment(4.0, 6.0, "Sure.", "SPEAKER_1")],
        summary=summary,
        provider="offline",
        errors=["vllm: server unreachable (connection refused)"],
    )


def hook_failures(metrics: Metrics, hook: str) -> float:
    value = metrics.registry.get_sample_value("meeting_assistant_workflow_hook_failures_total", {"hook": hook})
    return value or 0.0


# --- Slack ---------------------------------------------------------------------------------


async def test_slack_block_kit_payload(fake_server: FakeServer) -> None:
    fake_server.default = Reply(200, "ok")
    metrics = Metrics()
    runner = WorkflowRunner([SlackHook(f"{fake_server.url}/services/T000/B000/XXX")], metrics)
    assert await runner.run(record()) == []
    await runner.aclose()
    sent = fake_server.requests[0]
    assert sent.path == "/services/T000/B000/XXX"
    assert sent.headers["content-type"].startswith("application/json")
    payload = sent.json()
    blocks = payload["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Sprint planning"}}
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert texts[0] == "*Summary*\nThe team agreed on &lt;blue-green&gt; deploys &amp; the release date."
    assert texts[1] == "*Action items*\n• Update the release notes — *Carol* (due Thursday)\n• Resize staging"
    assert texts[2] == "*Decisions*\n• Go with blue-green deploys"
    assert "summarised by offline" in blocks[-1]["elements"][0]["text"]
    assert payload["text"].startswith("Sprint planning:")
    assert hook_failures(metrics, "slack") == 0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(404, "no_service"), "slack: webhook answered HTTP 404 - check MEETING_SLACK_WEBHOOK_URL"),
        (
            Reply(429, "rate_limited", headers={"Retry-After": "30"}),
            "slack: webhook answered HTTP 429 - rate limited by Slack",
        ),
        (Reply(200, "ok", delay=3.0), "slack: did not finish within 0.3s"),
    ],
    ids=["404", "429", "timeout"],
)
async def test_slack_failures_are_listed_counted_and_bounded(
    fake_server: FakeServer, reply: Reply, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.default = reply
    metrics = Metrics()
    url = f"{fake_server.url}/services/SECRET-TOKEN"
    runner = WorkflowRunner([SlackHook(url, timeout_seconds=0.3)], metrics, timeout_seconds=0.3)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        errors = await runner.run(record())
    assert time.perf_counter() - started < 1.0
    assert errors == [expected]
    assert len(fake_server.requests) == 1  # no retries
    assert hook_failures(metrics, "slack") == 1
    assert "SECRET-TOKEN" not in caplog.text and "SECRET-TOKEN" not in errors[0]
    await runner.aclose()


async def test_slack_unreachable() -> None:
    runner = WorkflowRunner([SlackHook("http://127.0.0.1:9/hook")], Metrics(), timeout_seconds=2.0)
    errors = await runner.run(record())
    assert len(errors) == 1 and errors[0].startswith("slack: could not deliver the message")


# --- JSONL audit log -------------------------------------------------------------------------


async def test_jsonl_lines_stay_whole_under_50_concurrent_meetings(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "meetings.jsonl"
    runner = WorkflowRunner([JsonlAuditLog(path)], Metrics(), timeout_seconds=30)
    results = await asyncio.gather(*(runner.run(record(f"s{n}", words=20_000)) for n in range(50)))
    await runner.aclose()
    assert results == [[]] * 50
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 51
    entries = [json.loads(line) for line in lines[:-1]]
    assert {e["session_id"] for e in entries} == {f"s{n}" for n in range(50)}
    first = entries[0]
    assert first["summary"]["action_items"][0]["owner"] == "Carol"
    assert first["segments"][1] == {"start": 4.0, "end": 6.0, "speaker": "SPEAKER_1", "text": "Sure."}
    assert first["errors"] == ["vllm: server unreachable (connection refused)"]
    assert "audio" not in first


async def test_unwritable_log_path_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    metrics = Metrics()
    runner = WorkflowRunner([JsonlAuditLog(blocker / "meetings.jsonl")], metrics)
    errors = await runner.run(record())
    await runner.aclose()
    assert len(errors) == 1 and errors[0].startswith(f"jsonl: could not write {blocker / 'meetings.jsonl'}")
    assert hook_failures(metrics, "jsonl") == 1


async def test_disk_full_is_reported() -> None:
    runner = WorkflowRunner([JsonlAuditLog(Path("/dev/full"))], Metrics())
    errors = await runner.run(record())
    await runner.aclose()
    assert errors == ["jsonl: could not write /dev/full (No space left on device)"]


def test_a_partial_write_is_taken_back(tmp_path: Path) -> None:
    path = tmp_path / "meetings.jsonl"
    path.write_bytes(b'{"earlier": 1}\n')

    def half_then_full(fd: int, data: memoryview) -> int:
        if len(data) > 10:
            return workflows.os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        workflows._append_line(path, b'{"session_id": "half-written"}\n', write=half_then_full)
    assert path.read_bytes() == b'{"earlier": 1}\n'


# --- isolation, TTS, building -----------------------------------------------------------------


class _Crashing:
    name = "ticketing"

    async def run(self, record: MeetingRecord) -> None:
        raise RuntimeError("bug")

    async def aclose(self) -> None:
        return None


class _Hanging:
    name = "calendar"

    async def run(self, record: MeetingRecord) -> None:
        await asyncio.sleep(60)

    async def aclose(self) -> None:
        return None


class _Failing:
    name = "crm"

    async def run(self, record: MeetingRecord) -> None:
        raise WorkflowError("crm: account not found")

    async def aclose(self) -> None:
        return None


async def test_each_hook_is_isolated_and_bounded(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "meetings.jsonl"
    runner = WorkflowRunner([_Crashing(), _Hanging(), _Failing(), JsonlAuditLog(path)], metrics, timeout_seconds=0.2)
    started = time.perf_counter()
    errors = await runner.run(record())
    assert time.perf_counter() - started < 1.0
    assert errors == [
        "ticketing: failed unexpectedly (RuntimeError)",
        "calendar: did not finish within 0.2s",
        "crm: account not found",
    ]
    assert len(path.read_text().splitlines()) == 1
    assert [hook_failures(metrics, h) for h in ("ticketing", "calendar", "crm", "jsonl")] == [1, 1, 1, 0]
    await runner.aclose()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_tts_writes_the_spoken_summary(tmp_path: Path) -> None:
    runner = build_workflows(make_settings(tts_enabled=True, tts_output_dir=tmp_path / "tts"), Metrics())
    assert [h.name for h in runner.hooks] == ["tts"]
    assert await runner.run(record("../evil id")) == []
    wav = tmp_path / "tts" / "_evil_id.wav"
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 1000
    await runner.aclose()


async def test_tts_engine_failure_is_reported(tmp_path: Path) -> None:
    runner = WorkflowRunner([SpeakSummaryHook(shutil.which("false") or "/bin/false", tmp_path)], Metrics())
    errors = await runner.run(record())
    assert errors and errors[0].startswith("tts: espeak-ng exited with 1")


async def test_build_workflows_picks_configured_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert build_workflows(make_settings(), Metrics()).hooks == []
    monkeypatch.setattr(workflows.shutil, "which", lambda _name: None)
    settings = make_settings(
        meeting_slack_webhook_url="http://127.0.0.1:9/hook", meeting_log_path=tmp_path / "m.jsonl", tts_enabled=True
    )
    with caplog.at_level(logging.INFO, logger="integrations.workflows"):
        runner = build_workflows(settings, Metrics())
    assert [h.name for h in runner.hooks] == ["slack", "jsonl"]
    assert "espeak-ng is not installed" in caplog.text
    await runner.aclose()
