"""Post-meeting workflow hooks: Slack, a JSONL audit log, optional spoken summary.

`WorkflowRunner.run` runs every hook concurrently, each under `WORKFLOW_TIMEOUT_SECONDS` and
isolated from the others: a failing or slow hook is logged, counted in
`meeting_assistant_workflow_hook_failures_total{hook=...}` and returned as one error string; it
never raises and never waits past its timeout. Adding a hook (ticketing, calendar) is one class
with a `name`, `async run(record)` and `async aclose()`, plus one line in `build_workflows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

from observability import Metrics
from services.errors import WorkflowError
from services.settings import Settings
from services.types import MeetingRecord

logger = logging.getLogger(__name__)


class WorkflowHook(Protocol):
    """One post-meeting action. Raise `WorkflowError` with a short, secret-free message on failure."""

    name: str

    async def run(self, record: MeetingRecord) -> None: ...

    async def aclose(self) -> None: ...


class WorkflowRunner:
    """Runs the hooks for each finished meeting; `run` returns one error string per failed hook."""

    def __init__(self, hooks: list[WorkflowHook], metrics: Metrics, *, timeout_seconds: float = 10.0) -> None:
        self.hooks = hooks
        self._metrics = metrics
        self._timeout = timeout_seconds

    async def run(self, record: MeetingRecord) -> list[str]:
        """Run every hook concurrently; never raises (except on cancellation of the caller)."""
        results = await asyncio.gather(*(self._run_one(hook, record) for hook in self.hooks))
        return [error for error in results if error]

    async def aclose(self) -> None:
        for hook in self.hooks:
            try:
                await hook.aclose()
            except Exception:  # one hook failing to close must not keep the others open
                logger.exception("closing workflow hook %s failed", hook.name)

    async def _run_one(self, hook: WorkflowHook, record: MeetingRecord) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await hook.run(record)
            return None
        except TimeoutError:
            message = f"{hook.name}: did not finish within {self._timeout:g}s"
        except WorkflowError as exc:
            message = str(exc)
        except Exception as exc:  # isolation: a buggy hook must not break the meeting's final message
            logger.exception("workflow hook %s crashed", hook.name, extra={"session_id": record.session_id})
            message = f"{hook.name}: failed unexpectedly ({type(exc).__name__})"
        self._metrics.hook_failures.labels(hook=hook.name).inc()
        logger.warning("workflow hook failed: %s", message, extra={"hook": hook.name, "session_id": record.session_id})
        return message


class SlackHook:
    """Posts a Block Kit message (summary, action items, decisions) to an incoming webhook."""

    name = "slack"

    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        # No SDK retry handlers: a 429 or outage is reported, not waited out (the final must not wait).
        self._client = AsyncWebhookClient(url, timeout=max(1, math.ceil(timeout_seconds)), retry_handlers=[])

    async def run(self, record: MeetingRecord) -> None:
        try:
            response = await self._client.send(text=_fallback_text(record), blocks=slack_blocks(record))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WorkflowError(f"slack: could not deliver the message ({type(exc).__name__})") from exc
        if response.status_code != 200:
            hint = {
                404: " - check MEETING_SLACK_WEBHOOK_URL",
                403: " - the webhook was revoked",
                410: " - the webhook was revoked",
                429: " - rate limited by Slack",
            }.get(response.status_code, "")
            raise WorkflowError(f"slack: webhook answered HTTP {response.status_code}{hint}")

    async def aclose(self) -> None:
        return None  # the SDK opens and closes an aiohttp session per message


def slack_blocks(record: MeetingRecord) -> list[dict[str, Any]]:
    """The Block Kit blocks for one meeting."""
    summary = record.summary
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": (record.title or "Meeting summary")[:150]}},
        _section(f"*Summary*\n{_escape(summary.summary) or '_No summary._'}"),
    ]
    if summary.action_items:
        lines = []
        for item in summary.action_items:
            owner = f" — *{_escape(item.owner)}*" if item.owner else ""
            due = f" (due {_escape(item.due)})" if item.due else ""
            lines.append(f"• {_escape(item.text)}{owner}{due}")
        blocks.append(_section("*Action items*\n" + "\n".join(lines)))
    if summary.decisions:
        blocks.append(_section("*Decisions*\n" + "\n".join(f"• {_escape(d)}" for d in summary.decisions)))
    minutes = max(1, round(record.duration / 60))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{minutes} min · summarised by {_escape(record.provider)}"
                    f" · session {_escape(record.session_id)}",
                }
            ],
        }
    )
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text if len(text) <= 3000 else text[:2999] + "…"}}


def _escape(text: str | None) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fallback_text(record: MeetingRecord) -> str:
    return f"{record.title or 'Meeting summary'}: {record.summary.summary[:200]}"


class JsonlAuditLog:
    """Appends one JSON line per meeting (no audio) to MEETING_LOG_PATH, off the event loop.

    A single writer thread serialises meetings, each line goes out in one `O_APPEND` write and
    is fsynced; if the write fails part-way (disk full) the file is cut back to its previous
    length, so the log never holds half a line.
    """

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meeting-log")

    async def run(self, record: MeetingRecord) -> None:
        line = (json.dumps(audit_entry(record), ensure_ascii=False) + "\n").encode()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, _append_line, self.path, line)
        except OSError as exc:
            raise WorkflowError(f"jsonl: could not write {self.path} ({exc.strerror or type(exc).__name__})") from exc

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def audit_entry(record: MeetingRecord) -> dict[str, Any]:
    """The audit-log line for one meeting: who said what when, the summary, what failed."""
    return {
        "logged_at": round(time.time(), 3),
        "session_id": record.session_id,
        "title": record.title,
        "started_at": record.started_at,
        "duration": round(record.duration, 3),
        "provider": record.provider,
        "summary": record.summary.to_wire(),
        "segments": [segment.to_wire() for segment in record.segments],
        "errors": list(record.errors),
    }


def _append_line(path: Path, line: bytes, write: Callable[[int, memoryview], int] = os.write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # take back a partial line; the write error is what matters
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


class SpeakSummaryHook:
    """Speaks the summary with a local espeak-ng: to `<output_dir>/<session>.wav`, or the speakers."""

    name = "tts"

    def __init__(self, binary: str, output_dir: Path | None = None) -> None:
        self._binary = binary
        self._output_dir = output_dir

    async def run(self, record: MeetingRecord) -> None:
        args = [self._binary, "--stdin"]
        if self._output_dir is not None:
            await asyncio.to_thread(self._output_dir.mkdir, parents=True, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", record.session_id or "meeting").lstrip(".") or "meeting"
            args += ["-w", str(self._output_dir / f"{safe}.wav")]
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, stderr = await process.communicate(record.summary.summary.encode())
        finally:
            if process.returncode is None:  # cancelled by the runner's timeout
                process.kill()
                await process.wait()
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[:120]
            raise WorkflowError(f"tts: espeak-ng exited with {process.returncode} {detail}".strip())

    async def aclose(self) -> None:
        return None


def build_workflows(settings: Settings, metrics: Metrics) -> WorkflowRunner:
    """The hooks that are configured; each missing one is skipped with a log line."""
    hooks: list[WorkflowHook] = []
    if settings.meeting_slack_webhook_url is not None:
        hooks.append(
            SlackHook(
                settings.meeting_slack_webhook_url.get_secret_value(), timeout_seconds=settings.workflow_timeout_seconds
            )
        )
    else:
        logger.info("workflow hook slack skipped: MEETING_SLACK_WEBHOOK_URL not set")
    if settings.meeting_log_path is not None:
        hooks.append(JsonlAuditLog(settings.meeting_log_path))
    if settings.tts_enabled:
        binary = shutil.which("espeak-ng") or shutil.which("espeak")
        if binary:
            hooks.append(SpeakSummaryHook(binary, settings.tts_output_dir))
        else:
            logger.info("workflow hook tts skipped: TTS_ENABLED is set but espeak-ng is not installed")
    return WorkflowRunner(hooks, metrics, timeout_seconds=settings.workflow_timeout_seconds)
