"""supervisord, spoken to over its unix socket: start and stop the local one, read its state."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import psutil
from supervisor.states import (
    RUNNING_STATES,
    STOPPED_STATES,
    ProcessStates,
    SupervisorStates,
    getProcessStateDescription,
)
from supervisor.xmlrpc import Faults, SupervisorTransport, UnixStreamHTTPConnection

# Defined apart (and known here by the same names): a consumer imports them without the client.
from worker.fleet.programs import PROGRAMS, SupervisorError
from worker.layout import Layout

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# How long a call waits for supervisord's answer before it counts as unreachable.
CALL_TIMEOUT = 5.0
# A start or a stop is answered only once the program has started or stopped: a graceful stop
# waits for the running batch, up to stopwaitsecs (120 s in the production file), then
# supervisord kills it and answers.
WAITING_CALL_TIMEOUT = 150.0


@dataclass(frozen=True)
class ProgramInfo:
    name: str
    group: str
    state: str  # supervisord's name for `code`, as operators read it: "RUNNING"
    pid: int
    start: float
    now: float
    exitstatus: int
    spawnerr: str
    description: str

    stop: float = 0.0  # when it last stopped or exited (0: not since supervisord started)
    code: int = ProcessStates.UNKNOWN  # a supervisor.states.ProcessStates value

    @property
    def running(self) -> bool:
        return self.code == ProcessStates.RUNNING

    @property
    def started(self) -> bool:
        """Running or on its way (STARTING, BACKOFF): supervisord refuses to start it again."""
        return self.code in RUNNING_STATES

    @property
    def stopped(self) -> bool:
        return self.code in STOPPED_STATES

    @property
    def uptime(self) -> float:
        return max(0.0, self.now - self.start) if self.running else 0.0


@dataclass(frozen=True)
class LastExit:
    """How a program's last process ended, in supervisord's words ("terminated by SIGKILL")."""

    at: float
    how: str  # "terminated by SIGKILL", "exit status 1"
    requested: bool  # stopped on request (stop, restart, shutdown), not died by itself
    expected: bool

    @property
    def short(self) -> str:
        """ "SIGKILL", "exit 1", "stopped": fits a console line."""
        if self.requested:
            return "stopped"
        if self.how.startswith("terminated by "):
            return self.how.removeprefix("terminated by ").split()[0]
        return self.how.replace("exit status", "exit")

    def describe(self) -> str:
        if self.requested:
            return f"stopped on request ({self.how})"
        return f"{self.how} ({'expected' if self.expected else 'not expected'})"


# supervisord's own log line for every end of a process (supervisor/process.py finish()):
#   2025-01-01 12:00:00,123 WARN exited: seer-postmaster (terminated by SIGKILL; not expected)
#   2025-01-01 12:00:00,123 INFO stopped: seer-postmaster (exit status 0)
_EXIT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \w+ (exited|stopped): (\S+) \((.*)\)$"
)
# Enough of supervisord's log for the last exits: it holds only process state changes.
LOG_TAIL = 32 * 1024


def parse_exits(log: str) -> dict[str, LastExit]:
    """The last exit of each program named in (the tail of) supervisord's log."""
    found: dict[str, LastExit] = {}
    for line in log.splitlines():
        match = _EXIT_LINE.match(line.strip())
        if not match:
            continue
        stamp, verb, name, detail = match.groups()
        at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
        how, _, expectation = detail.partition("; ")
        found[name] = LastExit(
            at, how, verb == "stopped", verb == "stopped" or expectation == "expected"
        )
    return found


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
    def __init__(self, sock: Path, timeout: float | None = None) -> None:
        self.sock = sock
        timeout = CALL_TIMEOUT if timeout is None else timeout
        self.transport = _Transport(sock, timeout)
        # Calls that wait for a program to start or stop have a connection of their own, whose
        # timeout outlasts supervisord's wait: a stop while a batch of 30 s finishes is not
        # "cannot reach supervisord".
        self.waiting = _Transport(sock, max(timeout, WAITING_CALL_TIMEOUT))
        # The host part is ignored: the transport always connects to the unix socket.
        self.proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self.transport)
        self.waiting_proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self.waiting)

    def _call(self, name: str, *args, wait: bool = False):
        proxy, transport = (
            (self.waiting_proxy, self.waiting) if wait else (self.proxy, self.transport)
        )
        try:
            return getattr(proxy.supervisor, name)(*args)
        except xmlrpc.client.Fault as fault:
            raise SupervisorError(
                f"supervisord refused {name}: {fault.faultString}", fault=fault.faultCode
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            # A failed request leaves the persistent connection unusable: start afresh.
            transport.close()
            raise SupervisorError(
                f"cannot reach supervisord at unix://{self.sock} ("
                f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}); "
                "is it running? (`seer up`)",
                unreachable=True,
            ) from None

    def reachable(self) -> bool:
        try:
            return self._call("getState")["statecode"] == SupervisorStates.RUNNING
        except SupervisorError:
            return False

    def programs(self) -> list[ProgramInfo]:
        keys = ("name", "group", "pid", "start", "now", "exitstatus", "spawnerr", "description")
        return [
            ProgramInfo(
                state=getProcessStateDescription(p["state"]) or p["statename"],
                stop=p.get("stop", 0),
                code=p["state"],
                **{k: p[k] for k in keys},
            )
            for p in self._call("getAllProcessInfo")
        ]

    def last_exits(self, programs: list[ProgramInfo]) -> dict[str, LastExit]:
        """How each program's last process ended: supervisord's log says which signal or
        exit status; its process info only has the stop time and the exit status (-1 for
        any signal), the fallback when the line has been rotated away."""
        try:
            found = parse_exits(self._call("readLog", -LOG_TAIL, 0))
        except SupervisorError:
            found = {}
        for p in programs:
            if p.name not in found and p.stop:
                how = "killed by a signal" if p.exitstatus < 0 else f"exit status {p.exitstatus}"
                found[p.name] = LastExit(float(p.stop), how, False, False)
        return {p.name: found[p.name] for p in programs if p.name in found}

    def pid(self) -> int:
        return self._call("getPID")

    def start(self, name: str) -> None:
        self._call("startProcess", name, True, wait=True)

    def stop(self, name: str) -> None:
        self._call("stopProcess", name, True, wait=True)

    def group_names(self) -> list[str]:
        return sorted({p.group for p in self.programs()})

    def stop_group(self, group: str) -> None:
        self._call("stopProcessGroup", group, True, wait=True)

    def remove_group(self, group: str) -> None:
        self._call("removeProcessGroup", group)

    def add_missing_groups(self) -> list[str]:
        """Adds back the groups of its configuration file that supervisord does not run
        (those `seer supervisor remove` removed); returns their names."""
        ((added, _changed, _removed),) = self._call("reloadConfig")
        for group in added:
            self._call("addProcessGroup", group)
        return list(added)

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


