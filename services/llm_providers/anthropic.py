"""Anthropic Claude through the official `anthropic` SDK.

Structured output uses tool use: one tool whose `input_schema` is the summary schema, forced
with `tool_choice`, so the answer arrives as the tool call's already-decoded `input`.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from services.errors import MalformedLLMOutput
from services.llm_providers.base import LLMRequest, sdk_error, status_error
from services.settings import Settings

TOOL_NAME = "record_meeting_summary"


class AnthropicProvider:
    """Claude messages with a forced tool call carrying the summary."""

    name = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic, model: str, *, context_chars: int | None = None) -> None:
        self.context_chars = context_chars
        self.endpoint = str(client.base_url)
        self._client = client
        self._model = model

    async def complete(self, request: LLMRequest) -> dict[str, Any] | str:
        """One messages call; returns the tool input (or the text, for the repair step to judge)."""
        try:
            message = await self._client.messages.create(
                model=self._model,
                max_tokens=request.max_output_tokens,
                system=request.system,
                messages=[{"role": "user", "content": request.prompt}],
                tools=[
                    {
                        "name": TOOL_NAME,
                        "description": "Record the structured summary of the meeting transcript.",
                        "input_schema": request.json_schema,
                    }
                ],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                timeout=request.timeout,
            )
        except anthropic.APIStatusError as exc:
            raise status_error(self.name, exc.status_code, exc.message, exc.response.headers) from exc
        except anthropic.APIError as exc:
            raise sdk_error(
                self.name, exc, timeout=anthropic.APITimeoutError, connection=anthropic.APIConnectionError
            ) from exc
        except json.JSONDecodeError as exc:
            raise MalformedLLMOutput(self.name, "response body was not JSON", reason="malformed") from exc
        for block in message.content:
            if block.type == "tool_use" and block.name == TOOL_NAME:
                return block.input if isinstance(block.input, dict) else json.dumps(block.input)
        texts = [block.text for block in message.content if block.type == "text"]
        if texts:
            return "\n".join(texts)
        raise MalformedLLMOutput(self.name, "answer had neither a tool call nor text", reason="malformed")

    async def aclose(self) -> None:
        await self._client.close()


def build_anthropic(settings: Settings) -> AnthropicProvider | None:
    """None when ANTHROPIC_API_KEY is not set."""
    if settings.anthropic_api_key is None:
        return None
    client = anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url or "https://api.anthropic.com",
        max_retries=0,
        timeout=settings.llm_timeout_seconds,
    )
    return AnthropicProvider(client, settings.anthropic_model_id, context_chars=settings.llm_context_chars)
