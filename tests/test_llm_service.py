"""The provider chain: failover order, retries and backoff, repair, timeouts, deadline, cooldown, chunking."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from observability import Metrics
from services.errors import PermanentLLMError, TransientLLMError
from services.llm_providers.base import LLMRequest
from services.llm_providers.fake import ScriptedProvider
from services.llm_providers.offline import OfflineProvider
from services.llm_providers.openai_compat import build_vllm
from services.llm_service import Cooldown, LLMService, RetryPolicy, build_llm_service
from services.types import Segment
from tests.fakes.llm import answer, answer_json, make_settings
from tests.fakes.provider_server import FakeServer, Reply, anthropic_tool_use, error_body, openai_chat

SEGMENTS = [
    Segment(0.0, 4.0, "Let's go with blue-green deploys.", "SPEAKER_0"),
    Segment(4.5, 9.0, "Carol, please update the release notes by Thursday.", "SPEAKER_0"),
    Segment(9.5, 11.0, "Sure, no problem.", "SPEAKER_1"),
]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    with FakeServer() as first, FakeServer() as second, FakeServer() as third:
        yield [first, second, third]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def failures(metrics: Metrics, provider: str, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "meeting_assistant_llm_failures_total", {"provider": provider, "reason": reason}
    )
    return value or 0.0


def chain(*providers: object, metrics: Metrics | None = None, **kwargs: object) -> LLMService:
    options: dict[str, object] = {"policy": RetryPolicy(max_attempts=3, backoff_seconds=0.01), **kwargs}
    return LLMService(list(providers), metrics or Metrics(), **options)  # type: ignore[arg-type]


# --- through the real SDKs ------------------------------------------------------------------


async def test_fresh_install_answers_offline_fast_and_cools_vllm_down(metrics: Metrics) -> None:
    service = build_llm_service(make_settings(vllm_base_url=closed_port_url()), metrics)
    started = time.perf_counter()
    outcome = await service.summarize_meeting(SEGMENTS, title="Planning", session_id="s1")
    assert time.perf_counter() - started < 0.8
    assert outcome.provider == "offline"
    assert outcome.errors == ["vllm: server unreachable (connection refused)"]
    assert outcome.summary.decisions == ["Go with blue-green deploys"]
    assert outcome.summary.action_items[0].owner == "Carol"
    assert failures(metrics, "vllm", "unreachable") == 1
    again = await service.summarize_meeting(SEGMENTS)
    assert again.provider == "offline" and "cooling down" in again.errors[0]
    assert failures(metrics, "vllm", "unreachable") == 1  # skipped, not tried
    await service.aclose()


@pytest.fixture
async def three_provider_chain(servers: list[FakeServer], metrics: Metrics) -> AsyncIterator[LLMService]:
    vllm, openai_server, anthropic_server = servers
    settings = make_settings(
        llm_provider_order="vllm,openai,anthropic,offline",
        vllm_base_url=vllm.url,
        openai_api_key="sk-topsecret",
        openai_base_url=f"{openai_server.url}/v1",
        anthropic_api_key="ant-topsecret",
        anthropic_base_url=anthropic_server.url,
        llm_max_retries=3,
        llm_backoff_seconds=0.01,
    )
    service = build_llm_service(settings, metrics)
    yield service
    await service.aclose()


async def test_failover_in_order_with_retries_and_no_retry_on_401(
    three_provider_chain: LLMService, servers: list[FakeServer], metrics: Metrics
) -> None:
    vllm, openai_server, anthropic_server = servers
    vllm.default = Reply(503, error_body("overloaded"))
    openai_server.default = Reply(401, error_body("bad key"))
    anthropic_server.default = Reply(200, anthropic_tool_use(answer("Claude's summary.")))
    outcome = await three_provider_chain.summarize_meeting(SEGMENTS, session_id="s2")
    assert outcome.provider == "anthropic"
    assert outcome.summary.summary == "Claude's summary."
    assert len(vllm.requests) == 3 and len(openai_server.requests) == 1 and len(anthropic_server.requests) == 1
    assert outcome.errors[0].startswith("vllm: server error (HTTP 503)") and "3 attempts" in outcome.errors[0]
    assert outcome.errors[1].startswith("openai: HTTP 401") and "API key" in outcome.errors[1]
    assert not any("topsecret" in error for error in outcome.errors)
    assert failures(metrics, "vllm", "server_error") == 3 and failures(metrics, "openai", "auth") == 1
    latency = metrics.registry.get_sample_value(
        "meeting_assistant_llm_latency_seconds_count", {"provider": "anthropic"}
    )
    assert latency == 1


async def test_transient_failures_then_success_on_the_first_provider(
    three_provider_chain: LLMService, servers: list[FakeServer]
) -> None:
    vllm = servers[0]
    vllm.script(Reply(500, error_body("boom")), Reply(502, b"bad gateway"), Reply(200, openai_chat(answer_json())))
    outcome = await three_provider_chain.summarize_meeting(SEGMENTS)
    assert (outcome.provider, outcome.errors, len(vllm.requests)) == ("vllm", [], 3)
    assert outcome.summary.action_items[0].owner == "Carol"


async def test_429_retry_after_is_honoured(three_provider_chain: LLMService, servers: list[FakeServer]) -> None:
    vllm = servers[0]
    vllm.script(
        Reply(429, error_body("slow down"), headers={"retry-after-ms": "300"}), Reply(200, openai_chat(answer_json()))
    )
    started = time.perf_counter()
    outcome = await three_provider_chain.summarize_meeting(SEGMENTS)
    assert outcome.provider == "vllm"
    assert 0.3 <= time.perf_counter() - started < 2.0


async def test_malformed_answer_is_repaired_once(three_provider_chain: LLMService, servers: list[FakeServer]) -> None:
    vllm = servers[0]
    truncated = answer_json()[:60]
    vllm.script(Reply(200, openai_chat(truncated)), Reply(200, openai_chat(answer_json("Repaired."))))
    outcome = await three_provider_chain.summarize_meeting(SEGMENTS)
    assert (outcome.provider, outcome.summary.summary, outcome.errors) == ("vllm", "Repaired.", [])
    repair = vllm.requests[1].json()["messages"][1]["content"]
    assert "could not be used" in repair and truncated in repair and "SPEAKER_0" in repair


async def test_malformed_twice_moves_to_the_next_provider(
    three_provider_chain: LLMService, servers: list[FakeServer], metrics: Metrics
) -> None:
    vllm, openai_server, _ = servers
    vllm.default = Reply(200, openai_chat(json.dumps({"summary": "x"})))  # keys missing
    openai_server.default = Reply(200, openai_chat("```json\n" + answer_json("From OpenAI.") + "\n```"))
    outcome = await three_provider_chain.summarize_meeting(SEGMENTS)
    assert outcome.provider == "openai" and outcome.summary.summary == "From OpenAI."
    assert len(vllm.requests) == 2 and len(openai_server.requests) == 1  # fenced JSON needs no repair call
    assert "repair failed" in outcome.errors[0] and "action_items" in outcome.errors[0]
    assert failures(metrics, "vllm", "malformed") == 2


async def test_timeouts_retry_then_fail_over(servers: list[FakeServer], metrics: Metrics) -> None:
    vllm = servers[0]
    vllm.default = Reply(200, openai_chat(answer_json()), delay=2.0)
    settings = make_settings(
        llm_provider_order="vllm,offline", vllm_base_url=vllm.url, llm_timeout_seconds=0.2, llm_max_retries=2
    )
    service = build_llm_service(settings, metrics)
    started = time.perf_counter()
    outcome = await service.summarize_meeting(SEGMENTS)
    await service.aclose()
    assert outcome.provider == "offline"
    assert time.perf_counter() - started < 1.5
    assert len(vllm.requests) == 2 and "timed out" in outcome.errors[0]
    assert failures(metrics, "vllm", "timeout") == 2


async def test_deadline_bounds_the_whole_summary() -> None:
    slow = ScriptedProvider("openai", [answer()], delay=5.0)
    service = chain(
        slow, ScriptedProvider("anthropic", [answer()]), OfflineProvider(), timeout_seconds=5.0, deadline_seconds=0.3
    )
    started = time.perf_counter()
    outcome = await service.summarize_meeting(SEGMENTS)
    assert time.perf_counter() - started < 1.0
    assert outcome.provider == "offline"
    assert "openai:" in outcome.errors[0] and "deadline" in outcome.errors[1]


async def test_retry_after_past_the_deadline_fails_over_at_once() -> None:
    limited = ScriptedProvider("xai", [TransientLLMError("xai", "rate limited", reason="rate_limited", retry_after=60)])
    service = chain(limited, OfflineProvider(), deadline_seconds=5.0)
    started = time.perf_counter()
    outcome = await service.summarize_meeting(SEGMENTS)
    assert time.perf_counter() - started < 0.5 and len(limited.calls) == 1
    assert "deadline" in outcome.errors[0]


# --- chain logic with in-memory providers ------------------------------------------------------


async def test_cooldown_skips_then_retries_after_it_expires() -> None:
    now = [0.0]
    cooldown = Cooldown(30.0, clock=lambda: now[0])
    flaky = ScriptedProvider("xai", [PermanentLLMError("xai", "HTTP 403", reason="auth"), answer("Back.")])
    service = chain(flaky, OfflineProvider(), cooldown=cooldown)
    assert (await service.summarize_meeting(SEGMENTS)).provider == "offline"
    skipped = await service.summarize_meeting(SEGMENTS)
    assert len(flaky.calls) == 1 and "cooling down for 30s" in skipped.errors[0]
    now[0] = 31.0
    recovered = await service.summarize_meeting(SEGMENTS)
    assert (recovered.provider, recovered.summary.summary) == ("xai", "Back.")
    assert cooldown.remaining("xai") == 0


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    low = RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=5.0, jitter=lambda: 0.0)
    high = RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=5.0, jitter=lambda: 1.0)
    assert [low.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [high.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert high.delay(1, retry_after=7.0) == 7.0


async def test_long_meetings_are_chunked_and_merged_keeping_speakers_and_times() -> None:
    segments = [
        Segment(60.0 * n, 60.0 * n + 50, f"Point number {n} about the roadmap and the budget.", f"SPEAKER_{n % 2}")
        for n in range(12)
    ]

    def reply(request: LLMRequest) -> dict[str, object]:
        first = request.segments[0]
        return answer(
            f"Part from {first.start:.0f}s.",
            action_items=[
                {"text": f"Follow up on {first.start:.0f}", "owner": first.speaker, "due": None, "time": first.start}
            ],
        )

    provider = ScriptedProvider("openai", [reply], context_chars=250)
    outcome = await chain(provider).summarize_meeting(segments)
    assert len(provider.calls) > 2
    for call in provider.calls:
        transcript = call.prompt.split("Transcript:\n", 1)[1].split("\n\nReturn", 1)[0]
        assert len(transcript) <= 250
        assert "part" in call.prompt and "[0.0s] SPEAKER_0:" in provider.calls[0].prompt
    assert outcome.summary.summary.startswith("[0:00–")
    assert len(outcome.summary.action_items) == len(provider.calls)
    assert outcome.summary.decisions == ["Go with blue-green deploys"]  # merged without repeats
    assert [a.time for a in outcome.summary.action_items] == sorted(a.time or 0 for a in outcome.summary.action_items)


async def test_without_offline_everything_failing_gives_an_empty_summary_and_never_raises() -> None:
    broken = ScriptedProvider("gemini", [RuntimeError("adapter bug")])
    outcome = await chain(broken).summarize_meeting(SEGMENTS)
    assert outcome.provider == "none" and outcome.summary.summary == ""
    assert outcome.errors[0] == "gemini: unexpected error (RuntimeError)"
    assert "no LLM provider" in outcome.errors[1]


async def test_empty_transcript_makes_no_network_call() -> None:
    remote = ScriptedProvider("openai", [answer()])
    outcome = await chain(remote, OfflineProvider()).summarize_meeting([Segment(0, 1, "  ")])
    assert remote.calls == [] and outcome.provider == "offline"
    assert outcome.summary.summary == "No speech was recorded."


async def test_aclose_closes_every_provider() -> None:
    providers = [ScriptedProvider("openai", [answer()]), ScriptedProvider("xai", [answer()])]
    await chain(*providers).aclose()
    assert all(p.closed for p in providers)


# --- a newcomer's defaults (issue 10) -------------------------------------------------------


async def test_unconfigured_vllm_that_is_not_running_is_no_error(metrics: Metrics) -> None:
    """vLLM at its default address, never configured and not running: logged, not shown to the user."""
    defaults = make_settings(vllm_model_id="")
    assert not defaults.vllm_configured
    not_running = build_vllm(make_settings(vllm_base_url=closed_port_url()))
    service = LLMService([not_running, OfflineProvider()], metrics, unconfigured=frozenset({"vllm"}))
    outcome = await service.summarize_meeting(SEGMENTS, session_id="fresh")
    assert (outcome.provider, outcome.errors) == ("offline", [])
    again = await service.summarize_meeting(SEGMENTS)  # cooling down: skipped quietly too
    assert (again.provider, again.errors) == ("offline", [])
    assert failures(metrics, "vllm", "unreachable") == 1
    await service.aclose()


async def test_unconfigured_vllm_that_answers_badly_is_still_reported(servers: list[FakeServer]) -> None:
    """Only "not running" is quiet: something at the default address that fails is worth saying."""
    servers[0].default = Reply(500, error_body("not a vLLM"))
    answering = build_vllm(make_settings(vllm_base_url=servers[0].url, llm_max_retries=1))
    service = LLMService([answering, OfflineProvider()], Metrics(), unconfigured=frozenset({"vllm"}))
    outcome = await service.summarize_meeting(SEGMENTS)
    assert outcome.provider == "offline" and outcome.errors[0].startswith("vllm: server error (HTTP 500)")
    await service.aclose()


@pytest.mark.parametrize(
    ("overrides", "configured"),
    [
        ({}, False),
        ({"vllm_base_url": "http://gpu-box:8001/v1"}, True),
        ({"vllm_model_id": "my-model"}, True),
        ({"vllm_api_key": "k"}, True),
        ({"llm_provider_order": "vllm,offline"}, True),
        ({"llm_provider_order": "openai,offline", "vllm_base_url": "http://gpu-box:8001"}, False),
    ],
)
def test_vllm_counts_as_configured_when_anything_about_it_was_set(
    overrides: dict[str, object], configured: bool
) -> None:
    assert make_settings(**{"vllm_model_id": "", **overrides}).vllm_configured is configured


async def test_every_provider_failing_still_gives_the_offline_summary(servers: list[FakeServer]) -> None:
    vllm, openai_server, _ = servers
    vllm.default = Reply(503, error_body("overloaded"))
    openai_server.default = Reply(401, error_body("bad key"))
    settings = make_settings(
        llm_provider_order="vllm,openai",
        vllm_base_url=vllm.url,
        openai_api_key="sk-x",
        openai_base_url=f"{openai_server.url}/v1",
        llm_max_retries=1,
    )
    service = build_llm_service(settings, Metrics())
    assert [p.name for p in service.providers] == ["vllm", "openai", "offline"]
    outcome = await service.summarize_meeting(SEGMENTS)
    await service.aclose()
    assert outcome.provider == "offline"
    assert outcome.summary.decisions == ["Go with blue-green deploys"]
    assert [e.split(":")[0] for e in outcome.errors] == ["vllm", "openai"]

    switched_off = build_llm_service(settings.model_copy(update={"llm_offline_fallback": False}), Metrics())
    assert [p.name for p in switched_off.providers] == ["vllm", "openai"]
    nothing = await switched_off.summarize_meeting(SEGMENTS)
    await switched_off.aclose()
    assert nothing.provider == "none" and nothing.summary.summary == ""


async def test_answer_with_only_the_required_fields_is_accepted(servers: list[FakeServer]) -> None:
    """A small model that skips key_topics/open_questions: accepted as it is, no repair, no failover."""
    minimal = {"summary": "Release planning.", "action_items": [{"text": "Update the notes"}], "decisions": []}
    servers[0].script(Reply(200, openai_chat(json.dumps(minimal))))
    service = build_llm_service(
        make_settings(llm_provider_order="vllm,offline", vllm_base_url=servers[0].url), Metrics()
    )
    outcome = await service.summarize_meeting(SEGMENTS)
    await service.aclose()
    assert (outcome.provider, outcome.errors, len(servers[0].requests)) == ("vllm", [], 1)
    assert outcome.summary.summary == "Release planning."
    assert outcome.summary.topics == [] and outcome.summary.open_questions == []
    assert outcome.summary.action_items[0].owner is None


async def test_chain_says_where_transcripts_go(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(vllm_model_id="", openai_api_key="sk-x", anthropic_api_key="ant-x")
    with caplog.at_level(logging.INFO, logger="services.llm_service"):
        service = build_llm_service(settings, Metrics())
    await service.aclose()
    assert service.describe() == [
        {"provider": "vllm", "sends_to": "http://localhost:8001/v1/", "leaves_machine": False},
        {"provider": "openai", "sends_to": "https://api.openai.com/v1/", "leaves_machine": True},
        {"provider": "anthropic", "sends_to": "https://api.anthropic.com", "leaves_machine": True},
        {"provider": "offline", "sends_to": None, "leaves_machine": False},
    ]
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LLM provider chain")]
    assert "openai (https://api.openai.com/v1/, transcripts leave this machine)" in line
    assert "vllm (http://localhost:8001/v1/)" in line and "offline (in this process)" in line
    assert "sk-x" not in line
