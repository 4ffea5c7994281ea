"""Logging for both start commands: one format that shows `extra=` context, secrets redacted everywhere.

`configure_logging(settings)` runs when `app.py` is imported, which is after uvicorn has set up
its own loggers under `uvicorn app:app` and before it does under `python app.py`; both end the
same way:

* the root logger gets one stderr handler whose format appends the structured context passed
  with `extra=` (`provider=vllm session_id=...`), which the plain `%(message)s` format dropped;
* `LOG_LEVEL` sets the root level, and uvicorn's loggers too when it is set explicitly (so
  `uvicorn app:app --log-level debug` still works when `LOG_LEVEL` is unset);
* a log-record factory, which sees every record of every logger whatever handler or formatter
  prints it (uvicorn's access and error loggers included, and however often uvicorn reapplies
  its `dictConfig`), redacts credentials: `token=`/`key=`-style query parameters, `Bearer`
  credentials, the `/ws` token subprotocol and the literal value of every secret setting.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from services.auth import TOKEN_SUBPROTOCOL_PREFIX
from services.settings import Settings

REDACTED = "[REDACTED]"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_SECRET_PARAMS = r"token|access_token|api_key|apikey|api-key|key|password|passwd|secret|signature|sig|code"
_NOT_DONE = r"(?!\[REDACTED\])"  # redacting twice must not eat what follows
_PATTERNS = (
    re.compile(rf"(?i)([?&;](?:{_SECRET_PARAMS})=){_NOT_DONE}[^&;\s\"'#]*"),
    re.compile(rf"(?i)(\bbearer\s+){_NOT_DONE}[^\s\"',;]+"),
    re.compile(rf"({re.escape(TOKEN_SUBPROTOCOL_PREFIX)}){_NOT_DONE}[A-Za-z0-9_\-=]*"),
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message, not context
}
_MIN_LITERAL = 4  # shorter "secrets" would redact ordinary words
_PLAIN = logging.Formatter()


class _Redactor:
    """The secrets to scrub, and the record factory that scrubs them."""

    def __init__(self) -> None:
        self.literals: set[str] = set()
        self.installed = False

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if len(secret) < _MIN_LITERAL:
                continue
            encoded = base64.urlsafe_b64encode(secret.encode()).decode()
            self.literals.update({secret, quote(secret, safe=""), encoded, encoded.rstrip("=")})

    def redact(self, text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(rf"\g<1>{REDACTED}", text)
        for literal in sorted(self.literals, key=len, reverse=True):
            if literal in text:
                text = text.replace(literal, REDACTED)
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters print a cached exc_text when there is one: fill it, redacted, for all of them.
            record.exc_text = self.redact(_PLAIN.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._value(value) for key, value in record.args.items()}

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, int | float | bool):
            return value  # keeps %d and %f formats working
        text = str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted

    def install(self) -> None:
        if self.installed:
            return
        base_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base_factory(*args, **kwargs)
            self.scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        self.installed = True


_redactor = _Redactor()


def redact(text: str) -> str:
    """`text` with every known kind of credential replaced by `[REDACTED]`."""
    return _redactor.redact(text)


def install_redaction(secrets: Iterable[str] = ()) -> None:
    """Redact credentials (and these literal `secrets`) from every log record from now on."""
    _redactor.add(secrets)
    _redactor.install()


class ContextFormatter(logging.Formatter):
    """The plain format plus `[key=value ...]` for context passed with `extra=`; output redacted."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        context = " ".join(
            f"{key}={redact(str(value))}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        return f"{line} [{context}]" if context else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))  # tracebacks and `extra=` values too


def secret_values(settings: Settings) -> list[str]:
    """The value of every `SecretStr` setting that is set."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [value.get_secret_value() for value in values if isinstance(value, SecretStr)]


def configure_logging(settings: Settings) -> None:
    """Set up logging for the process (idempotent): format, levels, redaction."""
    install_redaction(secret_values(settings))
    root = logging.getLogger()
    if not any(getattr(handler, "_meeting_assistant", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ContextFormatter(LOG_FORMAT))
        handler._meeting_assistant = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    if "log_level" in settings.model_fields_set:
        for name in UVICORN_LOGGERS:
            logging.getLogger(name).setLevel(settings.log_level)
