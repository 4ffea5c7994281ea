"""Google Gemini through the maintained `google-genai` SDK (not the deprecated google-generativeai).

Structured output uses a response schema (`response_mime_type="application/json"` with
`response_json_schema`). The SDK is given its own `httpx.AsyncClient` so it never picks its
aiohttp transport (which retries connection errors by itself and warns on import), and
`HttpRetryOptions(attempts=1)` so the chain stays the only retry loop.
"""

from __future__ import annotations

import json

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from services.errors import MalformedLLMOutput
from services.llm_providers.base import LLMRequest, sdk_error, status_error
from services.settings import Settings

GEMINI_DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"


class GeminiProvider:
    """Gemini generateContent with a JSON response schema."""

    name = "gemini"

    def __init__(
        self,
        client: genai.Client,
        http_client: httpx.AsyncClient,
        model: str,
        *,
        context_chars: int | None = None,
        endpoint: str = GEMINI_DEFAULT_ENDPOINT,
    ) -> None:
        self.context_chars = context_chars
        self.endpoint = endpoint
        self._client = client
        self._http_client = http_client
        self._model = model

    async def complete(self, request: LLMRequest) -> str:
        """One generateContent call; returns the candidate text (JSON)."""
        config = types.GenerateContentConfig(
            system_instruction=request.system,
            response_mime_type="application/json",
            response_json_schema=request.json_schema,
            temperature=0.2,
            max_output_tokens=request.max_output_tokens,
            http_options=types.HttpOptions(timeout=int(request.timeout * 1000)),
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self._model, contents=request.prompt, config=config
            )
        except genai_errors.APIError as exc:
            headers = getattr(exc.response, "headers", None)
            raise status_error(self.name, int(exc.code or 500), exc.message or str(exc), headers) from exc
        except (httpx.HTTPError, OSError) as exc:
            # google-genai has no timeout/connection classes of its own: it lets httpx's and the OS's through
            raise sdk_error(self.name, exc, timeout=TimeoutError, connection=OSError) from exc
        except json.JSONDecodeError as exc:
            raise MalformedLLMOutput(self.name, "response body was not JSON", reason="malformed") from exc
        return response.text or ""

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        await self._http_client.aclose()


def build_gemini(settings: Settings) -> GeminiProvider | None:
    """None when GOOGLE_GEMINI_API_KEY is not set."""
    if settings.google_gemini_api_key is None:
        return None
    http_client = httpx.AsyncClient(timeout=settings.llm_timeout_seconds)
    options = types.HttpOptions(
        base_url=settings.google_gemini_base_url,
        timeout=int(settings.llm_timeout_seconds * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
        httpx_async_client=http_client,
    )
    client = genai.Client(api_key=settings.google_gemini_api_key.get_secret_value(), http_options=options)
    return GeminiProvider(
        client,
        http_client,
        settings.google_gemini_model_id,
        context_chars=settings.llm_context_chars,
        endpoint=settings.google_gemini_base_url or GEMINI_DEFAULT_ENDPOINT,
    )
