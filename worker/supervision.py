"""supervisord, spoken to over its unix socket: start and stop the local one, read its state."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import psutil
from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

from worker.layout import Layout

PROGRAMS = ("seer-postmaster", "seer-scheduler")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SupervisorError(RuntimeError):
    """supervisord cannot be reached or refused; the message is one line."""


@dataclass(frozen=True)
class ProgramInfo:
    name: str
    group: str
    state: str
    pid: int
    start: float
    now: float
    exitstatus: int
    spawnerr: str
    description: str

    @property
    def uptime(self) -> float:
        return max(0.0, self.now - self.start) if self.state == "RUNNING" else 0.0


def socket_path(layout: Layout) -> Path:
    return layout.run / "supervisor.sock"


def config_path() -> Path:
    explicit = os.environ.get("SEER_SUPERVISORD_CONF")
    path = Path(explicit) if explicit else PROJECT_ROOT / "supervisor" / "supervisord.conf"
    if not path.is_file():
        raise SupervisorError(
            f"supervisord configuration {path} not found: set SEER_SUPERVISORD_CONF to it"
        )
    return path


class _UnixConnection(UnixStreamHTTPConnection):
    def connect(self) -> None:
        # supervisor's own connection has no timeout: a hung supervisord would hang us.
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socketfile)


class _Transport(SupervisorTransport):
    def __init__(self, sock: Path, timeout: float) -> None:
        super().__init__(None, None, f"unix://{sock}")

        def connect() -> _UnixConnection:
            conn = _UnixConnection("localhost", timeout=timeout)
            conn.socketfile = str(sock)
            return conn

        self._get_connection = connect


class Supervisor:
    def __init__(self, sock: Path, timeout: float = 5.0) -> None:
        self.sock = sock
        self.transport = _Transport(sock, timeout)
        # The host part is ignored: the transport always connects to the unix socket.
        self.proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self.transport)

    def _call(self, name: str, *args):
        try:
            return getattr(self.proxy.supervisor, name)(*args)
        except xmlrpc.client.Fault as fault:
            raise SupervisorError(f"supervisord refused {name}: {fault.faultString}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            # A failed request leaves the persistent connection unusable: start afresh.
            self.transport.close()
            raise SupervisorError(
                f"cannot reach supervisord at unix://{self.sock} ("
                f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}); "
                "is it running? (`seer up`)"
            ) from None

    def reachable(self) -> bool:
        try:
            return self._call("getState")["statename"] == "RUNNING"
        except SupervisorError:
            return False

    def programs(self) -> list[ProgramInfo]:
        keys = ("name", "group", "statename", "pid", "start", "now", "exitstatus", "spawnerr")
        return [
            ProgramInfo(*(p[k] for k in keys), p["description"])
            for p in self._call("getAllProcessInfo")
        ]

    def pid(self) -> int:
        return self._call("getPID")

    def start(self, name: str) -> None:
        self._call("startProcess", name, True)

    def stop(self, name: str) -> None:
        self._call("stopProcess", name, True)

    def group_names(self) -> list[str]:
        return sorted({p.group for p in self.programs()})

    def stop_group(self, group: str) -> None:
        self._call("stopProcessGroup", group, True)

    def remove_group(self, group: str) -> None:
        self._call("removeProcessGroup", group)

    def shutdown(self) -> None:
        self._call("shutdown")


def render(
    *, user: str, directory: Path, log_dir: Path, venv: Path, storage: Path, env_file: Path
) -> str:
    """The production program file with this installation's paths."""
    template = (PROJECT_ROOT / "supervisor" / "seer-postmaster.conf").read_text()
    values = {
        "@USER@": user,
        "@DIR@": str(directory),
        "@LOG_DIR@": str(log_dir),
        "@VENV@": str(venv),
        "@STORAGE@": str(storage),
        "@ENV_FILE@": str(env_file),
    }
    for key, value in values.items():
        if any(c in value for c in '"%\n'):
            raise SupervisorError(f"{key.strip('@').lower()} {value!r} cannot go in the file")
        template = template.replace(key, value)
    return template


def resolve(sup: Supervisor, program: str | None) -> list[ProgramInfo]:
    """The programs a command acts on: one by name (with or without `seer-`), or all of Seer's."""
    programs = [p for p in sup.programs() if p.name in PROGRAMS]
    if program is None:
        return programs
    wanted = program if program.startswith("seer-") else f"seer-{program}"
    found = [p for p in programs if p.name == wanted]
    if not found:
        known = ", ".join(p.name for p in programs) or "none"
        raise SupervisorError(f"no program {program!r} in supervisord (Seer's programs: {known})")
    return found


def full_name(info: ProgramInfo) -> str:
    return f"{info.group}:{info.name}" if info.group != info.name else info.name


def _wait(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def seer_executable() -> str:
    found = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "seer" else None
    if found and found.is_file():
        return str(found)
    beside = Path(sys.executable).parent / "seer"
    if beside.is_file():
        return str(beside)
    which = shutil.which("seer")
    if which:
        return which
    raise SupervisorError("cannot find the `seer` executable to run the workers with")


def up(layout: Layout, *, timeout: float = 20.0) -> tuple[bool, list[ProgramInfo]]:
    """Starts the local supervisord with both consumers; (started_now, programs)."""
    sup = Supervisor(socket_path(layout))
    started = False
    if not sup.reachable():
        supervisord = shutil.which("supervisord") or str(
            Path(sys.executable).parent / "supervisord"
        )
        env = dict(os.environ)
        env.update(
            SEER_STORAGE_ROOT=str(layout.root),
            SEER_BIN=seer_executable(),
            SEER_WORKDIR=os.getcwd(),
        )
        result = subprocess.run(
            [supervisord, "-c", str(config_path())],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise SupervisorError(
                "supervisord did not start: "
                + (detail[-1] if detail else f"exit {result.returncode}")
            )
        if not _wait(sup.reachable, timeout):
            raise SupervisorError(
                f"supervisord did not answer on {socket_path(layout)} within {timeout:.0f}s; "
                f"see {layout.logs / 'supervisord.log'}"
            )
        started = True
    for info in sup.programs():
        if info.state in ("STOPPED", "EXITED", "FATAL", "BACKOFF") and info.state != "RUNNING":
            try:
                sup.start(full_name(info))
            except SupervisorError as exc:
                if "ALREADY_STARTED" not in str(exc):
                    raise
    _wait(lambda: all(p.state == "RUNNING" for p in sup.programs()), timeout)
    return started, sup.programs()


def down(layout: Layout, *, timeout: float = 90.0) -> bool:
    """Stops the local supervisord and its consumers (gracefully); False if it was not running."""
    sup = Supervisor(socket_path(layout))
    if not sup.reachable():
        return False
    pid = sup.pid()
    sup.shutdown()

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    if not _wait(gone, timeout, 0.1):
        raise SupervisorError(f"supervisord (pid {pid}) did not stop within {timeout:.0f}s")
    return True
