"""The audio key: `AUDIO_ENCRYPTION_KEY`, or one generated once and kept beside the data.

Audio goes to disk (the spool) as it arrives, so it must never be written without a key. With
none configured the server makes one on its first start, writes it to `DATA_DIR/audio.key`
readable by the owner only (0600), and uses it from then on; the log says so, never the key.
Whoever can read `DATA_DIR` can read the key too: set `AUDIO_ENCRYPTION_KEY` from a secret store
to keep the key away from the data.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from services.errors import ConfigurationError
from services.settings import Settings

logger = logging.getLogger(__name__)

KEY_FILE = "audio.key"


def audio_key(settings: Settings) -> str:
    """The Fernet key audio is sealed with (blocking: reads or creates the key file).

    Raises:
        ConfigurationError: the key file exists but is not a Fernet key, or cannot be read or written.
    """
    if settings.audio_encryption_key is not None:
        return settings.audio_encryption_key.get_secret_value()
    path = settings.data_dir / KEY_FILE
    try:
        if not path.exists():
            _create_key_file(path)
        return _read_key_file(path)
    except OSError as exc:
        raise ConfigurationError(f"DATA_DIR {settings.data_dir}: cannot read or create the audio key: {exc}") from exc


def _create_key_file(path: Path) -> None:
    """Write a new key owner-only; if another process wins the race, its key is used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # atomic, and fails if the key exists: never two keys
    except FileExistsError:
        return
    finally:
        temporary.unlink(missing_ok=True)
    logger.warning(
        "AUDIO_ENCRYPTION_KEY is not set: generated an audio key in %s (owner-only). Audio on disk cannot be "
        "read without it: back it up with the data, or set AUDIO_ENCRYPTION_KEY to keep it elsewhere.",
        path,
    )


def _read_key_file(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s is readable by others (mode %o): making it owner-only", path, mode)
        path.chmod(0o600)
    key = path.read_text().strip()
    try:
        Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{path} does not hold a Fernet key: restore it from a backup, or set AUDIO_ENCRYPTION_KEY"
        ) from exc
    logger.info("audio is sealed with the key in %s", path)
    return key
