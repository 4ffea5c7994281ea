"""Keeping the server's memory flat over many meetings (glibc's malloc).

Each inference thread (CTranslate2, ONNX Runtime, torch) gets its own glibc malloc arena, and
freed blocks stay mapped in whichever arena held them: over many meetings the process grows in
steps although nothing is leaked. Two arenas instead of eight per core, and handing free pages
back to the system after each meeting, keep it flat (see README "Memory"). Elsewhere than glibc
both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt() parameter number, from glibc's malloc.h
MALLOC_ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas (call before the inference threads start: it applies to new ones)."""
    if _LIBC is not None and not _LIBC.mallopt(_M_ARENA_MAX, arenas):
        logger.warning("could not limit malloc arenas to %d", arenas)


def release_free_memory() -> None:
    """Give the pages malloc holds but does not use back to the system (blocks for a few ms)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
