"""The states of a recording session and the one place their transitions are checked.

    CONNECTED --start/audio--> RECORDING --stop/limit/idle--> FINISHING --final--> DONE
    CONNECTED --stop--> FINISHING
    CONNECTED, RECORDING, FINISHING --client gone / closed by the server--> DETACHED --job ends--> DONE

FINISHING: stopped, the pipeline finishes the meeting while the client waits for `final`.
DETACHED: nobody is listening: the meeting is finished in the background (or, when the client
vanished mid-recording, parked for it to resume), and nothing is sent.
"""

from __future__ import annotations

from enum import Enum

from services.errors import SessionStateError


class SessionState(Enum):
    CONNECTED = "connected"
    RECORDING = "recording"
    FINISHING = "finishing"
    DETACHED = "detached"
    DONE = "done"


_TRANSITIONS = {
    SessionState.CONNECTED: {SessionState.RECORDING, SessionState.FINISHING, SessionState.DETACHED},
    SessionState.RECORDING: {SessionState.FINISHING, SessionState.DETACHED},
    SessionState.FINISHING: {SessionState.DETACHED, SessionState.DONE},
    SessionState.DETACHED: {SessionState.DONE},
    SessionState.DONE: set(),
}

LIVE = frozenset({SessionState.CONNECTED, SessionState.RECORDING})
"""States in which the client may still send audio and `stop`."""


def check_transition(current: SessionState, target: SessionState) -> SessionState:
    """`target`, if the state machine allows going there from `current`.

    Raises:
        SessionStateError: an illegal transition (a bug, or a message the state does not allow).
    """
    if target not in _TRANSITIONS[current]:
        raise SessionStateError("invalid_state", f"Cannot go from {current.value} to {target.value}.")
    return target
