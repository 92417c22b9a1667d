"""A private PostgreSQL server for tests that restart, stop or kill it.

The machine's shared server (127.0.0.1:5432) serves every test and every session at once, so no
test may stop it. A test that needs to see what the code does when its database goes away starts
its own:

    from tests import pg_server

    def test_reconnects(tmp_path):
        pg_server.require()                       # skip (or, under CI, fail) without the binaries
        with pg_server.PrivateServer(tmp_path) as server:
            server.create_database("seer")
            url = server.url("seer")              # postgresql://postgres@127.0.0.1:PORT/seer
            ...
            server.restart()                      # same port, same data
            server.kill()                         # SIGKILL the postmaster: a crash

The server keeps fsync and synchronous_commit on, so what a test sees after `kill()` is what a
real crash of the server process leaves. The port stays the same across restarts, so URLs handed
out before a restart keep working after it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

PG_BIN = Path(os.environ.get("SEER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
BINARIES = ("initdb", "postgres", "pg_isready")
SERVER_USER = "postgres"  # the only role the cluster has (initdb -U), and, as root, the OS user
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# After the postmaster's SIGKILL its backends notice (postmaster-death pipe) and exit on their
# own; a server can start again on the data directory only once they have.
ORPHAN_TIMEOUT = 10.0
POLL = 0.02

# pg_ctl's stop modes, as the signals it sends the postmaster.
STOP_SIGNALS = {
    "smart": signal.SIGTERM,  # wait for the clients to disconnect
    "fast": signal.SIGINT,  # roll back and disconnect the clients, then a clean shutdown
    "immediate": signal.SIGQUIT,  # no shutdown checkpoint: crash recovery at the next start
}

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # The durability tests need both: a commit is on disk when the client hears of it.
    "fsync": "on",
    "synchronous_commit": "on",
    "shared_buffers": "16MB",
    "max_connections": "100",
    # Several private servers (and the shared one) share the machine's memory.
    "huge_pages": "off",
    # Into the log file the test can read when a start fails; no collector process.
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class ServerUnavailable(RuntimeError):
    """The binaries or the user needed to run a private server are not on this machine."""


def missing_reason() -> str | None:
    """Why no private server can run here, or None when one can."""
    missing = [name for name in BINARIES if not (PG_BIN / name).is_file()]
    if missing:
        return (
            f"PostgreSQL server binaries missing from {PG_BIN}: {', '.join(missing)} "
            "(Debian package postgresql-15; SEER_TEST_PG_BIN points elsewhere)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} user to run the server as"
    return None


def require() -> None:
    """Skips the calling test when no private server can run here; fails it under CI, where a
    missing server would otherwise turn its tests into silent skips."""
    import pytest

    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"private PostgreSQL server needed under CI: {reason}")
    pytest.skip(reason)


def _as_server_user() -> dict[str, Any]:
    """subprocess keyword arguments that run a command as the server's owner: PostgreSQL refuses
    to run as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": SERVER_USER, "group": pwd.getpwnam(SERVER_USER).pw_gid, "extra_groups": []}


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _clean_environment() -> dict[str, str]:
    # A PGDATA, PGPORT or PGHOST of the caller's must not steer the private server's tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _free_port() -> int:
    # The kernel's pick; the tiny race until postgres binds it is handled by start()'s retry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits until none of `procs` runs; returns those still running at the deadline.

    Not psutil.wait_procs: the orphans are init's children, not ours, and it polls those at
    a growing interval (a second here), where they exit in ~10 ms. A zombie counts as gone."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(POLL / 4)


_template: Path | None = None


