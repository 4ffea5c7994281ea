"""What /metrics and /health tell an operator: process series, build info, stage labels that pair up."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from observability import STAGES, Metrics

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*ROOT.glob("*.py"), *ROOT.glob("services/**/*.py"), *ROOT.glob("integrations/**/*.py")]


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_metrics_carry_process_and_build_series(live_server: str) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{live_server}/metrics")).text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert re.search(rf"^{name}(\{{.*\}})? [0-9.e+]+$", text, re.M), name
    build = re.search(r"^meeting_assistant_build_info\{(.*)\} 1\.0$", text, re.M)
    assert build is not None
    labels = dict(re.findall(r'(\w+)="([^"]*)"', build.group(1)))
    assert labels["version"] == "0.1.0" and labels["faster_whisper"] and labels["ctranslate2"]


def test_jobs_and_failures_share_their_stage_values() -> None:
    families = _families(Metrics().render().decode())
    started = {s.labels["stage"] for s in families["meeting_assistant_jobs"].samples if s.name.endswith("_total")}
    failed = {
        s.labels["stage"] for s in families["meeting_assistant_job_failures"].samples if s.name.endswith("_total")
    }
    assert started == failed == set(STAGES)


def test_every_stage_label_in_the_code_is_a_known_stage() -> None:
    """A new stage name used on only one of the two counters would break the per-stage ratio."""
    used = {
        match
        for path in SOURCES
        for match in re.findall(r"(?:jobs_total|job_failures)\.labels\(stage=\"(\w+)\"\)", path.read_text())
    }
    assert used and used <= set(STAGES), used - set(STAGES)


def test_asr_latency_help_names_the_kinds_that_are_emitted() -> None:
    # the recogniser observes each call through `_account(kind, ...)`
    pattern = r"asr_latency\.labels\(kind=\"(\w+)\"\)|self\._account\(\"(\w+)\""
    emitted = {kind for path in SOURCES for match in re.findall(pattern, path.read_text()) for kind in match if kind}
    help_text = _families(Metrics().render().decode())["meeting_assistant_asr_latency_seconds"].documentation
    named = set(re.findall(r"(\w+):", help_text))
    assert emitted == named == {"partial", "commit"}


async def test_health_says_where_transcripts_go(live_server: str) -> None:
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"{live_server}/health")).json()
    assert health["llm_chain"] == [{"provider": "offline", "sends_to": None, "leaves_machine": False}]
