"""The audio spool: every meeting's audio on disk as it arrives, sealed, so a crash loses (almost) nothing.

A recording held only in memory dies with its process. Each session's audio therefore also goes
to `DATA_DIR/spool/<meeting id>.spool`, one Fernet-sealed record per appended chunk; a flusher
writes and fsyncs what arrived every `FLUSH_SECONDS`, so a process killed at any moment loses at
most that much audio. Nothing is written in the clear. The file format:

    file    := MAGIC record*
    record  := length (u32, big-endian) || Fernet token of (kind (u8) || body)
    META     body: JSON {"meeting_id", "created_at", "title", "source", "language", "sample_rate"}
    AUDIO    body: first sample (u64 LE) || sample rate (u32 LE) || PCM16 LE mono
    COMPLETE body: total samples (u64 LE): the whole recording is in (an upload was fully decoded)

A record cut short by a kill (the last one) is detected by its length and dropped; any record
that fails its HMAC ends the readable part. Sample offsets let `read_spool` rebuild 16 kHz PCM
even if a record in the middle is lost (the gap becomes silence). An open spool file is held
with `flock`, so another process (or the start-up recovery) can tell it has a live owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from cryptography.fernet import Fernet, InvalidToken

from services.errors import SpoolFormatError, SpoolKeyError
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

MAGIC = b"MASPOOL1"
FLUSH_SECONDS = 0.5
SUFFIX = ".spool"
MAX_RECORD_BYTES = 64 << 20  # a longer length prefix is damage, not a record
_LENGTH = struct.Struct(">I")
_AUDIO = struct.Struct("<QI")
_TOTAL = struct.Struct("<Q")
META, AUDIO, COMPLETE = 1, 2, 3


@dataclass(slots=True)
class SpoolMeta:
    """What recovery needs when the store has no row for the meeting (the store's row wins)."""

    meeting_id: str
    created_at: float
    title: str | None = None
    source: str = "live"
    language: str | None = None
    sample_rate: int = SAMPLE_RATE


@dataclass(slots=True)
class SpoolContents:
    """What a spool file holds: its meta, the rebuilt 16 kHz PCM16 audio and how it ended."""

    meta: SpoolMeta
    pcm16: np.ndarray
    complete: bool
    dropped_tail: bool
    """The last record was cut short or damaged (a kill mid-write) and was dropped."""
    gaps: int = 0
    errors: list[str] = field(default_factory=list)


def spool_path(directory: Path, meeting_id: str) -> Path:
    return directory / f"{meeting_id}{SUFFIX}"


def seal_record(fernet: Fernet, kind: int, body: bytes) -> bytes:
    token = fernet.encrypt(bytes([kind]) + body)
    return _LENGTH.pack(len(token)) + token


class AudioSpool:
    """One meeting's spool file. `append` may be called from any thread; the flusher does the I/O.

    The file is created by the first flush that has audio to write (a socket that never sends
    audio leaves nothing behind) and stays locked (`flock`) while this object holds it open.
    """

    def __init__(self, path: Path, fernet: Fernet, meta: SpoolMeta, *, delete_when_finished: bool) -> None:
        self.path = path
        self.meeting_id = meta.meeting_id
        self._fernet = fernet
        self._meta = meta
        self._delete_when_finished = delete_when_finished
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._fd: int | None = None
        self._closing = self._finished = self._discarded = self._failing = False

    def describe(self, meta: SpoolMeta) -> None:
        """Set the meeting's details before the file is created (`list_meeting` knows them)."""
        with self._lock:
            self._meta = meta

    def append(self, pcm16: np.ndarray, first_sample: int) -> None:
        """Seal one chunk of 16 kHz PCM16 at once; it reaches the disk with the next flush."""
        if pcm16.size == 0:
            return
        body = _AUDIO.pack(first_sample, SAMPLE_RATE) + pcm16.astype("<i2", copy=False).tobytes()
        record = seal_record(self._fernet, AUDIO, body)
        with self._lock:
            if not self._closing:
                self._pending.append(record)

    def audio_complete(self, samples: int) -> None:
        """The whole recording is in the spool (an upload decoded to the end, a live one stopped)."""
        record = seal_record(self._fernet, COMPLETE, _TOTAL.pack(samples))
        with self._lock:
            if not self._closing:
                self._pending.append(record)

    def finished(self) -> None:
        """The meeting is stored finished: recovery no longer needs this audio (retention applies)."""
        with self._lock:
            self._finished = self._closing = True

    def close(self) -> None:
        """No more audio; the flusher writes what is pending and closes the file (kept for recovery)."""
        with self._lock:
            self._closing = True

    def discard(self) -> None:
        """The meeting was deleted: write nothing more; the file goes at the next flush."""
        with self._lock:
            self._discarded = self._closing = True
            self._pending.clear()

    def flush(self) -> bool:
        """Write and fsync what is pending (blocking: the flusher's thread). True once closed for good."""
        with self._lock:
            pending, self._pending = self._pending, []
            closing, finished, discarded = self._closing, self._finished, self._discarded
            meta = self._meta
        try:
            if pending and not discarded:
                self._write(meta, pending)
            self._failing = False
        except OSError as exc:
            with self._lock:
                self._pending[:0] = pending  # tried again at the next flush
            if not self._failing:
                logger.error("spool %s: cannot write audio to %s: %s", self.meeting_id, self.path, exc)
            self._failing = True
            return False
        if not closing:
            return False
        self._release()
        if discarded or (finished and self._delete_when_finished):
            self.path.unlink(missing_ok=True)
        elif finished:
            _touch(self.path)  # retention counts from the end of the meeting
        return True

    def _write(self, meta: SpoolMeta, records: list[bytes]) -> None:
        if self._fd is None:
            header = MAGIC + seal_record(self._fernet, META, json.dumps(asdict(meta)).encode())
            self._fd = _create_locked(self.path, header)
        _write_all(self._fd, b"".join(records))
        os.fsync(self._fd)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def _create_locked(path: Path, header: bytes) -> int:
    """Create the spool file owner-only, locked (the lock marks a live owner) and with its header.

    It is made under a temporary name and linked to its own: under its real name a spool always has its
    header and its lock, so recovery never mistakes a file being created for a dead one.
    """
    temporary = path.with_name(f".{path.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _write_all(fd, header)
        os.fsync(fd)
        os.link(temporary, path)  # atomic, and never over another meeting's spool
    except OSError:
        os.close(fd)
        raise
    finally:
        temporary.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name survives a crash too
    finally:
        os.close(dir_fd)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # deleted meanwhile
        os.utime(path)


def lock_spool(path: Path) -> int | None:
    """An fd holding the spool's lock, or None when a live owner holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def read_spool(path: Path, fernet: Fernet) -> SpoolContents:
    """Rebuild the audio in a spool file (blocking).

    Raises:
        SpoolFormatError: the file is not a spool (or its first record is gone).
        SpoolKeyError: the spool was sealed with another key than the one configured.
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SpoolFormatError(f"{path.name} is not an audio spool file (no {MAGIC.decode()} header)")
    records, dropped_tail = _records(data, len(MAGIC), fernet)
    if not records or records[0][0] != META:
        raise SpoolFormatError(f"{path.name} holds no readable meeting record: nothing to recover")
    meta = SpoolMeta(**json.loads(records[0][1]))
    chunks: list[tuple[int, np.ndarray]] = []
    complete = False
    for kind, body in records[1:]:
        if kind == AUDIO:
            first, rate = _AUDIO.unpack_from(body)
            chunks.append((first, _to_16k(np.frombuffer(body[_AUDIO.size :], dtype="<i2"), rate)))
        elif kind == COMPLETE:
            complete = True
    pcm16, gaps = _joined(chunks)
    return SpoolContents(meta, pcm16, complete, dropped_tail, gaps)


def _records(data: bytes, offset: int, fernet: Fernet) -> tuple[list[tuple[int, bytes]], bool]:
    """The readable records and whether a damaged tail was dropped. The first record decides the key."""
    records: list[tuple[int, bytes]] = []
    while offset < len(data):
        end = offset + _LENGTH.size
        length = _LENGTH.unpack_from(data, offset)[0] if end <= len(data) else 0
        if length == 0 or length > MAX_RECORD_BYTES or end + length > len(data):
            return records, True  # cut short by a kill mid-write (or zeros after a power loss)
        try:
            clear = fernet.decrypt(data[end : end + length])
        except InvalidToken as exc:
            if not records:
                raise SpoolKeyError(
                    "The audio spool was sealed with another key than AUDIO_ENCRYPTION_KEY (or the key file "
                    "in DATA_DIR): restore the key it was written with to recover it."
                ) from exc
            return records, True
        records.append((clear[0], clear[1:]))
        offset = end + length
    return records, False


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return samples
    import soxr

    resampled = soxr.resample(samples.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)
    return (np.clip(resampled, -1.0, 32767 / 32768) * 32768).astype("<i2")


def _joined(chunks: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, int]:
    """The chunks laid out at their sample offsets: a lost record becomes silence, an overlap is skipped."""
    parts: list[np.ndarray] = []
    position = gaps = 0
    for first, samples in sorted(chunks, key=lambda chunk: chunk[0]):
        if first > position:
            parts.append(np.zeros(first - position, dtype="<i2"))
            gaps += 1
        elif first < position:
            samples = samples[position - first :]
        parts.append(samples)
        position = max(position, first + samples.size)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype="<i2")), gaps
