"""The spool directory: the open spool files, their flusher, and the buffer that feeds them.

    SpoolDirectory(data_dir, key, retention_days, metrics)
        .open(meeting_id) -> AudioSpool       a new meeting's spool (the file appears with its first audio)
        .run()                                the flusher: writes and fsyncs every FLUSH_SECONDS, on a thread
        .files() / .is_open(id) / .delete(id) what recovery, the retention sweep and DELETE need
    SpooledAudioBuffer(cipher, spool)         a `SecureAudioBuffer` whose appends also go to the spool

One flusher for every open spool keeps the disk off the event loop: appends only seal the chunk
and queue it, the flusher's thread writes and fsyncs them all twice a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.fernet import Fernet

from observability import Metrics
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.spool import FLUSH_SECONDS, SUFFIX, AudioSpool, SpoolMeta, spool_path

logger = logging.getLogger(__name__)

SPOOL_DIR = "spool"


class SpoolDirectory:
    """`DATA_DIR/spool`: where every meeting's sealed audio is written as it arrives."""

    def __init__(self, data_dir: Path, key: str, retention_days: float, metrics: Metrics) -> None:
        self.path = data_dir / SPOOL_DIR
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fernet = Fernet(key.encode())
        self.retention_days = retention_days
        self._open: dict[str, AudioSpool] = {}
        self._lock = threading.Lock()
        metrics.spool_bytes.set_function(self.total_bytes)

    def open(self, meeting_id: str) -> AudioSpool:
        """A new meeting's spool; closed by `AudioSpool.close`/`finished` (the flusher lets it go)."""
        spool = AudioSpool(
            spool_path(self.path, meeting_id),
            self.fernet,
            SpoolMeta(meeting_id=meeting_id, created_at=time.time()),
            delete_when_finished=self.retention_days == 0,
        )
        with self._lock:
            self._open[meeting_id] = spool
        return spool

    def is_open(self, meeting_id: str) -> bool:
        """Whether this process is writing that meeting's spool."""
        with self._lock:
            return meeting_id in self._open

    def files(self) -> list[Path]:
        """Every spool file, oldest first."""
        paths = [path for path in self.path.iterdir() if path.suffix == SUFFIX]
        return sorted(paths, key=_mtime)

    def delete(self, meeting_id: str) -> None:
        """Remove a meeting's audio (DELETE /api/meetings/{id}); an open spool stops writing."""
        with self._lock:
            spool = self._open.get(meeting_id)
        if spool is not None:
            spool.discard()
        spool_path(self.path, meeting_id).unlink(missing_ok=True)

    def total_bytes(self) -> float:
        """Bytes in the spool directory (read at each scrape, so every process sharing it agrees)."""
        total = 0
        try:
            for path in self.path.iterdir():
                if path.suffix == SUFFIX:
                    total += _size(path)
        except OSError:
            return 0.0
        return float(total)

    async def run(self) -> None:
        """Flush every open spool every FLUSH_SECONDS until cancelled (then once more, to the end)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                await asyncio.to_thread(self.flush_all)
        finally:
            await asyncio.shield(asyncio.to_thread(self.flush_all))

    def flush_all(self) -> None:
        """Write what every open spool holds (blocking); forget the ones that are closed."""
        with self._lock:
            spools = list(self._open.values())
        for spool in spools:
            if spool.flush():
                with self._lock:
                    if self._open.get(spool.meeting_id) is spool:
                        del self._open[spool.meeting_id]


class SpooledAudioBuffer(SecureAudioBuffer):
    """The session's buffer, every chunk also sealed into its spool at its sample offset."""

    def __init__(self, cipher: AudioCipher, spool: AudioSpool) -> None:
        super().__init__(cipher)
        self.spool = spool

    def append(self, pcm16: np.ndarray) -> None:
        first = self.samples
        super().append(pcm16)
        self.spool.append(pcm16, first)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
