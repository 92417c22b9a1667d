"""The private PostgreSQL server of tests/pg_server.py: start, restart and kill do what the
restart and crash tests rely on."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import psycopg
import pytest

from tests import pg_server

pytestmark = pytest.mark.slow


def count_rows(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
        assert row is not None
        return row[0]


def test_start_restart_kill(tmp_path: Path) -> None:
    pg_server.require()
    with pg_server.PrivateServer(tmp_path) as server:
        assert server.running and server.port != 5432
        url = server.create_database("seer_private")
        assert url == f"postgresql://postgres@127.0.0.1:{server.port}/seer_private"
        with psycopg.connect(url) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings "
                    "WHERE name IN ('fsync', 'synchronous_commit', 'listen_addresses')"
                ).fetchall()
            )
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1)")
        # The durability tests mean nothing on a server that does not sync its commits.
        assert settings == {
            "fsync": "on",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1",
        }

        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid
        assert count_rows(url) == 1, "a committed row survives a clean restart"

        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO t VALUES (2)")
        # A client connected at the crash: its backend must go away with the postmaster.
        held = psycopg.connect(url)
        postmaster = server.pid
        assert postmaster is not None
        backends = psutil.Process(postmaster).children(recursive=True)
        assert backends

        server.kill()

        assert not server.running
        assert not psutil.pid_exists(postmaster)
        assert not [p for p in backends if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        held.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", server.port)) != 0, "nothing listens any more"

        # Crash recovery replays the WAL: both committed rows are there.
        server.start()
        assert count_rows(url) == 2
    assert not server.running


def test_stop_modes_and_bad_mode(tmp_path: Path) -> None:
    pg_server.require()
    with pg_server.PrivateServer(tmp_path) as server:
        with pytest.raises(ValueError, match="stop mode"):
            server.stop("gentle")
        server.stop("smart")
        assert not server.running
        server.start()
        server.stop("immediate")
        assert not server.running
        server.start()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
