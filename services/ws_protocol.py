"""uvicorn's WebSocket protocol (websockets-sansio, its default) with two of its faults mended.

- An upgrade whose request line or headers are too long: websockets answers it (414/431) into
  its send buffer and raises no event, and uvicorn never flushes that buffer, so the client hangs
  until it gives up. Here the answer is sent at once and the connection closed.
- A text frame that is not UTF-8: uvicorn closes with 1007 (right) but logs a traceback for what is
  only a client's bad input. Here it is one log line.

It also tells the app when the peer is gone (`peer_gone(scope)`): uvicorn parses every frame of a
read at once and queues them all ahead of the disconnect, so a flooding client that is killed
leaves thousands of frames that the session would otherwise read at its rate limit, holding its
slot for a minute. Once the peer is gone there is no one to slow down.

`python app.py` uses it; `uvicorn app:app --ws services.ws_protocol:WebSocketProtocol` does too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

INVALID_UTF8 = 1007
PEER_EXTENSION = "meeting_assistant.peer"
"""Key in the ASGI scope's `extensions` of the connection's `Peer`."""


class Peer:
    """Whether the other end of one connection is still there, as the transport knows it."""

    gone = False


def peer_gone(scope: Mapping[str, Any]) -> bool:
    """True once the transport of this WebSocket scope is lost (False when the server cannot tell)."""
    peer = scope.get("extensions", {}).get(PEER_EXTENSION)
    return bool(peer is not None and peer.gone)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """`WebSocketsSansIOProtocol` that answers bad upgrades and bad text frames without hanging or tracebacks."""

    def handle_connect(self, event: Any) -> None:
        self._peer = Peer()
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope.setdefault("extensions", {})[PEER_EXTENSION] = self._peer

    def connection_lost(self, exc: Exception | None) -> None:
        if hasattr(self, "_peer"):
            self._peer.gone = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not _is_utf8(b"".join(self.frames)):
            self.frames = []
            self.logger.warning("A client sent a text frame that is not UTF-8: closing with 1007.")
            self.conn.send_close(INVALID_UTF8)
            self.handle_parser_exception()
            return
        super().send_receive_event_to_app()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
