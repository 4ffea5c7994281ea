"""One meeting on a worker: its audio stream into the live pipeline, its results back to the gateway.

The worker builds the session's parts with the same `MeetingPipeline.open_session` as the
in-process server, reads the audio stream from its first entry (the whole meeting stays in the
buffer for the speakers and the summary), lets the live pump draft and commit as audio comes, and
on the stop marker runs `MeetingPipeline.finish`. Every update, status and the final go to the
results stream in order, stamped with the epoch this worker took the meeting at, after a `TAKEN`
mark. A worker that takes a meeting over starts its transcriber after the text already committed
(`takeover.py`): only the audio after that point is transcribed again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.pipeline import MeetingPipeline
from services.protocol import partial_message
from services.recording import FinishedRecording, SessionParts
from services.redis_backend import streams
from services.redis_backend.streams import MeetingJob
from services.redis_backend.takeover import Committed, clear_drafts, committed_so_far, seed, words_field
from services.stored_meeting import MeetingSource
from services.tasks import raise_if_cancelled
from services.types import TranscriptUpdate

logger = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What every meeting on this worker shares."""

    redis: Redis
    pipeline: MeetingPipeline
    cipher: AudioCipher
    abandon_after: float
    """Seconds without a new audio entry after which the gateway is taken for gone (finish with what came)."""


class ResultPublisher:
    """The results of one meeting, in order: `update`/`send` are sync (the pipeline's callbacks)."""

    def __init__(self, redis: Redis, session_id: str, epoch: int) -> None:
        self._redis = redis
        self._key = streams.results_key(session_id)
        self._done_key = streams.done_key(session_id)
        self.epoch = epoch
        self._epoch = str(epoch).encode()
        self._queue: asyncio.Queue[tuple[bytes, dict[str, Any], bytes | None]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name=f"publish-{session_id}")

    async def mark_taken(self) -> bytes:
        """Publish the `TAKEN` mark of this epoch first (before any update); its entry id."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._key, {streams.EPOCH: self._epoch, streams.KIND: streams.TAKEN, streams.BODY: b"{}"})
            pipe.expire(self._key, streams.STREAM_TTL_SECONDS)
            mark, _ = await pipe.execute()
        return bytes(mark)

    def update(self, update: TranscriptUpdate, lag: float) -> None:
        self._queue.put_nowait((streams.UPDATE, partial_message(update, lag), words_field(update)))

    def send(self, message: dict[str, Any]) -> None:
        self._queue.put_nowait((streams.SEND, message, None))

    async def close(self, kind: bytes | None = None, message: dict[str, Any] | None = None) -> None:
        """Publish the last message (the final, or why it failed), wait until all are written."""
        if kind is not None and message is not None:
            self._queue.put_nowait((kind, message, None))
        await self._queue.join()
        self._writer.cancel()

    async def _write(self) -> None:
        while True:
            kind, body, words = await self._queue.get()
            fields = {streams.EPOCH: self._epoch, streams.KIND: kind, streams.BODY: json.dumps(body).encode()}
            if words is not None:
                fields[streams.WORDS] = words
            while True:
                raise_if_cancelled()
                try:
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.xadd(self._key, fields)  # type: ignore[arg-type]
                        pipe.expire(self._key, streams.STREAM_TTL_SECONDS)
                        if kind == streams.FINAL:  # with the final: a takeover from now on only retires it
                            pipe.set(self._done_key, self._epoch, ex=streams.DONE_TTL_SECONDS)
                        await pipe.execute()
                    break
                except RedisError as exc:  # Redis away for a moment: the gateway waits for it
                    logger.warning("publishing a result failed, retrying: %s", exc)
                    await asyncio.sleep(RETRY_SECONDS)
            self._queue.task_done()


@dataclass(frozen=True, slots=True)
class AudioEnd:
    how: bytes
    """streams.END's value: b"stop" or b"cancel"."""
    stopped_at: float
    """Unix time of the stop."""


async def serve_meeting(job: MeetingJob, context: WorkerContext, epoch: int) -> None:
    """Run one meeting from its audio stream to its final (or its cancel marker). Never raises
    (but is cancellable): a failure is published for the gateway, which tells its client."""
    publisher = ResultPublisher(context.redis, job.session_id, epoch)
    try:
        committed = await _committed_before(job.session_id, context.redis, publisher)
        final = await _run(job, context, publisher, committed)
    except asyncio.CancelledError:
        await asyncio.shield(publisher.close())
        raise
    except Exception as exc:  # a damaged meeting must not end the worker; its gateway learns why
        logger.exception("session %s failed on this worker", job.session_id)
        await publisher.close(streams.FAILED, {"message": type(exc).__name__ + ": " + str(exc)})
        return
    await publisher.close(streams.FINAL, final) if final is not None else await publisher.close()


