"""Build the provider chain from settings, in `LLM_PROVIDER_ORDER`.

Adding a provider is one adapter file plus one line in `_FACTORIES` (and its name in
`services.settings.DEFAULT_PROVIDER_ORDER`). `describe_chain` is the start-up line saying which
providers are in the chain and where each sends the transcript.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

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
    """One adapter per configured provider; those without credentials are skipped with a log line.

    The offline summariser ends the chain even when `LLM_PROVIDER_ORDER` leaves it out, unless
    `LLM_OFFLINE_FALLBACK=false`: a meeting should never end without a summary by accident.
    """
    providers: list[LLMProvider] = []
    for name in settings.provider_order:
        provider = _FACTORIES[name](settings)
        if provider is None:
            logger.info("LLM provider %s skipped: %s not set", name, _MISSING.get(name, "not configured"))
            continue
        providers.append(provider)
    if settings.llm_offline_fallback and "offline" not in settings.provider_order:
        providers.append(OfflineProvider())
    return providers


def leaves_machine(endpoint: str | None) -> bool:
    """Whether a request to `endpoint` leaves this machine (anything but loopback does)."""
    if endpoint is None:
        return False
    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name other than localhost: assume it resolves elsewhere


def describe_chain(chain: list[dict[str, object]]) -> str:
    """One line: who is in the chain and where the transcript goes."""
    parts = []
    for link in chain:
        target = link["sends_to"] or "in this process"
        remote = ", transcripts leave this machine" if link["leaves_machine"] else ""
        parts.append(f"{link['provider']} ({target}{remote})")
    return " -> ".join(parts) or "(empty: no summaries)"
