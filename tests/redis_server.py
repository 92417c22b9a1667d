"""A private Redis server for tests that restart, flush, fill or kill it.

The machine's shared Redis (127.0.0.1:6379) serves every test at once (each in a database
number of its own), so no test may stop or flush it whole. A test that needs to see what the
code does when its queue's Redis goes away starts its own:

    from tests.redis_server import PrivateRedis

    def test_reconnects(tmp_path):
        with PrivateRedis(tmp_path) as server:   # fails (never skips) without redis-server
            url = server.url()                   # redis://127.0.0.1:PORT/0
            ...
            server.restart()                     # same port; without AOF the keys are gone
            server.kill()                        # SIGKILL: a crash
            server.client().flushdb()

By default it persists nothing (`--save '' --appendonly no`), as this machine's Redis and many
caches run: a restart empties the queue. `PrivateRedis(tmp_path, appendonly=True)` keeps an
append-only file with `appendfsync always`. The port stays the same across restarts, so URLs
handed out before one keep working after it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
POLL = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(
        self, base: Path, *, appendonly: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian's redis-server package)"
        self.binary = binary
        self.dir = base / "redis-private"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "redis.log"

    # -- life --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc else None

    def start(self, timeout: float = START_TIMEOUT) -> PrivateRedis:
        assert not self.running, "already running"
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log),
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            try:
                if self.client(timeout=1).ping():
                    return self
            except redis.exceptions.AuthenticationError:
                return self  # up, and asking for the password it was started with
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server not ready after {timeout}s: {self.log_tail()}")
            time.sleep(POLL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """A clean shutdown (SIGTERM: Redis writes its AOF, not an RDB with --save '')."""
        if self.running and self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: what a crash of the server leaves."""
        if self.running and self.proc:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> PrivateRedis:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- use ---------------------------------------------------------------------------------

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, timeout: float = 5.0, password: str | None = None) -> Any:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=password,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"PrivateRedis(port={self.port}, running={self.running})"
