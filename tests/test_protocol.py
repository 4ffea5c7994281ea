from __future__ import annotations

import json

import pytest

from services.errors import ProtocolError
from services.protocol import StartMessage, StopMessage, parse_client_text


def test_start_with_every_field_optional() -> None:
    assert parse_client_text('{"type": "start"}') == StartMessage(type="start")
    full = parse_client_text(
        json.dumps({"type": "start", "sample_rate": 48000, "language": None, "title": "Standup", "token": None})
    )
    assert isinstance(full, StartMessage) and full.sample_rate == 48000 and full.title == "Standup"
    assert isinstance(parse_client_text('{"type": "stop"}'), StopMessage)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("hello", "invalid_json"),
        ("[1, 2, 3]", "invalid_message"),
        ('"start"', "invalid_message"),
        ('{"kind": "start"}', "unknown_type"),
        ('{"type": "pause"}', "unknown_type"),
        ('{"type": "start", "sample_rate": 4000}', "invalid_message"),
        ('{"type": "start", "sample_rate": 96000}', "invalid_message"),
        ('{"type": "start", "sample_rate": "fast"}', "invalid_message"),
        ('{"type": "start", "title": "' + "x" * 5000 + '"}', "message_too_long"),
        ("[" * 2000 + "]" * 2000, "invalid_json"),
    ],
)
def test_bad_text_frames_name_the_problem(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_text(text)
    assert caught.value.code == code
    assert caught.value.message