def _template_cluster() -> Path:
    """One initdb per test process, copied for each server: a copy takes ~0.1 s, initdb ~0.6 s."""
    global _template
    if _template is None:
        top = Path(tempfile.mkdtemp(prefix="seer-pg-template-"))
        atexit.register(shutil.rmtree, top, ignore_errors=True)
        _give_to_server_user(top)
        data = top / "data"
        command = [str(PG_BIN / "initdb"), "-D", str(data), "-U", SERVER_USER, "-A", "trust"]
        # --no-sync: only initdb's own files skip their fsync (the copy is written anew anyway);
        # the server itself runs with fsync on.
        command += ["-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"]
        done = subprocess.run(
            command,
            cwd=top,
            env=_clean_environment(),
            capture_output=True,
            text=True,
            **_as_server_user(),
        )
        if done.returncode != 0:
            raise ServerUnavailable(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/pg_server.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        _template = data
    return _template


class PrivateServer:
    """A PostgreSQL server of the test's own, on a free port of 127.0.0.1.

    Its data directory is under `base` (the test's tmp_path) when the server's user can reach
    it. As root the server runs as the `postgres` user, which cannot enter pytest's directories
    (mode 0700, root's), so the data then lives in a directory of its own under the system's
    temporary directory, removed by `close()` (and so by the context manager)."""

    def __init__(self, base: Path) -> None:
        reason = missing_reason()
        if reason is not None:
            raise ServerUnavailable(reason)
        self.base = Path(base)
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._own_root: Path | None = None
        self._log_offset = 0
        self.root = self._make_root()
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        subprocess.run(["cp", "-a", str(_template_cluster()), str(self.data_dir)], check=True)

    def _make_root(self) -> Path:
        # The unix socket lives in the data directory; its path must fit in sun_path (107 bytes).
        candidate = self.base / "pg"
        fits = len(str(candidate / "data" / f".s.PGSQL.{self.port}")) < 100
        if os.geteuid() != 0 and fits:
            candidate.mkdir(parents=True)
            return candidate
        root = Path(tempfile.mkdtemp(prefix="seer-pg-"))
        _give_to_server_user(root)
        self._own_root = root
        return root

    # -- the server's life -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return self.proc.pid if self.running and self.proc else None

    def start(self, timeout: float = START_TIMEOUT) -> PrivateServer:
        """Starts the server and returns once it accepts connections."""
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        while True:
            self._spawn()
            failure = self._wait_ready(deadline)
            if failure is None:
                return self
            log = self._log_since_spawn()
            if "could not bind" in log or "Address already in use" in log:
                # Someone took the port between _free_port() and the bind: pick another.
                self.port = _free_port()
            elif "pre-existing shared memory block" not in log:
                # Only those two pass with time (the other: backends of a killed server still
                # exiting); anything else would fail the same way again.
                raise RuntimeError(f"private PostgreSQL server did not start: {failure}\n{log}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"private PostgreSQL server did not start: {failure}\n{log}")

    def _spawn(self) -> None:
        command = [str(PG_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        command += ["-c", f"unix_socket_directories={self.data_dir}"]
        with open(self.log_path, "ab") as log:
            # The log grows across restarts; a failed start is judged by its own lines only.
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=_clean_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C meant for pytest must not stop it mid-test.
                start_new_session=True,
                **_as_server_user(),
            )

    def _wait_ready(self, deadline: float) -> str | None:
        """None once pg_isready says yes; else why not (the postmaster exited or time ran out)."""
        assert self.proc is not None
        isready = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        while True:
            code = self.proc.poll()
            if code is not None:
                return f"postgres exited with {code}"
            ready = subprocess.run(isready, env=_clean_environment(), check=False)
            if ready.returncode == 0:
                return None
            if time.monotonic() >= deadline:
                self._force_kill()
                return "not accepting connections in time"
            time.sleep(POLL)

    def stop(self, mode: str = "fast", timeout: float = STOP_TIMEOUT) -> None:
        """Shuts the server down as `pg_ctl stop -m MODE` would (smart, fast or immediate) and
        waits until the postmaster has exited."""
        if mode not in STOP_SIGNALS:
            raise ValueError(f"stop mode {mode!r}: one of {', '.join(STOP_SIGNALS)}")
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(STOP_SIGNALS[mode])
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._force_kill()
            raise RuntimeError(
                f"private PostgreSQL server did not stop ({mode}) in {timeout}s: killed"
            ) from None

    def restart(self, mode: str = "fast") -> PrivateServer:
        """Stops the server (`mode`) and starts it again on the same port and data."""
        self.stop(mode)
        return self.start()

    def kill(self) -> None:
        """SIGKILLs the postmaster, as a crash would, and returns once its backends are gone
        too (they exit by themselves when they notice), so the server is down for every client
        and a later start() finds the data directory free."""
        if not self.running:
            return
        self._force_kill()

    def _force_kill(self) -> None:
        assert self.proc is not None
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        alive = _wait_gone(children, ORPHAN_TIMEOUT)
        # A backend deep in a long query may not look at the postmaster-death pipe in time.
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        _wait_gone(alive, ORPHAN_TIMEOUT)

    def close(self) -> None:
        """Stops the server (immediately: the test is over) and removes what it made outside
        the test's own directory."""
        if self.running:
            # stop() kills a server that does not stop in time, then says so: either way it is
            # down, and the test is over.
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        if self._own_root is not None:
            shutil.rmtree(self._own_root, ignore_errors=True)
            self._own_root = None

    def __enter__(self) -> PrivateServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests use ----------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Creates database `name` and returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def _log_since_spawn(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return "(no server log)"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<PrivateServer 127.0.0.1:{self.port} {state} data={self.data_dir}>"
