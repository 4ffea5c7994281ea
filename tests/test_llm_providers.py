"""Each adapter through its real SDK against a loopback server speaking that provider's wire format."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.errors import MalformedLLMOutput, PermanentLLMError, TransientLLMError
from services.llm_providers.anthropic import TOOL_NAME, build_anthropic
from services.llm_providers.base import LLMProvider, LLMRequest, parse_retry_after
from services.llm_providers.gemini import build_gemini
from services.llm_providers.openai_compat import build_azure, build_openai, build_vllm, build_xai
from services.llm_providers.registry import build_providers
from services.llm_providers.schema import RESPONSE_SCHEMA
from services.settings import Settings
from tests.fakes.llm import answer, answer_json, make_settings
from tests.fakes.provider_server import (
    FakeServer,
    Reply,
    anthropic_text,
    anthropic_tool_use,
    error_body,
    fake_server,
    gemini_content,
    openai_chat,
)

__all__ = ["fake_server"]  # the fixture, re-exported for pytest

REQUEST = LLMRequest(
    system="You summarise.", prompt="[0.0s] SPEAKER_1: hello", json_schema=RESPONSE_SCHEMA, timeout=5.0
)


def _vllm(url: str) -> Settings:
    return make_settings(vllm_base_url=url)


def _xai(url: str) -> Settings:
    return make_settings(xai_api_key="xai-secret", xai_base_url=f"{url}/v1")


def _openai(url: str) -> Settings:
    return make_settings(openai_api_key="sk-secret", openai_base_url=f"{url}/v1")


def _azure(url: str) -> Settings:
    return make_settings(azure_openai_api_key="az-secret", azure_openai_endpoint=url, azure_openai_deployment="summ")


def _anthropic(url: str) -> Settings:
    return make_settings(anthropic_api_key="ant-secret", anthropic_base_url=url)


def _gemini(url: str) -> Settings:
    return make_settings(google_gemini_api_key="gem-secret", google_gemini_base_url=url)


# name -> (factory, settings for a base URL, body whose answer is `answer()`, error body)
PROVIDERS: dict[str, tuple[Callable[[Settings], Any], Callable[[str], Settings], Callable[[], Any]]] = {
    "vllm": (build_vllm, _vllm, lambda: openai_chat(answer_json())),
    "xai": (build_xai, _xai, lambda: openai_chat(answer_json())),
    "openai": (build_openai, _openai, lambda: openai_chat(answer_json())),
    "azure": (build_azure, _azure, lambda: openai_chat(answer_json())),
    "anthropic": (build_anthropic, _anthropic, lambda: anthropic_tool_use(answer())),
    "gemini": (build_gemini, _gemini, lambda: gemini_content(answer_json())),
}


@pytest.fixture(params=sorted(PROVIDERS))
async def adapter(request: pytest.FixtureRequest, fake_server: FakeServer) -> AsyncIterator[LLMProvider]:
    factory, settings_for, _ = PROVIDERS[request.param]
    provider = factory(settings_for(fake_server.url))
    yield provider
    await provider.aclose()


def _ok_body(name: str) -> Any:
    return PROVIDERS[name][2]()


async def test_every_adapter_returns_the_structured_answer(adapter: LLMProvider, fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, _ok_body(adapter.name)))
    raw = await adapter.complete(REQUEST)
    assert (raw if isinstance(raw, dict) else __import__("json").loads(raw)) == answer()
    assert len(fake_server.requests) == 1


async def test_openai_compatible_request_shape(fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, openai_chat(answer_json())))
    provider = build_openai(_openai(fake_server.url))
    assert provider is not None
    await provider.complete(REQUEST)
    await provider.aclose()
    sent = fake_server.requests[0]
    body = sent.json()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-secret"
    assert sent.headers.get("x-stainless-retry-count") == "0"
    assert body["model"] == "gpt-4o-mini"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == RESPONSE_SCHEMA
    assert body["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize(
    ("base", "endpoint", "path"),
    [
        ("/", "/v1/chat/completions", "/v1/chat/completions"),
        ("/v1", "/v1/chat/completions", "/v1/chat/completions"),  # with or without /v1: never /v1/v1
        ("/v1/", "/v1/chat/completions", "/v1/chat/completions"),
        ("", "/openai/v1/chat/completions", "/openai/v1/chat/completions"),
        ("/openai/v1", "/v1/chat/completions", "/openai/v1/chat/completions"),
    ],
)
async def test_vllm_endpoint_and_placeholder_key(fake_server: FakeServer, base: str, endpoint: str, path: str) -> None:
    fake_server.script(Reply(200, openai_chat(answer_json())))
    settings = make_settings(vllm_base_url=fake_server.url + base, vllm_completions_endpoint=endpoint)
    provider = build_vllm(settings)
    await provider.complete(REQUEST)
    await provider.aclose()
    assert fake_server.paths() == [path]
    assert fake_server.requests[0].headers["authorization"] == "Bearer EMPTY"
    assert fake_server.requests[0].json()["model"] == "test-model"


def _model_list(*ids: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "vllm"} for i in ids]}


async def test_vllm_without_a_model_id_uses_the_served_model(fake_server: FakeServer) -> None:
    """A stock `vllm serve Qwen/...` serves its hub id: with VLLM_MODEL_ID unset, ask GET /v1/models once."""
    fake_server.script(
        Reply(200, _model_list("Qwen/Qwen2.5-1.5B-Instruct", "other")),
        Reply(200, openai_chat(answer_json())),
        Reply(200, openai_chat(answer_json())),
    )
    provider = build_vllm(make_settings(vllm_base_url=fake_server.url + "/v1", vllm_model_id=""))
    await provider.complete(REQUEST)
    await provider.complete(REQUEST)
    await provider.aclose()
    assert fake_server.paths() == ["/v1/models", "/v1/chat/completions", "/v1/chat/completions"]
    assert [r.json()["model"] for r in fake_server.requests[1:]] == ["Qwen/Qwen2.5-1.5B-Instruct"] * 2


async def test_vllm_model_discovery_failures_are_mapped(fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, _model_list()), Reply(503, error_body("loading")))
    provider = build_vllm(make_settings(vllm_base_url=fake_server.url, vllm_model_id=""))
    with pytest.raises(PermanentLLMError, match="lists no models"):
        await provider.complete(REQUEST)
    with pytest.raises(TransientLLMError) as unavailable:
        await provider.complete(REQUEST)
    await provider.aclose()
    assert unavailable.value.reason == "server_error"


async def test_azure_uses_deployments_path_and_api_key_header(fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, openai_chat(answer_json())))
    provider = build_azure(_azure(fake_server.url))
    assert provider is not None
    await provider.complete(REQUEST)
    await provider.aclose()
    sent = fake_server.requests[0]
    assert sent.path == "/openai/deployments/summ/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "az-secret"


async def test_anthropic_forces_the_summary_tool(fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, anthropic_tool_use(answer())), Reply(200, anthropic_text("plain words")))
    provider = build_anthropic(_anthropic(fake_server.url))
    assert provider is not None
    assert await provider.complete(REQUEST) == answer()
    assert await provider.complete(REQUEST) == "plain words"  # left for the service to judge and repair
    await provider.aclose()
    body = fake_server.requests[0].json()
    assert fake_server.requests[0].path == "/v1/messages"
    assert body["tools"][0]["name"] == TOOL_NAME and body["tools"][0]["input_schema"] == RESPONSE_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert body["system"] == "You summarise." and body["model"] == "claude-haiku-4-5"


async def test_gemini_sends_a_response_schema(fake_server: FakeServer) -> None:
    fake_server.script(Reply(200, gemini_content(answer_json())))
    provider = build_gemini(_gemini(fake_server.url))
    assert provider is not None
    await provider.complete(REQUEST)
    await provider.aclose()
    sent = fake_server.requests[0]
    config = sent.json()["generationConfig"]
    assert sent.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == "gem-secret"
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == RESPONSE_SCHEMA
    assert sent.json()["systemInstruction"]["parts"][0]["text"] == "You summarise."


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (400, PermanentLLMError, "bad_request"),
        (401, PermanentLLMError, "auth"),
        (403, PermanentLLMError, "auth"),
        (404, PermanentLLMError, "not_found"),
        (500, TransientLLMError, "server_error"),
        (503, TransientLLMError, "server_error"),
    ],
)
async def test_status_codes_are_classified_once_without_sdk_retries(
    adapter: LLMProvider, fake_server: FakeServer, status: int, kind: type[Exception], reason: str
) -> None:
    fake_server.default = Reply(status, error_body("nope"))
    with pytest.raises(kind) as caught:
        await adapter.complete(REQUEST)
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert len(fake_server.requests) == 1, "SDK retries must be off"
    assert "secret" not in str(caught.value)


async def test_429_carries_retry_after(adapter: LLMProvider, fake_server: FakeServer) -> None:
    fake_server.default = Reply(429, error_body("slow down"), headers={"Retry-After": "2"})
    with pytest.raises(TransientLLMError) as caught:
        await adapter.complete(REQUEST)
    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 2.0
    assert len(fake_server.requests) == 1


async def test_slow_answer_is_a_timeout(adapter: LLMProvider, fake_server: FakeServer) -> None:
    fake_server.default = Reply(200, _ok_body(adapter.name), delay=2.0)
    started = time.perf_counter()
    with pytest.raises(TransientLLMError) as caught:
        await adapter.complete(LLMRequest("s", "p", RESPONSE_SCHEMA, timeout=0.3))
    assert caught.value.reason == "timeout"
    assert time.perf_counter() - started < 1.5


async def test_garbage_body_is_malformed(adapter: LLMProvider, fake_server: FakeServer) -> None:
    fake_server.default = Reply(200, b"<html>gateway</html>", headers={"Content-Type": "application/json"})
    with pytest.raises(MalformedLLMOutput):
        await adapter.complete(REQUEST)


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_connection_refused_is_unreachable_and_fast(name: str) -> None:
    factory, settings_for, _ = PROVIDERS[name]
    provider = factory(settings_for(_closed_port()))
    started = time.perf_counter()
    with pytest.raises(TransientLLMError) as caught:
        await provider.complete(REQUEST)
    await provider.aclose()
    assert caught.value.reason == "unreachable"
    assert time.perf_counter() - started < 1.0


async def test_missing_keys_skip_providers_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="services.llm_providers.registry"):
        providers = build_providers(make_settings())
    assert [p.name for p in providers] == ["vllm", "offline"]
    for provider in providers:
        await provider.aclose()
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 5 and any("ANTHROPIC_API_KEY" in line for line in skipped)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


async def test_order_follows_settings(fake_server: FakeServer) -> None:
    settings = make_settings(
        llm_provider_order="gemini,anthropic,offline",
        anthropic_api_key="a",
        google_gemini_api_key="g",
        anthropic_base_url=fake_server.url,
        google_gemini_base_url=fake_server.url,
    )
    providers = build_providers(settings)
    assert [p.name for p in providers] == ["gemini", "anthropic", "offline"]
    for provider in providers:
        await provider.aclose()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
