"""The meeting summary chain: providers in `LLM_PROVIDER_ORDER`, one retry loop, cooldown, offline floor.

For each provider in order (vLLM, xAI, OpenAI, Azure, Anthropic, Gemini, offline by default):

* skipped when it is cooling down after failing a recent meeting (like LiteLLM's router);
* up to `LLM_MAX_RETRIES` attempts on transient failures (timeout, 429 honouring Retry-After,
  5xx, connection), exponential backoff with jitter from `LLM_BACKOFF_SECONDS`; never a retry
  on 400/401/403/404, nor on "unreachable" (connection refused: a vLLM that is not running
  costs milliseconds);
* the answer is validated against `LLMResponseModel`; a malformed one (truncated, fenced,
  missing keys) gets one repair request, then the chain moves on;
* a transcript longer than `LLM_CONTEXT_CHARS` is summarised in chunks, merged keeping
  speakers and times.

All of it runs under one `LLM_DEADLINE_SECONDS` budget per summary; the offline summariser is
exempt, and it is added at the end of the chain when `LLM_PROVIDER_ORDER` leaves it out (unless
`LLM_OFFLINE_FALLBACK=false`), so a summary always comes back. SDK retries are off: this is the
only retry loop.

A provider nobody configured (vLLM at its default address) that is simply not running is not
the user's problem: its failure is logged but kept out of `final.errors`. Once configured, its
failures are reported like any other provider's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from observability import Metrics
from services.errors import LLMError, MalformedLLMOutput, PermanentLLMError, TransientLLMError
from services.llm_providers.base import LLMProvider, LLMRequest
from services.llm_providers.chunking import chunk_segments, merge_responses
from services.llm_providers.registry import build_providers, describe_chain, leaves_machine
from services.llm_providers.schema import (
    RESPONSE_SCHEMA,
    SYSTEM_PROMPT,
    LLMResponseModel,
    build_prompt,
    parse_response,
    repair_prompt,
)
from services.settings import Settings
from services.types import MeetingSummary, Segment

__all__ = ["Cooldown", "LLMResponseModel", "LLMService", "RetryPolicy", "SummaryOutcome", "build_llm_service"]

logger = logging.getLogger(__name__)

_GRACE_SECONDS = 0.25


@dataclass
class SummaryOutcome:
    """What `summarize_meeting` produced, who produced it and what failed on the way."""

    summary: MeetingSummary
    provider: str
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per provider and the backoff between them (honouring Retry-After)."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
        return ceiling * (0.5 + 0.5 * self.jitter())  # "equal jitter": never less than half


class Cooldown:
    """Providers that failed a whole meeting are skipped for `seconds` by later meetings."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}

    def remaining(self, name: str) -> float:
        return max(0.0, self._until.get(name, 0.0) - self._clock())

    def trip(self, name: str) -> None:
        if self._seconds > 0:
            self._until[name] = self._clock() + self._seconds

    def reset(self, name: str) -> None:
        self._until.pop(name, None)


