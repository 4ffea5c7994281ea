"""OpenAI-compatible chat completions through the official `openai` SDK.

One adapter serves four providers: vLLM (its OpenAI-compatible server), xAI Grok, OpenAI and
Azure OpenAI (`AsyncAzureOpenAI`, deployments path + api-version). Structured output uses
`response_format={"type": "json_schema", ...}` (vLLM maps it to guided decoding). SDK retries
are off (`max_retries=0`): the chain in `services.llm_service` is the only retry loop.

vLLM serves a model under the name it was started with (`vllm serve <hub id or path>`, unless
`--served-model-name` says otherwise); with `VLLM_MODEL_ID` empty the adapter asks the server
(`GET /v1/models`) once and uses the first model it lists.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from services.errors import MalformedLLMOutput, PermanentLLMError, TransientLLMError
from services.llm_providers.base import LLMRequest, sdk_error, status_error
from services.settings import Settings

logger = logging.getLogger(__name__)

_CHAT_PATH = "/chat/completions"


class OpenAICompatProvider:
    """Chat completions with a JSON-schema `response_format` on any OpenAI-compatible server."""

    def __init__(
        self, name: str, client: openai.AsyncOpenAI, model: str | None, *, context_chars: int | None = None
    ) -> None:
        """`model=None` asks the server for its model list on the first call (vLLM)."""
        self.name = name
        self.context_chars = context_chars
        self.endpoint = str(client.base_url)
        self._client = client
        self._model = model

    async def complete(self, request: LLMRequest) -> str:
        """One chat completion; returns the message content (JSON text)."""
        try:
            response = await self._client.chat.completions.create(
                model=self._model or await self._served_model(request.timeout),
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.prompt},
                ],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": True},
                },
                temperature=0.2,
                max_tokens=request.max_output_tokens,
                timeout=request.timeout,
            )
        except openai.APIStatusError as exc:
            raise status_error(self.name, exc.status_code, exc.message, exc.response.headers) from exc
        except openai.APIError as exc:
            raise sdk_error(
                self.name, exc, timeout=openai.APITimeoutError, connection=openai.APIConnectionError
            ) from exc
        except json.JSONDecodeError as exc:
            raise MalformedLLMOutput(self.name, "response body was not JSON", reason="malformed") from exc
        if not isinstance(response, ChatCompletion):  # a gateway answered 200 with text or HTML
            raise MalformedLLMOutput(self.name, "response was not a chat completion", reason="malformed")
        if not response.choices:
            raise TransientLLMError(self.name, "answer had no choices", reason="empty")
        return response.choices[0].message.content or ""

    async def _served_model(self, seconds: float) -> str:
        """The first model the server lists (cached); errors propagate to `complete`'s mapping."""
        page = await self._client.models.list(timeout=seconds)
        if not page.data:
            raise PermanentLLMError(self.name, "the server lists no models: set the model id", reason="not_found")
        self._model = page.data[0].id
        logger.info("%s: using the served model %s", self.name, self._model, extra={"provider": self.name})
        return self._model

    async def aclose(self) -> None:
        await self._client.close()


def _common(settings: Settings) -> dict[str, Any]:
    return {"max_retries": 0, "timeout": settings.llm_timeout_seconds}


def vllm_base_url(base_url: str, endpoint: str) -> str:
    """The SDK base URL such that `<base>/chat/completions` is VLLM_BASE_URL + VLLM_COMPLETIONS_ENDPOINT.

    Path segments the base URL already ends with are not repeated, so `http://host:8001` and
    `http://host:8001/v1` both give `http://host:8001/v1` with the default endpoint.
    """
    endpoint = "/" + endpoint.strip("/")
    if not endpoint.endswith(_CHAT_PATH):
        logger.warning(
            "VLLM_COMPLETIONS_ENDPOINT %r does not end with %s; using %s%s", endpoint, _CHAT_PATH, endpoint, _CHAT_PATH
        )
    else:
        endpoint = endpoint[: -len(_CHAT_PATH)]
    base = base_url.rstrip("/")
    base_parts = base.split("/")[3:]  # the path segments after scheme://host
    parts = [part for part in endpoint.split("/") if part]
    overlap = next(
        (n for n in range(min(len(base_parts), len(parts)), 0, -1) if base_parts[-n:] == parts[:n]),
        0,
    )
    return base + "".join(f"/{part}" for part in parts[overlap:])


def build_vllm(settings: Settings) -> OpenAICompatProvider:
    """vLLM needs no key (a placeholder is sent unless VLLM_API_KEY is set)."""
    key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else "EMPTY"
    client = openai.AsyncOpenAI(
        api_key=key,
        base_url=vllm_base_url(settings.vllm_base_url, settings.vllm_completions_endpoint),
        **_common(settings),
    )
    model = settings.vllm_model_id or None
    return OpenAICompatProvider("vllm", client, model, context_chars=settings.llm_context_chars)


def build_xai(settings: Settings) -> OpenAICompatProvider | None:
    if settings.xai_api_key is None:
        return None
    client = openai.AsyncOpenAI(
        api_key=settings.xai_api_key.get_secret_value(), base_url=settings.xai_base_url, **_common(settings)
    )
    return OpenAICompatProvider("xai", client, settings.xai_model_id, context_chars=settings.llm_context_chars)


def build_openai(settings: Settings) -> OpenAICompatProvider | None:
    if settings.openai_api_key is None:
        return None
    client = openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url or "https://api.openai.com/v1",
        **_common(settings),
    )
    return OpenAICompatProvider("openai", client, settings.openai_model_id, context_chars=settings.llm_context_chars)


def build_azure(settings: Settings) -> OpenAICompatProvider | None:
    """Azure needs a key, an endpoint and a deployment; the deployment is also the model name."""
    key, endpoint, deployment = (
        settings.azure_openai_api_key,
        settings.azure_openai_endpoint,
        settings.azure_openai_deployment,
    )
    if key is None or not endpoint or not deployment:
        return None
    client = openai.AsyncAzureOpenAI(
        api_key=key.get_secret_value(),
        azure_endpoint=endpoint,
        azure_deployment=deployment,
        api_version=settings.azure_openai_api_version,
        **_common(settings),
    )
    return OpenAICompatProvider("azure", client, deployment, context_chars=settings.llm_context_chars)
