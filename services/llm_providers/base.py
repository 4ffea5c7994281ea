"""The small interface every LLM provider adapter implements, and the shared error mapping.

An adapter turns one `LLMRequest` into the provider's raw structured answer (a JSON string,
or an already-decoded dict for tool-use APIs) and translates every SDK error, once, into the
`services.errors` tree:

    TransientLLMError  reason "timeout" | "rate_limited" | "server_error" | "connection" | "unreachable"
    PermanentLLMError  reason "bad_request" | "auth" | "not_found" | "client_error"
    MalformedLLMOutput reason "malformed" (raised by the service when validation fails)

"unreachable" (nothing listening, DNS failure) is the one transient failure the chain does
not retry: a vLLM that is not running should cost milliseconds, not a backoff ladder.
Retrying lives in `services.llm_service` only; adapters make exactly one attempt.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from services.errors import LLMError, PermanentLLMError, TransientLLMError
from services.types import Segment

try:  # the openai/anthropic SDKs of this generation run on the httpx2 fork
    import httpx2
except ImportError:  # pragma: no cover - depends on the installed SDKs
    httpx2 = None  # type: ignore[assignment]

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (httpx.ConnectError, ConnectionRefusedError)
if httpx2 is not None:
    _CONNECT_ERRORS += (httpx2.ConnectError,)
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)
if httpx2 is not None:
    _TIMEOUT_ERRORS += (httpx2.TimeoutException,)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError,)
if httpx2 is not None:
    _TRANSPORT_ERRORS += (httpx2.TransportError,)

MAX_RETRY_AFTER_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One structured-output call: prompts, the JSON schema to answer with, and the source.

    `segments` and `title` are there for providers that work on the transcript itself (the
    offline summariser); network providers only read `system`, `prompt` and the schema.
    """

    system: str
    prompt: str
    json_schema: dict[str, Any]
    schema_name: str = "meeting_summary"
    segments: Sequence[Segment] = field(default_factory=tuple)
    title: str | None = None
    timeout: float = 30.0
    max_output_tokens: int = 2048


@runtime_checkable
class LLMProvider(Protocol):
    """One LLM backend: one async method plus `aclose()`.

    `context_chars` is how much transcript one call may carry (None: no limit, e.g. offline);
    `endpoint` is where the transcript is sent (None: it stays in this process).
    """

    name: str
    context_chars: int | None
    endpoint: str | None

    async def complete(self, request: LLMRequest) -> str | dict[str, Any]:
        """Return the raw structured answer (JSON text, or a decoded object).

        Raises:
            TransientLLMError: worth retrying (timeout, 429, 5xx, connection).
            PermanentLLMError: retrying cannot help (400/401/403/404/422).
        """
        ...

    async def aclose(self) -> None:
        """Release the provider's HTTP client."""
        ...


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (delta seconds or an HTTP date), if any."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return min(max(float(millis) / 1000.0, 0.0), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def status_error(provider: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> LLMError:
    """Map an HTTP status to the error tree (the caller raises it `from` the SDK error)."""
    detail = _short(message)
    if status == 429:
        return TransientLLMError(
            provider,
            f"rate limited (HTTP 429): {detail}",
            reason="rate_limited",
            retry_after=parse_retry_after(headers),
        )
    if status == 408 or status >= 500:
        return TransientLLMError(
            provider,
            f"server error (HTTP {status}): {detail}",
            reason="server_error",
            retry_after=parse_retry_after(headers),
        )
    reason = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found"}.get(status, "client_error")
    hint = {
        401: " - check the API key",
        403: " - check the API key's permissions",
        404: " - check the model name and base URL",
    }.get(status, "")
    return PermanentLLMError(provider, f"HTTP {status}: {detail}{hint}", reason=reason)


def transport_error(provider: str, exc: BaseException) -> LLMError | None:
    """Map a transport failure (possibly wrapped by an SDK) to the error tree, or None."""
    for cause in _causes(exc):
        if isinstance(cause, _CONNECT_ERRORS):
            return TransientLLMError(provider, "server unreachable (connection refused)", reason="unreachable")
        if isinstance(cause, _TIMEOUT_ERRORS):
            return TransientLLMError(provider, "request timed out", reason="timeout")
    for cause in _causes(exc):
        if isinstance(cause, _TRANSPORT_ERRORS):
            return TransientLLMError(provider, f"connection error ({type(cause).__name__})", reason="connection")
    return None


def sdk_error(
    provider: str, exc: BaseException, *, timeout: type[BaseException], connection: type[BaseException]
) -> LLMError:
    """Map an SDK exception that carries no HTTP status: transport causes first, then the SDK's
    own `timeout` and `connection` classes (checked in that order: timeouts subclass connection
    errors in the Stainless SDKs); anything else is permanent."""
    mapped = transport_error(provider, exc)
    if mapped is not None:
        return mapped
    if isinstance(exc, timeout):
        return TransientLLMError(provider, "request timed out", reason="timeout")
    if isinstance(exc, connection):
        return TransientLLMError(provider, "connection error", reason="connection")
    return PermanentLLMError(provider, f"unexpected SDK error ({type(exc).__name__})", reason="client_error")


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _short(message: str, limit: int = 160) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