ACTIONS = ("start", "stop", "restart")
# What `seer up` starts: stopped, exited, given up on, or retrying (BACKOFF: at once rather
# than after its back-off). UNKNOWN is left alone: supervisord itself cannot tell what it is.
STARTABLE_STATES = (
    ProcessStates.STOPPED,
    ProcessStates.EXITED,
    ProcessStates.FATAL,
    ProcessStates.BACKOFF,
)


def control(sup: Supervisor, info: ProgramInfo, action: str) -> str:
    """Starts, stops (gracefully: the running batch finishes first) or restarts one program;
    says in one line what it did. The one implementation the CLI and the console call."""
    name = full_name(info)
    running = info.started
    if action == "start":
        if running:
            return f"{name}: already running ({info.state}, pid {info.pid})"
        sup.start(name)
        return f"{name}: started"
    if action == "stop":
        if not running:
            return f"{name}: already stopped ({info.state})"
        sup.stop(name)
        return f"{name}: stopped (its running batch finished first)"
    if action == "restart":
        if running:
            sup.stop(name)
        sup.start(name)
        return f"{name}: restarted"
    raise ValueError(f"no action {action!r}: one of {', '.join(ACTIONS)}")


def program_groups(programs: list[ProgramInfo]) -> list[str]:
    """The supervisord groups holding Seer's programs (each is its own group since the
    task card's `supervisorctl start seer-postmaster` must work; an older program file had
    them both in group `seer`)."""
    return sorted({p.group for p in programs if p.name in PROGRAMS})


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


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def supervisorctl(layout: Layout, args: list[str]) -> int:
    """`supervisorctl ARGS` against the local supervisord: its file, its socket."""
    env = dict(os.environ, SEER_STORAGE_ROOT=str(layout.root))
    command = [_tool("supervisorctl"), "-c", str(config_path())]
    command += ["-s", f"unix://{socket_path(layout)}", *args]
    return subprocess.run(command, env=env, check=False).returncode


@dataclass(frozen=True)
class Up:
    started: bool  # supervisord was started now
    added: tuple[str, ...]  # programs added back (after `seer supervisor remove`)
    programs: tuple[ProgramInfo, ...]


def up(layout: Layout, *, timeout: float = 20.0) -> Up:
    """Starts the local supervisord with both consumers, adding back removed programs."""
    sup = Supervisor(socket_path(layout))
    started = False
    added: list[str] = []
    if not sup.reachable():
        supervisord = _tool("supervisord")
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
    elif not {p.name for p in sup.programs()} >= set(PROGRAMS):
        added = sup.add_missing_groups()
    for info in sup.programs():
        if info.code in STARTABLE_STATES:
            try:
                sup.start(full_name(info))
            except SupervisorError as exc:
                if exc.fault != Faults.ALREADY_STARTED:
                    raise
    _wait(lambda: all(p.running for p in sup.programs()), timeout)
    return Up(started, tuple(added), tuple(sup.programs()))


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
