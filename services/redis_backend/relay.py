"""The gateway's side of one session in Redis mode: audio out, transcript back.

`RemotePump` stands where the `LivePump` stands (and `RelayBuffer`, `relay_buffer.py`, where the
session's audio buffer stands): `notify()` wakes the forwarder, the first
forward queues the meeting's job, and a reader hands the worker's updates to the session's
`emit` (a result of an older epoch, or an update that repeats what was sent, is dropped: a
worker that took the meeting over sends its transcript again). A session can move to another
gateway (its client resumed there, `resumes.py`): the old relay writes out its audio (`flushed`),
the new one carries on from there (`adopt`). Until a worker takes the meeting,
it holds a reservation of a worker slot (`reservations.py`): taken at admission, or when its job
is queued; given back if the session ends first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.errors import MeetingAssistantError
from services.live_pump import Emit
from services.redis_backend import streams
from services.redis_backend.relay_buffer import RelayBuffer
from services.redis_backend.reservations import Reservations
from services.redis_backend.streams import MeetingJob
from services.redis_backend.takeover import RESULTS_PAGE
from services.tasks import cancel_and_wait, raise_if_cancelled
from services.types import Segment, TranscriptUpdate

logger = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
RETRY_SECONDS = 1.0

Entry = tuple[bytes, int] | bytes
"""An entry of the audio stream: a sealed chunk and its samples, or a mark (`streams.LEFT`, `streams.AFRESH`)."""

Send = Callable[[dict[str, Any]], None]


class RemotePump:
    """Forwards one session's audio to Redis and brings its transcript back."""

    def __init__(
        self,
        redis: Redis,
        session_id: str,
        buffer: RelayBuffer,
        emit: Emit,
        reservations: Reservations,
        asked_to_let_go: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis
        self._asked_to_let_go = asked_to_let_go
        """Another gateway's client resumed this session: park it, to be offered there (`resumes.py`)."""
        self._id = session_id
        self._reservations = reservations
        self._buffer = buffer
        self._emit = emit
        self._send: Send | None = None
        self.job: MeetingJob | None = None
        """What the worker stores the meeting as (set when it is listed, before any audio)."""
        self._wake = asyncio.Event()
        self._ending: bytes | None = None  # streams.END value once the session is over
        # Entries for the audio stream in order, taken from the buffer because a mark follows them: the client
        # left (streams.LEFT), it came back with a new capture (streams.AFRESH). Marks not yet in Redis:
        self._ordered: list[Entry] = []
        self._marks = 0
        self._stopped_at = 0.0
        self._queued = False
        self._forwarder: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._epoch = 0
        self._written = 0  # samples in Redis
        self._wrote = asyncio.Event()
        self.open = True
        """False once the session ended (its final came, or it was dropped)."""
        self._latest: dict[int, tuple[dict[str, Any], TranscriptUpdate]] = {}
        self.final: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    # --- the LivePump surface the session uses ---------------------------------------------------

    def start(self) -> None:
        self._ensure_forwarder()

    def notify(self) -> None:
        self._ensure_forwarder()
        self._wake.set()

    def seal(self) -> None:
        """The client left: the worker commits what is open at this point of the audio (`LivePump.seal`)."""
        self._mark(streams.LEFT)

    def hear_afresh(self) -> None:
        """The client came back with a new capture: the worker hears it on its own (`LivePump.hear_afresh`)."""
        self._mark(streams.AFRESH)

    def _mark(self, mark: bytes) -> None:
        """`mark` the audio stream here: after the audio appended so far, before what comes next."""
        self._ordered += [*self._buffer.take(), mark]
        self._marks += 1
        self.notify()

    def stop(self) -> None:
        """No more audio comes (the stop marker follows the last chunk once `end()` is called)."""

    def listen(self, emit: Emit) -> list[TranscriptUpdate]:
        self._emit = emit
        return [self._latest[segment_id][1] for segment_id in sorted(self._latest)]

    def cancel(self) -> None:
        """The session ends without a final: a queued meeting is dropped by its worker too."""
        self.open = False
        self._reservations.release(self._id)
        if self._queued and self._ending is None:
            self._end(b"cancel")
        else:
            for task in (self._forwarder, self._reader):
                if task is not None and not task.done():
                    task.cancel()

    # --- finishing ----------------------------------------------------------------------------

    async def finish(self, send: Send) -> dict[str, Any]:
        """Send the stop marker after the last chunk; statuses go to `send`; the worker's final.

        Raises:
            RemoteMeetingError: the worker could not finish the meeting.
        """
        self._send = send
        self._end(b"stop")
        return await self.final

    def _end(self, how: bytes) -> None:
        self._ending, self._stopped_at = how, time.time()
        self._ensure_forwarder()
        self._wake.set()

    def _ensure_forwarder(self) -> None:
        if self._forwarder is None:
            self._forwarder = asyncio.create_task(self._forward(), name=f"relay-{self._id}")

    async def _forward(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ending, entries = self._ending, [*self._ordered, *self._buffer.take()]
            self._ordered = []
            while True:
                raise_if_cancelled()
                try:
                    await self._write(entries, ending)
                    self._written += sum(entry[1] for entry in entries if isinstance(entry, tuple))
                    self._marks -= sum(1 for entry in entries if isinstance(entry, bytes))
                    self._wrote.set()
                    break
                except RedisError as exc:  # Redis restarting: keep the audio, try again
                    logger.warning("session %s: forwarding audio failed, retrying: %s", self._id, exc)
                    await asyncio.sleep(RETRY_SECONDS)
            if ending is not None:
                if ending == b"cancel" and self._reader is not None:
                    self._reader.cancel()  # no final comes for a dropped meeting
                return

    async def _write(self, entries: list[Entry], ending: bytes | None) -> None:
        if not self._queued and not any(isinstance(entry, tuple) for entry in entries) and ending != b"stop":
            return  # nothing was ever sent: no worker needs to hear of it
        if not self._queued and self._id not in self._reservations.held:  # an upload: counted while it waits
            await self._reservations.reserve(self._id, checked=False)
        key = streams.audio_key(self._id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                if isinstance(entry, bytes):
                    pipe.xadd(key, {entry: b"1"})
                else:
                    pipe.xadd(key, {streams.CHUNK: entry[0], streams.SAMPLES: str(entry[1]).encode()})
            if ending is not None:
                pipe.xadd(key, {streams.END: ending, streams.STOPPED_AT: repr(self._stopped_at).encode()})
            pipe.expire(key, streams.STREAM_TTL_SECONDS)
            if not self._queued:  # after its audio: a worker finds something to read at once
                pipe.xadd(streams.JOBS, self._job().to_fields())
            await pipe.execute()
        if not self._queued:
            self._queued = True
            self._reader = asyncio.create_task(self._read_results(), name=f"results-{self._id}")

    def _job(self) -> MeetingJob:
        return self.job or MeetingJob(self._id, None, time.time())

    # --- results --------------------------------------------------------------------------------

    async def flushed(self) -> int:
        """Wait until every chunk appended, and the client's leaving, are in Redis (the session moves to another
        gateway); its samples."""
        while self._written < self._buffer.samples or self._marks:
            self._wrote.clear()
            self.notify()
            await self._wrote.wait()
        return self._written

    async def adopt(self, samples: int) -> None:
        """Carry on with a session another gateway relayed until now: its job and `samples` of audio are
        in Redis; the results so far are read without being sent (`listen` returns them), then new ones.

        Raises:
            RedisError: the results cannot be read.
        """
        self._queued = True
        self._buffer.adopt(samples)
        self._written = samples
        last = b"0"
        while entries := await self._redis.xrange(streams.results_key(self._id), b"(" + last, "+", RESULTS_PAGE):
            for _, fields in entries:
                self._on_result(fields, live=False)
            last = entries[-1][0]
        self._reader = asyncio.create_task(self._read_results(last), name=f"results-{self._id}")

    async def _read_results(self, last: bytes = b"0") -> None:
        key = streams.results_key(self._id)
        while not self.final.done():
            raise_if_cancelled()
            try:
                reply = await self._redis.xread({key: last}, count=100, block=READ_BLOCK_MS)
            except RedisError as exc:
                reply = []
                if self.open:
                    logger.warning("session %s: reading results failed, retrying: %s", self._id, exc)
                    await asyncio.sleep(RETRY_SECONDS)
            if not self.open:  # closed: redis-py may turn cancelling a blocked read into an error or a retry
                return
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    self._on_result(fields)
        if self._ending == b"stop":  # only the relay that finished it: a relay it moved from reads on till then
            with contextlib.suppress(RedisError):
                await self._redis.delete(key)

    def _on_result(self, fields: dict[bytes, bytes], *, live: bool = True) -> None:
        if fields.get(streams.KIND) == streams.LET_GO:  # a gateway's, not a worker's
            if live:
                self._asked_to_let_go()
            return
        epoch = int(fields.get(streams.EPOCH, b"0"))
        if epoch < self._epoch:
            return  # a worker that lost the meeting, still talking
        self._epoch = epoch
        self._reservations.forget(self._id)  # a worker took it: its report counts the meeting now
        kind, body = fields.get(streams.KIND), json.loads(fields.get(streams.BODY, b"{}"))
        if kind == streams.UPDATE:
            self._on_update(body, live)
        elif kind == streams.SEND and self._send is not None:
            self._send(body)
        elif kind == streams.FINAL and not self.final.done():
            self.final.set_result(body)
        elif kind == streams.FAILED and not self.final.done():
            self.final.set_exception(RemoteMeetingError(str(body.get("message", "the worker failed"))))

    def _on_update(self, body: dict[str, Any], live: bool) -> None:
        lag = float(body.pop("lag", 0.0))
        segment_id = int(body["segment_id"])
        sent = self._latest.get(segment_id)
        if sent is not None and sent[0] == body:
            return  # a worker that took the meeting over repeats what the client has
        segment = Segment(float(body["start"]), float(body["end"]), str(body["text"]), body.get("speaker"))
        update = TranscriptUpdate(segment_id, segment, bool(body["committed"]))
        self._latest[segment_id] = (body, update)
        if live:
            self._emit(update, lag)

    async def aclose(self) -> None:
        """Stop the forwarder and the reader (after the final, or when dropped)."""
        self.open = False
        self._reservations.release(self._id)
        for task in (self._forwarder, self._reader):
            if task is not None:
                await cancel_and_wait(task)


class RemoteMeetingError(MeetingAssistantError):
    """The worker holding a meeting reported that it could not finish it."""