async def _committed_before(session_id: str, redis: Redis, publisher: ResultPublisher) -> Committed:
    """Mark this epoch, then read what earlier workers committed (nothing on a first take)."""
    while True:
        raise_if_cancelled()
        try:
            mark = await publisher.mark_taken()
            return await committed_so_far(redis, session_id, mark)
        except RedisError as exc:  # Redis away for a moment: nothing can be served without it
            logger.warning("session %s: reading its results failed, retrying: %s", session_id, exc)
            await asyncio.sleep(RETRY_SECONDS)


async def _run(
    job: MeetingJob, context: WorkerContext, publisher: ResultPublisher, committed: Committed
) -> dict[str, Any] | None:
    pipeline = context.pipeline
    parts = pipeline.open_session(job.session_id, publisher.update)
    parts.listed = asyncio.create_task(_listed())  # the gateway listed it
    try:
        _carry_over(job.session_id, parts, publisher, committed)
        if job.source is MeetingSource.UPLOAD:
            parts.detach()  # behind live meetings, and no drafts: the whole file is transcribed at the end
        else:
            parts.pump.start()
        end = await _feed_audio(job.session_id, context, parts)
    except BaseException:
        parts.close()
        raise
    if end.how != b"stop":
        parts.close()
        return None
    stopped_at = time.perf_counter() - max(0.0, time.time() - end.stopped_at)
    recording = FinishedRecording(
        job.session_id, job.title, job.started_at, stopped_at, parts, job.source,
        hooks_once=functools.partial(_hooks_once, context.redis, job.session_id, publisher.epoch),
    )  # fmt: skip
    return await pipeline.finish(recording, publisher.send)


async def _hooks_once(redis: Redis, session_id: str, epoch: int) -> bool:
    """Mark the meeting's hooks as started, before they run; False when an earlier worker marked them.

    A worker that dies after the hooks but before its final is out has its meeting finished again by
    another worker: that one must not post to Slack or append to the audit log a second time. (A
    worker that dies while the hooks run leaves the rest of them unrun: at most once, not twice.)
    """
    try:
        return bool(await redis.set(streams.hooks_key(session_id), epoch, nx=True, ex=streams.DONE_TTL_SECONDS))
    except RedisError as exc:  # Redis away: better a second Slack message than none
        logger.warning("session %s: marking its hooks failed, running them: %s", session_id, exc)
        return True


def _carry_over(session_id: str, parts: SessionParts, publisher: ResultPublisher, committed: Committed) -> None:
    """A takeover: start after the committed text, and clear the drafts the old worker left shown."""
    if not committed.next_id:
        return  # a first take
    seed(parts.pump, committed)
    for update in clear_drafts(committed):
        publisher.update(update, 0.0)
    logger.info(
        "session %s: %d committed segment(s) carried over, transcribing again from %.1f s",
        session_id, len(committed.segments), committed.until,
    )  # fmt: skip


async def _listed() -> bool:
    return True


async def _feed_audio(session_id: str, context: WorkerContext, parts: SessionParts) -> AudioEnd:
    """Append the audio stream to the buffer until its end marker; its end."""
    key, last = streams.audio_key(session_id), b"0"
    heard_at = time.monotonic()
    while True:
        raise_if_cancelled()
        try:
            reply = await context.redis.xread({key: last}, count=500, block=READ_BLOCK_MS)
        except RedisError as exc:
            logger.warning("session %s: reading audio failed, retrying: %s", session_id, exc)
            await asyncio.sleep(RETRY_SECONDS)
            continue
        if not reply:
            if time.monotonic() - heard_at > context.abandon_after:
                logger.warning("session %s: no audio for %.0f s, finishing it", session_id, context.abandon_after)
                return AudioEnd(b"stop", time.time())
            continue
        heard_at = time.monotonic()
        sealed: list[bytes] = []
        end: AudioEnd | None = None
        for _, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                if streams.END in fields:
                    end = AudioEnd(fields[streams.END], float(fields.get(streams.STOPPED_AT) or time.time()))
                    break
                if streams.LEFT in fields or streams.AFRESH in fields:  # the client left here, or came back afresh
                    await _append(context, parts, sealed)
                    sealed = []
                    if streams.LEFT in fields:
                        parts.pump.seal()
                    else:
                        parts.pump.hear_afresh()
                    continue
                sealed.append(fields[streams.CHUNK])
        await _append(context, parts, sealed)
        if end is not None:
            return end


async def _append(context: WorkerContext, parts: SessionParts, sealed: list[bytes]) -> None:
    if sealed:  # a takeover's or an upload's backlog is seconds of Fernet work: off the event loop
        await asyncio.to_thread(_append_sealed, context.cipher, parts.buffer, sealed)
        parts.pump.notify()


def _append_sealed(cipher: AudioCipher, buffer: SecureAudioBuffer, sealed: list[bytes]) -> None:
    for chunk in sealed:
        buffer.append(np.frombuffer(cipher.open(chunk), dtype="<i2"))