class LLMService:
    """Summarises meetings through the provider chain; never raises for provider failures."""

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        metrics: Metrics,
        *,
        policy: RetryPolicy | None = None,
        cooldown: Cooldown | None = None,
        timeout_seconds: float = 30.0,
        deadline_seconds: float = 120.0,
        unconfigured: frozenset[str] = frozenset(),
    ) -> None:
        """`unconfigured`: providers tried at their default address; their being unreachable is no error."""
        self.providers = list(providers)
        self._unconfigured = unconfigured
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self.cooldown = cooldown or Cooldown(60.0)
        self._timeout = timeout_seconds
        self._deadline = deadline_seconds

    async def summarize_meeting(
        self, segments: Sequence[Segment], *, title: str | None = None, session_id: str = ""
    ) -> SummaryOutcome:
        """Summarise `segments`; the offline summariser (if in the order) is the floor."""
        spoken = [s for s in segments if s.text.strip()]
        errors: list[str] = []
        deadline = time.monotonic() + self._deadline
        for provider in self.providers:
            networked = provider.context_chars is not None
            if networked and not spoken:
                continue  # nothing worth a network call
            context = {"provider": provider.name, "session_id": session_id}
            if skip := self._skip_reason(provider, deadline):
                if not self._quiet(provider.name):
                    errors.append(f"{provider.name}: {skip}")
                continue
            started = time.perf_counter()
            try:
                response = await self._summarize_with(provider, spoken, title, deadline, session_id)
            except LLMError as exc:
                self.cooldown.trip(provider.name)
                if self._quiet(provider.name, exc):
                    logger.info("%s is not configured nor running at its default address", provider.name, extra=context)
                    continue
                logger.warning("LLM provider failed: %s", exc, extra=context)
                errors.append(str(exc))
                continue
            self.cooldown.reset(provider.name)
            self._metrics.llm_latency.labels(provider=provider.name).observe(time.perf_counter() - started)
            logger.info("summary by %s", provider.name, extra=context)
            return SummaryOutcome(response.to_summary(), provider.name, errors)
        if not spoken:
            return SummaryOutcome(MeetingSummary(summary="No speech was recorded."), "none", errors)
        errors.append("no LLM provider could summarise the meeting (the transcript is kept)")
        return SummaryOutcome(MeetingSummary(summary=""), "none", errors)

    def describe(self) -> list[dict[str, object]]:
        """The chain in order and where each provider sends the transcript (for /health and the log)."""
        return [
            {"provider": p.name, "sends_to": p.endpoint, "leaves_machine": leaves_machine(p.endpoint)}
            for p in self.providers
        ]

    def _quiet(self, name: str, error: LLMError | None = None) -> bool:
        """An unconfigured provider that is not running: skipped without a word in `final.errors`."""
        if name not in self._unconfigured:
            return False
        return error is None or error.reason == "unreachable"

    async def aclose(self) -> None:
        """Close every provider's client."""
        for provider in self.providers:
            try:
                await provider.aclose()
            except Exception:  # closing must not stop closing the others
                logger.exception("closing LLM provider %s failed", provider.name)

    def _skip_reason(self, provider: LLMProvider, deadline: float) -> str | None:
        if remaining := self.cooldown.remaining(provider.name):
            return f"skipped, cooling down for {remaining:.0f}s after failing recently"
        if provider.context_chars is not None and time.monotonic() >= deadline:
            return f"skipped, the {self._deadline:g}s summary deadline had passed"
        return None

    async def _summarize_with(
        self, provider: LLMProvider, segments: list[Segment], title: str | None, deadline: float, session_id: str
    ) -> LLMResponseModel:
        chunks = [segments] if provider.context_chars is None else chunk_segments(segments, provider.context_chars)
        parts = []
        for number, chunk in enumerate(chunks, start=1):
            request = LLMRequest(
                system=SYSTEM_PROMPT,
                prompt=build_prompt(chunk, title, (number, len(chunks))),
                json_schema=RESPONSE_SCHEMA,
                segments=tuple(chunk),
                title=title,
                timeout=self._timeout,
            )
            parts.append(await self._validated(provider, request, deadline, session_id))
        return parts[0] if len(parts) == 1 else merge_responses(parts, chunks)

    async def _validated(
        self, provider: LLMProvider, request: LLMRequest, deadline: float, session_id: str
    ) -> LLMResponseModel:
        raw = await self._with_retries(provider, request, deadline)
        try:
            return parse_response(provider.name, raw)
        except MalformedLLMOutput as first:
            self._count(provider.name, "malformed")
            logger.info(
                "malformed answer, asking for a repair: %s",
                first,
                extra={"provider": provider.name, "session_id": session_id},
            )
            problem = str(first).removeprefix(f"{provider.name}: ")
            text = raw if isinstance(raw, str) else str(raw)
            repaired = await self._with_retries(
                provider, replace(request, prompt=repair_prompt(request.prompt, text, problem)), deadline
            )
            try:
                return parse_response(provider.name, repaired)
            except MalformedLLMOutput as exc:
                self._count(provider.name, "malformed")
                detail = str(exc).removeprefix(f"{provider.name}: ")
                raise MalformedLLMOutput(
                    provider.name, f"malformed answer, repair failed too: {detail}", reason="malformed"
                ) from exc

    async def _with_retries(self, provider: LLMProvider, request: LLMRequest, deadline: float) -> str | dict:
        name = provider.name
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0 and provider.context_chars is not None:
                raise TransientLLMError(name, f"the {self._deadline:g}s summary deadline passed", reason="deadline")
            budget = min(request.timeout, remaining) if provider.context_chars is not None else request.timeout
            try:
                async with asyncio.timeout(budget + _GRACE_SECONDS):  # the SDK's own timeout should fire first
                    return await provider.complete(replace(request, timeout=budget))
            except TimeoutError:
                error: TransientLLMError = TransientLLMError(name, f"timed out after {budget:.1f}s", reason="timeout")
            except TransientLLMError as exc:
                error = exc
            except (PermanentLLMError, MalformedLLMOutput) as exc:
                self._count(name, exc.reason)
                raise
            except Exception as exc:  # an adapter bug must cost one provider, never the summary
                logger.exception("LLM provider %s raised an untranslated error", name, extra={"provider": name})
                self._count(name, "unexpected")
                raise PermanentLLMError(name, f"unexpected error ({type(exc).__name__})", reason="unexpected") from exc
            self._count(name, error.reason)
            if error.reason == "unreachable" or attempt >= self._policy.max_attempts:
                raise _gave_up(name, error, attempt) from error
            delay = self._policy.delay(attempt, error.retry_after)
            if time.monotonic() + delay >= deadline:
                raise _gave_up(name, error, attempt, "waiting longer would pass the summary deadline") from error
            logger.info("retrying %s in %.2fs after: %s", name, delay, error, extra={"provider": name})
            await asyncio.sleep(delay)

    def _count(self, provider: str, reason: str) -> None:
        self._metrics.llm_failures.labels(provider=provider, reason=reason).inc()


def _gave_up(name: str, error: TransientLLMError, attempts: int, why: str = "") -> TransientLLMError:
    message = str(error).removeprefix(f"{name}: ")
    tail = why or (f"gave up after {attempts} attempts" if attempts > 1 else "")
    return TransientLLMError(name, f"{message} ({tail})" if tail else message, reason=error.reason)


def build_llm_service(settings: Settings, metrics: Metrics) -> LLMService:
    """The chain from settings: providers without keys are skipped with one log line each."""
    unconfigured = frozenset() if settings.vllm_configured else frozenset({"vllm"})
    service = LLMService(
        build_providers(settings),
        metrics,
        policy=RetryPolicy(max_attempts=settings.llm_max_retries, backoff_seconds=settings.llm_backoff_seconds),
        cooldown=Cooldown(settings.llm_cooldown_seconds),
        timeout_seconds=settings.llm_timeout_seconds,
        deadline_seconds=settings.llm_deadline_seconds,
        unconfigured=unconfigured,
    )
    logger.info("LLM provider chain: %s", describe_chain(service.describe()))
    return service
