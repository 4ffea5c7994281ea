"""How a `/ws` client proves it knows `API_KEY`, checked on the upgrade before accept.

Three carriers are accepted:

* the subprotocol `meeting-assistant.token.<base64url(API_KEY)>` in `Sec-WebSocket-Protocol`,
  offered beside the plain `meeting-assistant`: browsers cannot set headers on a WebSocket, and
  a URL ends up in access logs, proxies and the browser history, so the page uses this one. The
  server answers with the plain `meeting-assistant`, never echoing the token;
* `Authorization: Bearer <API_KEY>` for clients that can set headers;
* `?token=<API_KEY>`, kept for existing clients (the log redaction hides it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

SUBPROTOCOL = "meeting-assistant"
TOKEN_SUBPROTOCOL_PREFIX = f"{SUBPROTOCOL}.token."


def token_subprotocol(token: str) -> str:
    """The subprotocol that carries `token` (base64url without padding: only RFC 6455 token characters)."""
    return TOKEN_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    header = headers.get("sec-websocket-protocol", "")
    return [item.strip() for item in header.split(",") if item.strip()]


def offered_tokens(query: Mapping[str, str], headers: Mapping[str, str]) -> list[str]:
    """Every token the upgrade request carries, in any of the three ways."""
    tokens = []
    for protocol in offered_subprotocols(headers):
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            encoded = protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
            try:
                tokens.append(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue  # malformed: simply not a matching token
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        tokens.append(bearer[7:].strip())
    if "token" in query:
        tokens.append(query["token"])
    return tokens


def token_accepted(expected: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """True when one of the offered tokens is `expected` (constant-time comparison)."""
    wanted = expected.encode()
    return any(hmac.compare_digest(token.encode(), wanted) for token in offered_tokens(query, headers))


def accepted_subprotocol(headers: Mapping[str, str]) -> str | None:
    """The subprotocol to answer with: the plain one when offered (a browser that offered some needs one)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(headers) else None
