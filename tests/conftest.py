"""Fixtures: a real server on a loopback port, shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import make_settings, run_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the real app (default settings, offline summariser) served by uvicorn."""
    with run_server(make_settings(tmp_path_factory.mktemp("live_server"))) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A throw-away PostgreSQL server for this test run (tests/pg_server.py); its admin URL."""
    from tests.pg_server import postgres_server

    with postgres_server() as url:
        yield url
