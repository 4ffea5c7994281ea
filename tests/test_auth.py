"""The three ways a /ws client may carry API_KEY (the real server is in test_start_commands)."""

from __future__ import annotations

import pytest

from services.auth import SUBPROTOCOL, accepted_subprotocol, offered_tokens, token_accepted, token_subprotocol

KEY = "k/ey+with=odd chars"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"token": KEY}, {}),
        ({}, {"authorization": f"Bearer {KEY}"}),
        ({}, {"sec-websocket-protocol": f"{SUBPROTOCOL}, {token_subprotocol(KEY)}"}),
        ({"token": "wrong"}, {"authorization": f"bearer {KEY}"}),  # any carrier with the key admits
    ],
)
def test_each_carrier_is_accepted(query: dict[str, str], headers: dict[str, str]) -> None:
    assert token_accepted(KEY, query, headers)


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({}, {}),
        ({"token": "wrong"}, {}),
        ({}, {"authorization": f"Basic {KEY}"}),
        ({}, {"sec-websocket-protocol": f"{SUBPROTOCOL}.token.!!not-base64!!"}),
        ({}, {"sec-websocket-protocol": KEY}),  # the raw key is no carrier
    ],
)
def test_anything_else_is_refused(query: dict[str, str], headers: dict[str, str]) -> None:
    assert not token_accepted(KEY, query, headers)


def test_the_subprotocol_holds_only_token_characters_and_round_trips() -> None:
    protocol = token_subprotocol(KEY)
    assert protocol.replace(".", "").replace("-", "").replace("_", "").isalnum()
    assert offered_tokens({}, {"sec-websocket-protocol": protocol}) == [KEY]


def test_the_answer_never_echoes_the_token() -> None:
    both = {"sec-websocket-protocol": f"{SUBPROTOCOL}, {token_subprotocol(KEY)}"}
    assert accepted_subprotocol(both) == SUBPROTOCOL
    assert accepted_subprotocol({"sec-websocket-protocol": token_subprotocol(KEY)}) is None
    assert accepted_subprotocol({}) is None
