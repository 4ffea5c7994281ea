"""The gateway's side of one session in Redis mode: audio out, transcript back.

`RelayBuffer` stands where the in-process `SecureAudioBuffer` stands: every appended block is
sealed at once (the shared `AUDIO_ENCRYPTION_KEY`) and waits only until the relay's forwarder
has added it to the meeting's audio stream; the gateway holds no audio beyond that.
`RemotePump` stands where the `LivePump` stands: `notify()` wakes the forwarder, the first
forward queues the meeting's job, and a reader hands the worker's updates to the session's
`emit` (a result of an older epoch, or an update that repeats what was sent, is dropped: a
worker that took the meeting over sends its transcript again). Until a worker takes the meeting,
it holds a reservation of a worker slot (`reservations.py`): taken at admission, or when its job
is queued; given back if the session ends first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.audio_buffer import AudioCipher
from services.errors import MeetingAssistantError
from services.live_pump import Emit
from services.redis_backend import streams
from services.redis_backend.reservations import Reservations
from services.redis_backend.streams import MeetingJob
from services.tasks import cancel_and_wait
from services.types import SAMPLE_RATE, Segment, TranscriptUpdate

logger = logging.getLogger(__name__)

MAX_CHUNK_SAMPLES = 10 * SAMPLE_RATE
"""Longer blocks (an upload's) are split into entries of at most this many samples."""
READ_BLOCK_MS = 1000
RETRY_SECONDS = 1.0

Send = Callable[[dict[str, Any]], None]


class RelayBuffer:
    """A session's sealed audio on its way to Redis: counts samples, holds only what is unsent."""

    def __init__(self, cipher: AudioCipher) -> None:
        self._cipher = cipher
        self._unsent: deque[tuple[bytes, int]] = deque()  # appended on the loop or an upload's thread
        self._samples = 0

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def nbytes(self) -> int:
        return sum(len(chunk) for chunk, _ in self._unsent)

    def append(self, pcm16: np.ndarray) -> None:
        for start in range(0, int(pcm16.size), MAX_CHUNK_SAMPLES):
            block = pcm16[start : start + MAX_CHUNK_SAMPLES]
            self._unsent.append((self._cipher.seal(block.astype("<i2", copy=False).tobytes()), int(block.size)))
            self._samples += int(block.size)

    def take(self) -> list[tuple[bytes, int]]:
        """The chunks not forwarded yet (sealed), oldest first."""
        taken = []
        while self._unsent:
            taken.append(self._unsent.popleft())
        return taken

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        raise NotImplementedError("a gateway holds no audio in Redis mode: the worker reads it")

    def clear(self) -> None:
        self._unsent.clear()


class RemotePump:
    """Forwards one session's audio to Redis and brings its transcript back."""

    def __init__(
        self, redis: Redis, session_id: str, buffer: RelayBuffer, emit: Emit, reservations: Reservations
    ) -> None:
        self._redis = redis
        self._id = session_id
        self._reservations = reservations
        self._buffer = buffer
        self._emit = emit
        self._send: Send | None = None
        self.job: MeetingJob | None = None
        """What the worker stores the meeting as (set when it is listed, before any audio)."""
        self._wake = asyncio.Event()
        self._ending: bytes | None = None  # streams.END value once the session is over
        self._stopped_at = 0.0
        self._queued = False
        self._forwarder: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._epoch = 0
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
            ending = self._ending
            chunks = self._buffer.take()
            while True:
                try:
                    await self._write(chunks, ending)
                    break
                except RedisError as exc:  # Redis restarting: keep the audio, try again
                    logger.warning("session %s: forwarding audio failed, retrying: %s", self._id, exc)
                    await asyncio.sleep(RETRY_SECONDS)
            if ending is not None:
                if ending == b"cancel" and self._reader is not None:
                    self._reader.cancel()  # no final comes for a dropped meeting
                return

    async def _write(self, chunks: list[tuple[bytes, int]], ending: bytes | None) -> None:
        if not self._queued and not chunks and ending != b"stop":
            return  # nothing was ever sent: no worker needs to hear of it
        if not self._queued and self._id not in self._reservations.held:  # an upload: counted while it waits
            await self._reservations.reserve(self._id, checked=False)
        key = streams.audio_key(self._id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for chunk, samples in chunks:
                pipe.xadd(key, {streams.CHUNK: chunk, streams.SAMPLES: str(samples).encode()})
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

    async def _read_results(self) -> None:
        key, last = streams.results_key(self._id), b"0"
        while not self.final.done():
            try:
                reply = await self._redis.xread({key: last}, count=100, block=READ_BLOCK_MS)
            except RedisError as exc:
                logger.warning("session %s: reading results failed, retrying: %s", self._id, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    self._on_result(fields)
        with contextlib.suppress(RedisError):
            await self._redis.delete(key)

    def _on_result(self, fields: dict[bytes, bytes]) -> None:
        epoch = int(fields.get(streams.EPOCH, b"0"))
        if epoch < self._epoch:
            return  # a worker that lost the meeting, still talking
        self._epoch = epoch
        self._reservations.forget(self._id)  # a worker took it: its report counts the meeting now
        kind, body = fields.get(streams.KIND), json.loads(fields.get(streams.BODY, b"{}"))
        if kind == streams.UPDATE:
            self._on_update(body)
        elif kind == streams.SEND and self._send is not None:
            self._send(body)
        elif kind == streams.FINAL and not self.final.done():
            self.final.set_result(body)
        elif kind == streams.FAILED and not self.final.done():
            self.final.set_exception(RemoteMeetingError(str(body.get("message", "the worker failed"))))

    def _on_update(self, body: dict[str, Any]) -> None:
        lag = float(body.pop("lag", 0.0))
        segment_id = int(body["segment_id"])
        sent = self._latest.get(segment_id)
        if sent is not None and sent[0] == body:
            return  # a worker that took the meeting over repeats what the client has
        segment = Segment(float(body["start"]), float(body["end"]), str(body["text"]), body.get("speaker"))
        update = TranscriptUpdate(segment_id, segment, bool(body["committed"]))
        self._latest[segment_id] = (body, update)
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
