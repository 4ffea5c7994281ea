"""Test helpers for the LLM chain: settings that never read real keys, a valid answer."""

from __future__ import annotations

import json
from typing import Any

from services.settings import Settings

_NO_KEYS: dict[str, Any] = {
    "vllm_api_key": None,
    "vllm_model_id": "test-model",  # no GET /v1/models discovery unless a test asks for it
    "xai_api_key": None,
    "openai_api_key": None,
    "openai_base_url": None,
    "azure_openai_api_key": None,
    "azure_openai_endpoint": None,
    "azure_openai_deployment": None,
    "anthropic_api_key": None,
    "anthropic_base_url": None,
    "google_gemini_api_key": None,
    "google_gemini_base_url": None,
    "meeting_slack_webhook_url": None,
    "meeting_log_path": None,
    "tts_enabled": False,
}


def make_settings(**overrides: Any) -> Settings:
    """Settings from explicit values only (no .env, no keys from the developer's environment)."""
    values = {**_NO_KEYS, "llm_backoff_seconds": 0.01, "llm_timeout_seconds": 5.0, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def answer(summary: str = "The team planned the release.", **extra: Any) -> dict[str, Any]:
    """A valid `LLMResponseModel` payload."""
    body: dict[str, Any] = {
        "summary": summary,
        "action_items": [{"text": "Update the release notes", "owner": "Carol", "due": "Thursday", "time": 40.2}],
        "decisions": ["Go with blue-green deploys"],
        "key_topics": ["release pipeline"],
        "open_questions": [],
    }
    body.update(extra)
    return body


def answer_json(summary: str = "The team planned the release.", **extra: Any) -> str:
    return json.dumps(answer(summary, **extra))
