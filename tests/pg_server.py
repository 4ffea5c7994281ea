"""A throw-away PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries,
`initdb` in a temp dir, `pg_ctl start` on a free loopback port, stopped by PID and deleted.

initdb refuses to run as root (CI runs as root), so there the cluster belongs to the `postgres`
user and every command runs through `runuser -u postgres --`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support import free_port


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory; a clear error when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` (make test does it)")
    return found[-1].parent


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private PostgreSQL; yield the admin URL `postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres`."""
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    data = Path(tempfile.mkdtemp(prefix="meeting-pg-"))
    if as_root:
        owner = pwd.getpwnam("postgres")
        os.chown(data, owner.pw_uid, owner.pw_gid)
    port = free_port()
    cluster = data / "cluster"
    try:
        _run([*prefix, str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "-A", "trust", "--no-sync"])
        settings = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        _run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cluster),
                "-o",
                settings,
                "-l",
                str(data / "log"),
                "-w",
                "start",
            ]
        )
        pid = int((cluster / "postmaster.pid").read_text().split()[0])
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            _stop(pid)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[-1]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _stop(pid: int) -> None:
    """Fast shutdown (SIGINT) of the postmaster we started; wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    # A container's PID 1 may not reap orphans: a zombie postmaster has stopped all the same.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def create_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server at `admin_url`; return its SQLAlchemy URL."""
    import asyncpg

    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
