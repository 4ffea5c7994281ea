"""An in-memory provider for tests of the chain and of components that use `LLMService`.

`ScriptedProvider("openai", [TransientLLMError(...), '{"summary": ...}'])` answers each call
with the next scripted item: an exception is raised, anything else is returned; a callable is
called with the request. `calls` records every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from services.llm_providers.base import LLMRequest

Scripted = str | dict[str, Any] | BaseException | Callable[[LLMRequest], Any]


class ScriptedProvider:
    """Answers from a script; an exhausted script repeats its last item."""

    def __init__(
        self,
        name: str,
        script: Iterable[Scripted],
        *,
        context_chars: int | None = 100_000,
        delay: float = 0.0,
        endpoint: str | None = None,
    ) -> None:
        self.name = name
        self.context_chars = context_chars
        self.endpoint = endpoint
        self.calls: list[LLMRequest] = []
        self.closed = False
        self._script = list(script)
        self._delay = delay

    async def complete(self, request: LLMRequest) -> str | dict[str, Any]:
        self.calls.append(request)
        if self._delay:
            await asyncio.sleep(self._delay)
        item = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(request)  # type: ignore[no-any-return]
        return item

    async def aclose(self) -> None:
        self.closed = True
