"""A scriptable HTTP server on loopback that speaks whatever wire format a test scripts.

One `FakeServer` stands in for an LLM provider (OpenAI chat completions, Azure deployments,
Anthropic messages, Gemini generateContent) or a Slack webhook: tests queue `Reply`s (status,
headers, body, delay), the real SDK talks to `server.url`, and `server.requests` records what
the SDK sent. Stdlib only (`http.server` in a daemon thread), so it adds no dependency.

When the queue is empty the server answers with `server.default` (a `Reply`, or a callable
that builds one from the request); with no default it answers 500.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted answer: `body` may be a dict/list (sent as JSON), str or bytes."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


Responder = Reply | Callable[[RecordedRequest], Reply]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with a free port; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default: Responder | None = None
        self._queue: deque[Responder] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Responder) -> None:
        """Queue replies, answered in order, one per request."""
        with self._lock:
            self._queue.extend(replies)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            responder = self._queue.popleft() if self._queue else self.default
        if responder is None:
            return Reply(500, {"error": {"message": "no reply scripted"}})
        return responder(request) if callable(responder) else responder

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            reply = server._next_reply(request)
            if reply.delay:
                server._wait(reply.delay)
            payload, content_type = reply.encoded()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A started `FakeServer`, stopped after the test."""
    with FakeServer() as server:
        yield server


# --- wire-format helpers ------------------------------------------------------------------


def openai_chat(content: str, *, model: str = "test-model") -> dict[str, Any]:
    """An OpenAI chat.completion body whose message content is `content`."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def anthropic_tool_use(tool_input: dict[str, Any], *, name: str = "record_meeting_summary") -> dict[str, Any]:
    """An Anthropic messages body with one tool_use block carrying `tool_input`."""
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "tool_use", "id": "toolu_test", "name": name, "input": tool_input}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }


def anthropic_text(text: str) -> dict[str, Any]:
    """An Anthropic messages body with one text block."""
    body = anthropic_tool_use({})
    body["content"] = [{"type": "text", "text": text}]
    body["stop_reason"] = "end_turn"
    return body


def gemini_content(text: str) -> dict[str, Any]:
    """A Gemini generateContent body whose first candidate's text is `text`."""
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20},
        "modelVersion": "gemini-test",
    }


def error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "error", "code": None}}
