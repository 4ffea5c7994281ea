"""The audio spool's file format and key handling, on real files: sealed records, torn tails,
another key, gaps, locks, retention on finish, and the generated key's permissions."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from cryptography.fernet import Fernet

from observability import Metrics
from services.audio_buffer import AudioCipher
from services.data_key import KEY_FILE, audio_key
from services.errors import ConfigurationError, SpoolFormatError, SpoolKeyError
from services.spool import MAGIC, AudioSpool, SpoolMeta, lock_spool, read_spool, spool_path
from services.spool_directory import SpoolDirectory, SpooledAudioBuffer
from tests.support import load_wav, make_settings

pytestmark = pytest.mark.timeout(60)

KEY = Fernet.generate_key().decode()


def speech() -> np.ndarray:
    pcm, rate = load_wav("one_voice.wav")
    assert rate == 16000
    return pcm


def write_spool(path: Path, pcm: np.ndarray, *, chunk: int = 1600, complete: bool = False) -> AudioSpool:
    """A spool as a session leaves it: chunks appended at their offsets, flushed, closed."""
    spool = AudioSpool(path, Fernet(KEY.encode()), SpoolMeta("m1", 1000.0, title="Sync"), delete_when_finished=False)
    for start in range(0, pcm.size, chunk):
        spool.append(pcm[start : start + chunk], start)
    if complete:
        spool.audio_complete(pcm.size)
    spool.close()
    assert spool.flush()
    return spool


def test_a_spool_gives_back_every_sample_and_its_meeting(tmp_path: Path) -> None:
    pcm = speech()
    path = tmp_path / "m1.spool"
    write_spool(path, pcm, complete=True)
    contents = read_spool(path, Fernet(KEY.encode()))
    assert np.array_equal(contents.pcm16, pcm)
    assert (contents.meta.meeting_id, contents.meta.title, contents.meta.created_at) == ("m1", "Sync", 1000.0)
    assert contents.complete and not contents.dropped_tail and contents.gaps == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_clear_pcm_reaches_the_disk(tmp_path: Path) -> None:
    pcm = speech()
    path = tmp_path / "m1.spool"
    write_spool(path, pcm)
    on_disk = path.read_bytes()
    voiced = pcm[16000:16064].tobytes()  # 64 samples of speech, one second in
    assert np.abs(pcm[16000:16064]).max() > 100
    assert voiced not in on_disk
    assert voiced in read_spool(path, Fernet(KEY.encode())).pcm16.tobytes()  # the search can find it


@pytest.mark.parametrize("cut", [1, 7, 200, 1000])
def test_a_record_torn_by_a_kill_is_dropped_and_the_rest_kept(tmp_path: Path, cut: int) -> None:
    pcm = speech()
    path = tmp_path / "m1.spool"
    write_spool(path, pcm, chunk=1600)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - cut)
    contents = read_spool(path, Fernet(KEY.encode()))
    assert contents.dropped_tail
    kept = contents.pcm16.size
    assert kept < pcm.size and kept >= pcm.size - 2 * 1600  # at most the last chunk (a tenth of a second)
    assert np.array_equal(contents.pcm16, pcm[:kept])


def test_a_damaged_last_record_is_dropped(tmp_path: Path) -> None:
    pcm = speech()
    path = tmp_path / "m1.spool"
    write_spool(path, pcm)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    contents = read_spool(path, Fernet(KEY.encode()))
    assert contents.dropped_tail and np.array_equal(contents.pcm16, pcm[: contents.pcm16.size])


def test_another_key_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "m1.spool"
    write_spool(path, speech())
    with pytest.raises(SpoolKeyError, match="another key"):
        read_spool(path, Fernet(Fernet.generate_key()))


def test_a_file_that_is_no_spool_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "m1.spool"
    path.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(SpoolFormatError):
        read_spool(path, Fernet(KEY.encode()))
    path.write_bytes(MAGIC)
    with pytest.raises(SpoolFormatError):
        read_spool(path, Fernet(KEY.encode()))


def test_a_lost_record_in_the_middle_becomes_silence_in_place(tmp_path: Path) -> None:
    pcm = speech()
    path = tmp_path / "m1.spool"
    spool = AudioSpool(path, Fernet(KEY.encode()), SpoolMeta("m1", 1.0), delete_when_finished=False)
    spool.append(pcm[:1600], 0)
    spool.append(pcm[3200:4800], 3200)  # 1600..3200 never arrived
    spool.close()
    spool.flush()
    contents = read_spool(path, Fernet(KEY.encode()))
    assert contents.gaps == 1 and contents.pcm16.size == 4800
    assert not contents.pcm16[1600:3200].any()
    assert np.array_equal(contents.pcm16[3200:], pcm[3200:4800])


def test_an_open_spool_is_locked_against_recovery_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "m1.spool"
    spool = AudioSpool(path, Fernet(KEY.encode()), SpoolMeta("m1", 1.0), delete_when_finished=False)
    spool.append(speech()[:1600], 0)
    assert not spool.flush()
    assert path.exists() and lock_spool(path) is None  # a live owner
    spool.close()
    assert spool.flush()
    fd = lock_spool(path)
    assert fd is not None
    os.close(fd)


def test_nothing_is_written_for_a_session_without_audio(tmp_path: Path) -> None:
    spools = SpoolDirectory(tmp_path, KEY, 0.0, Metrics())
    spool = spools.open("quiet")
    spool.close()
    spools.flush_all()
    assert not spools.is_open("quiet") and spools.files() == []


@pytest.mark.parametrize(("days", "kept"), [(0.0, False), (7.0, True)])
def test_a_finished_meeting_keeps_its_audio_for_the_retention(tmp_path: Path, days: float, kept: bool) -> None:
    metrics = Metrics()
    spools = SpoolDirectory(tmp_path, KEY, days, metrics)
    buffer = SpooledAudioBuffer(AudioCipher(KEY), spools.open("m2"))
    buffer.append(speech()[:16000])
    spools.flush_all()
    assert spools.total_bytes() > 32000  # sealed: larger than the clear second
    assert b"meeting_assistant_spool_bytes " in metrics.render()
    buffer.spool.finished()
    spools.flush_all()
    assert spool_path(spools.path, "m2").exists() is kept
    assert not spools.is_open("m2")


def test_deleting_a_meeting_removes_its_open_spool(tmp_path: Path) -> None:
    spools = SpoolDirectory(tmp_path, KEY, 7.0, Metrics())
    spool = spools.open("m3")
    spool.append(speech()[:1600], 0)
    spools.flush_all()
    spools.delete("m3")
    spool.append(speech()[:1600], 1600)
    spools.flush_all()
    assert spools.files() == [] and not spools.is_open("m3")


async def test_the_flusher_puts_audio_on_disk_without_a_close(tmp_path: Path) -> None:
    spools = SpoolDirectory(tmp_path, KEY, 0.0, Metrics())
    flusher = asyncio.create_task(spools.run())
    try:
        buffer = SpooledAudioBuffer(AudioCipher(KEY), spools.open("m4"))
        buffer.append(speech()[:8000])
        path = spool_path(spools.path, "m4")
        for _ in range(200):  # polled: no timed assertion
            if path.exists() and read_spool(path, Fernet(KEY.encode())).pcm16.size == 8000:
                break
            await asyncio.sleep(0.05)
        assert np.array_equal(read_spool(path, Fernet(KEY.encode())).pcm16, speech()[:8000])
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)


def test_a_key_is_generated_once_owner_only_and_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    with caplog.at_level(logging.INFO):
        key = audio_key(settings)
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(key.encode())  # a valid key
    assert audio_key(settings) == key  # kept, not made anew
    assert str(path) in caplog.text and key not in caplog.text
    assert [p.name for p in settings.data_dir.iterdir()] == [KEY_FILE]  # no temporary file left


def test_a_configured_key_is_used_and_no_file_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, audio_encryption_key=KEY)
    assert audio_key(settings) == KEY
    assert not (settings.data_dir / KEY_FILE).exists()


def test_a_key_file_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    key = audio_key(settings)
    path = settings.data_dir / KEY_FILE
    path.chmod(0o644)
    assert audio_key(settings) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_key_file_stops_start_up_with_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / KEY_FILE).write_text("not a key")
    (settings.data_dir / KEY_FILE).chmod(0o600)
    with pytest.raises(ConfigurationError, match="AUDIO_ENCRYPTION_KEY"):
        audio_key(settings)
