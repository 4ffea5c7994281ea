"""The secure audio buffer: a session's 16 kHz PCM16 audio, held as (optionally encrypted) chunks.

With a Fernet key every appended chunk is encrypted at once and the clear bytes dropped; reads
decrypt only the chunks they need, transiently, for inference. The buffer writes nothing to disk
(the sealed copy on disk is the spool's: `services/spool_directory.py`).
"""

from __future__ import annotations

import bisect
import logging

import numpy as np
from cryptography.fernet import Fernet, InvalidToken

from services.errors import AudioDecryptionError

logger = logging.getLogger(__name__)

_BYTES_PER_SAMPLE = 2


class AudioCipher:
    """Encrypts and decrypts audio chunks; a no-op when no key is configured."""

    def __init__(self, key: str | None) -> None:
        """Args:
        key: a Fernet key (already validated by `Settings`), or None to hold audio in the clear.
        """
        self._fernet = Fernet(key.encode()) if key else None

    def seal(self, clear: bytes) -> bytes:
        return self._fernet.encrypt(clear) if self._fernet else clear

    def open(self, sealed: bytes) -> bytes:
        """Raises:
        AudioDecryptionError: the chunk was sealed with another key or tampered with.
        """
        if self._fernet is None:
            return sealed
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken as exc:
            raise AudioDecryptionError(
                "Audio decryption failed: the buffered audio does not match AUDIO_ENCRYPTION_KEY. "
                "Regenerate the key (Fernet) and restart the server."
            ) from exc


class SecureAudioBuffer:
    """Append-only store of one session's audio (PCM16, 16 kHz mono), addressed by sample index."""

    def __init__(self, cipher: AudioCipher) -> None:
        self._cipher = cipher
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # first sample index of each chunk, for bisection
        self._samples = 0

    @property
    def samples(self) -> int:
        """Number of samples held."""
        return self._samples

    @property
    def nbytes(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def append(self, pcm16: np.ndarray) -> None:
        """Store a block of int16 samples (sealed at once when a key is set)."""
        if pcm16.size == 0:
            return
        self._starts.append(self._samples)
        self._chunks.append(self._cipher.seal(pcm16.astype("<i2", copy=False).tobytes()))
        self._samples += int(pcm16.size)

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Float32 samples in [-1, 1] for [start, end), decrypted transiently.

        Raises:
            AudioDecryptionError: a chunk could not be decrypted.
        """
        end = self._samples if end is None else min(end, self._samples)
        start = max(0, start)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_left(self._starts, end)
        parts = [np.frombuffer(self._cipher.open(self._chunks[i]), dtype="<i2") for i in range(first, last)]
        joined = np.concatenate(parts)
        offset = start - self._starts[first]
        return joined[offset : offset + (end - start)].astype(np.float32) / 32768.0

    def clear(self) -> None:
        """Forget all audio (end of session)."""
        self._chunks.clear()
        self._starts.clear()
        self._samples = 0
