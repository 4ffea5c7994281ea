"""LLM provider adapters: one file per provider behind the `LLMProvider` protocol in `base`."""

from __future__ import annotations

from services.llm_providers.base import LLMProvider, LLMRequest

__all__ = ["LLMProvider", "LLMRequest"]
