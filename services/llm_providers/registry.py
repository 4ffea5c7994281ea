"""Build the provider chain from settings, in `LLM_PROVIDER_ORDER`.

Adding a provider is one adapter file plus one line in `_FACTORIES` (and its name in
`services.settings.DEFAULT_PROVIDER_ORDER`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.llm_providers.anthropic import build_anthropic
from services.llm_providers.base import LLMProvider
from services.llm_providers.gemini import build_gemini
from services.llm_providers.offline import OfflineProvider
from services.llm_providers.openai_compat import build_azure, build_openai, build_vllm, build_xai
from services.settings import Settings

logger = logging.getLogger(__name__)

_FACTORIES: dict[str, Callable[[Settings], LLMProvider | None]] = {
    "vllm": build_vllm,
    "xai": build_xai,
    "openai": build_openai,
    "azure": build_azure,
    "anthropic": build_anthropic,
    "gemini": build_gemini,
    "offline": lambda _settings: OfflineProvider(),
}

_MISSING = {
    "xai": "XAI_API_KEY",
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GOOGLE_GEMINI_API_KEY",
}


def build_providers(settings: Settings) -> list[LLMProvider]:
    """One adapter per configured provider; those without credentials are skipped with a log line."""
    providers: list[LLMProvider] = []
    for name in settings.provider_order:
        provider = _FACTORIES[name](settings)
        if provider is None:
            logger.info("LLM provider %s skipped: %s not set", name, _MISSING.get(name, "not configured"))
            continue
        providers.append(provider)
    logger.info("LLM provider chain: %s", ", ".join(p.name for p in providers) or "(empty)")
    return providers
