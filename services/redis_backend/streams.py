"""The names the gateways and workers share in Redis, the job's fields and the connection.

Every value is bytes (`decode_responses=False`): audio entries carry Fernet tokens. Keys:

- `JOBS` (`ma:jobs`): one entry per meeting, read by the consumer group `GROUP`.
- `audio_key(id)`: the meeting's audio, one sealed chunk per entry, then one end marker.
- `results_key(id)`: what the worker holding the meeting sends its gateway, epoch-stamped.
- `lease_key(id)`, `epoch_key(id)`, `done_key(id)`: who holds it, how often it was taken, finished
  (set with its final, in one transaction).
- `hooks_key(id)`: its after-stop hooks have started (set before they run: they run once per meeting).
- `handoff_key(id)`: a dropped recording a gateway offers to whichever gateway its client resumes on.
- `WORKERS` and `load_key(worker)`: the live workers and each one's load report (a hash with a TTL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.stored_meeting import MeetingSource

JOBS = "ma:jobs"
GROUP = "workers"
STREAM_TTL_SECONDS = 24 * 3600
"""A meeting's streams expire this long after their last write (a gateway and worker both lost)."""
RESULTS_TTL_SECONDS = 600
"""A finished meeting's results stay this long for a gateway that has not read its final yet."""
DONE_TTL_SECONDS = 3600

# audio entry fields
CHUNK = b"a"  # a sealed PCM16 chunk
SAMPLES = b"n"  # its samples
END = b"end"  # b"stop" (finish it) or b"cancel" (drop it)
LEFT = b"l"  # the client left here (its socket dropped): commit what is open (`LivePump.seal`)
AFRESH = b"f"  # the client came back with a new capture: hear what follows on its own (`LivePump.hear_afresh`)
STOPPED_AT = b"t"  # unix time of the stop, for stop -> final across processes

# result entry fields
EPOCH = b"e"
KIND = b"k"
BODY = b"m"
WORDS = b"w"  # a committed update's word times (JSON), for a worker that takes the meeting over
UPDATE, SEND, FINAL, FAILED = b"u", b"s", b"f", b"x"
TAKEN = b"t"  # a worker took the meeting at this epoch: older epochs' later entries are void
LET_GO = b"g"  # a gateway asks the gateway holding the session to let it go (its client resumed there)

WORKERS = "ma:workers"
"""A set of worker names that published a load report; a name whose report expired is pruned."""


def audio_key(session_id: str) -> str:
    return f"ma:audio:{session_id}"


def results_key(session_id: str) -> str:
    return f"ma:results:{session_id}"


def lease_key(session_id: str) -> str:
    return f"ma:lease:{session_id}"


def epoch_key(session_id: str) -> str:
    return f"ma:epoch:{session_id}"


def done_key(session_id: str) -> str:
    return f"ma:done:{session_id}"


def hooks_key(session_id: str) -> str:
    return f"ma:hooks:{session_id}"


def handoff_key(session_id: str) -> str:
    return f"ma:handoff:{session_id}"


def load_key(worker: str) -> str:
    return f"ma:load:{worker}"


@dataclass(frozen=True, slots=True)
class MeetingJob:
    """One jobs-stream entry: which meeting, and what the worker stores it as."""

    session_id: str
    title: str | None
    started_at: float
    source: MeetingSource = MeetingSource.LIVE
    language: str | None = None

    def to_fields(self) -> dict[bytes, bytes]:
        body = {
            "id": self.session_id,
            "title": self.title,
            "started_at": self.started_at,
            "source": self.source.value,
            "language": self.language,
        }
        return {b"job": json.dumps(body).encode()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> MeetingJob:
        """Raises:
        ValueError: not a job entry (a bad write, another program's entry).
        """
        try:
            body: dict[str, Any] = json.loads(fields[b"job"])
            return cls(
                session_id=str(body["id"]),
                title=body.get("title"),
                started_at=float(body["started_at"]),
                source=MeetingSource(body.get("source", MeetingSource.LIVE.value)),
                language=body.get("language"),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a meeting job: {exc}") from exc


def connect(url: str, client_name: str | None = None) -> Redis:
    """A client for `REDIS_URL` (a connection pool; blocking reads each hold one connection).

    A worker names its connections after itself (its consumer name), so the other workers can
    tell when it is gone (`liveness.py`)."""
    return Redis.from_url(url, decode_responses=False, health_check_interval=30, client_name=client_name)


async def ensure_group(redis: Redis) -> None:
    """Create the jobs stream and its consumer group if they do not exist yet."""
    try:
        await redis.xgroup_create(JOBS, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
