from __future__ import annotations

import numpy as np
import pytest
from cryptography.fernet import Fernet

from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.errors import AudioDecryptionError, ConfigurationError
from services.settings import load_settings


def _pcm(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, int(seconds * 16000), dtype=np.int16)


@pytest.mark.parametrize("key", [None, Fernet.generate_key().decode()])
def test_reads_back_any_range_across_chunks(key: str | None) -> None:
    buffer = SecureAudioBuffer(AudioCipher(key))
    chunks = [_pcm(0.1, seed) for seed in range(7)]
    for chunk in chunks:
        buffer.append(chunk)
    everything = np.concatenate(chunks).astype(np.float32) / 32768.0
    assert buffer.samples == len(everything)
    np.testing.assert_array_equal(buffer.read(), everything)
    np.testing.assert_array_equal(buffer.read(1234, 9876), everything[1234:9876])
    assert buffer.read(500, 500).size == 0
    assert buffer.read(len(everything) - 10, len(everything) + 100).size == 10


def test_encrypted_chunks_never_hold_the_clear_audio() -> None:
    buffer = SecureAudioBuffer(AudioCipher(Fernet.generate_key().decode()))
    chunk = _pcm(0.2)
    buffer.append(chunk)
    stored = buffer._chunks[0]
    assert chunk.tobytes()[:64] not in stored
    assert stored.startswith(b"gAAAA")  # a Fernet token


def test_wrong_key_says_audio_decryption_failed() -> None:
    writer = SecureAudioBuffer(AudioCipher(Fernet.generate_key().decode()))
    writer.append(_pcm(0.1))
    reader = SecureAudioBuffer(AudioCipher(Fernet.generate_key().decode()))
    reader._chunks, reader._starts, reader._samples = writer._chunks, writer._starts, writer._samples
    with pytest.raises(AudioDecryptionError, match="Audio decryption failed"):
        reader.read()


def test_tampered_chunk_is_refused() -> None:
    buffer = SecureAudioBuffer(AudioCipher(Fernet.generate_key().decode()))
    buffer.append(_pcm(0.1))
    token = bytearray(buffer._chunks[0])
    token[40] ^= 0x01
    buffer._chunks[0] = bytes(token)
    with pytest.raises(AudioDecryptionError):
        buffer.read()


@pytest.mark.parametrize("bad_key", ["not-a-key", "a" * 44, Fernet.generate_key().decode()[:-4]])
def test_malformed_key_fails_at_start_up_naming_the_variable(bad_key: str) -> None:
    with pytest.raises(ConfigurationError, match="AUDIO_ENCRYPTION_KEY"):
        load_settings(_env_file=None, audio_encryption_key=bad_key)


def test_clear_forgets_the_audio() -> None:
    buffer = SecureAudioBuffer(AudioCipher(None))
    buffer.append(_pcm(0.5))
    buffer.clear()
    assert buffer.samples == 0 and buffer.nbytes == 0 and buffer.read().size == 0
