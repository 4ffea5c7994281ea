"""The log format and the redaction, record by record (the whole server is in test_start_commands)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from uvicorn.logging import AccessFormatter

from services.auth import token_subprotocol
from services.logging_setup import LOG_FORMAT, ContextFormatter, install_redaction, redact


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger printing through `ContextFormatter` into a string."""
    install_redaction(["literal-secret-value"])
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(ContextFormatter(LOG_FORMAT))
    logger = logging.getLogger("test_logging_setup")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def test_extra_context_is_printed(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    logger.warning("LLM provider failed: %s", "timeout", extra={"provider": "vllm", "session_id": "abc123"})
    assert buffer.getvalue().rstrip().endswith("LLM provider failed: timeout [provider=vllm session_id=abc123]")


def test_plain_records_get_no_brackets(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    logger.info("ready")
    assert buffer.getvalue().rstrip().endswith("test_logging_setup: ready")


@pytest.mark.parametrize(
    "line",
    [
        "GET /ws?token=abc%2Fdef HTTP/1.1",
        "GET /?lang=en&api_key=abc123 HTTP/1.1",
        "authorization: Bearer abc.def-ghi",
        f"sec-websocket-protocol: meeting-assistant, {token_subprotocol('abc/def+g')}",
        "the key is literal-secret-value",
    ],
)
def test_credentials_are_redacted(line: str) -> None:
    redacted = redact(line)
    assert "[REDACTED]" in redacted
    assert not any(secret in redacted for secret in ("abc", "literal-secret-value"))


def test_ordinary_text_is_left_alone() -> None:
    line = 'GET /static/app.js?v=3 HTTP/1.1 "the token was refused"'
    assert redact(line) == line


def test_secrets_in_extra_context_and_tracebacks_are_redacted(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    try:
        raise ValueError("bad url http://h/ws?token=leaked")
    except ValueError:
        logger.exception("failed", extra={"url": "http://h/?key=leaked2"})
    output = buffer.getvalue()
    assert "leaked" not in output and "[url=http://h/?key=[REDACTED]]" in output
    assert "ValueError: bad url http://h/ws?token=[REDACTED]" in output


def test_uvicorn_access_lines_stay_formattable() -> None:
    """The access formatter unpacks the args tuple: redaction must keep its shape and types."""
    install_redaction()
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/?token=abc", "1.1", 200),
        None,
    )
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '127.0.0.1:5000 - "GET /?token=[REDACTED] HTTP/1.1" 200 OK'
