"""The private Redis of tests/redis_server.py: restart, kill and AOF do what the lost-doorbell
and outage tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.redis_server import PrivateRedis


def test_a_restart_without_persistence_empties_it_and_keeps_its_port(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path) as server:
        assert server.port != 6379
        server.client().lpush("k", b"1")
        port = server.port
        server.restart()
        assert server.port == port
        assert server.client().llen("k") == 0


def test_with_appendonly_a_kill_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path, appendonly=True) as server:
        server.client().lpush("k", b"1", b"2")
        server.kill()
        assert not server.running
        with pytest.raises(redis.exceptions.ConnectionError):
            server.client(timeout=1).ping()
        server.start()
        assert server.client().llen("k") == 2
