"""A private Ceph RGW (an S3-compatible object store) for tests and benchmarks of the CAS on S3.

A real single-node Ceph cluster, brought up from nothing in a directory of the caller's as the
current user (root or not): one ceph-mon, one ceph-osd (BlueStore on a 20 GiB sparse file),
pools of size 1, no ceph-mgr, and radosgw (beast) on a free port of 127.0.0.1 with an S3 user
of its own:

    from tests.rgw_server import PrivateRgw

    def test_survives_a_crash(tmp_path):
        with PrivateRgw(tmp_path) as rgw:        # fails (never skips) without the Ceph binaries
            s3 = rgw.client()                    # boto3, path-style, checksums only if required
            bucket = rgw.make_bucket()           # a fresh bucket of a random valid name
            s3.put_object(Bucket=bucket, Key="k", Body=b"v")
            rgw.kill_radosgw()                   # SIGKILL: a crash of the gateway
            rgw.start_radosgw()                  # same port; returns once S3 answers
            rgw.kill_osd()                       # SIGKILL: a crash of the storage
            rgw.start_osd()                      # returns once a PUT works again
            env = rgw.env()                      # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...

`python -m tests.rgw_server DIR` starts one in DIR for a benchmark, prints its `export AWS_...`
lines and stays up until SIGINT or SIGTERM. Everything lives under `base / "rgw-private"`
(config, keyrings, data, logs, admin sockets, pid files): nothing in /etc/ceph or
/var/lib/ceph, a fsid and ports of its own, so several can run on one machine at once. A new
PrivateRgw on a directory that already holds one restarts that cluster with its data, ports
and keys. On a 2-core machine: from an empty directory to a signed PUT/GET in 5-6 s, a start
on an existing one in ~3 s, radosgw killed and started in ~0.3 s, the OSD in 2-3 s; idle, the
three daemons hold ~145 MB.

The endpoint's port stays the same across restarts of radosgw, so clients made before one keep
working after it. The OSD's data is durable across its SIGKILL (BlueStore with its journal), so
what a test sees after kill_osd() + start_osd() is what a crash of the storage leaves.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
# A cold start takes ~6 s here; a loaded 2-core machine, or one whose disk is busy, many times
# that. Long enough for those, short enough to fail a broken start while someone still waits.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
# radosgw keeps nothing of its own (what it acknowledged is in RADOS): past this it is killed.
RGW_STOP_GRACE = 5.0
POLL = 0.05
OSD_SIZE = 20 * 1024**3  # the BlueStore file's size: sparse, it takes what is written
MON_ID = "a"
OSD_ID = 0
RGW_NAME = "client.rgw"
PROBE_BUCKET = "rgw-private-probe"
# A sun_path holds 108 bytes; the admin sockets are reached through a short alias beyond that.
SOCKET_PATH_MAX = 100

# Ceph subsystems set to log nothing but errors: at their defaults radosgw writes lines for
# every request, and a benchmark's millions of requests would fill the disk.
QUIET = (
    *("asok", "auth", "bdev", "bluefs", "bluestore", "client", "context", "crush", "filer"),
    *("finisher", "heartbeatmap", "journal", "mon", "monc", "ms", "objclass", "objecter"),
    *("optracker", "osd", "paxos", "perfcounter", "rados", "rgw", "rgw_access", "rgw_sync"),
    *("rocksdb", "throttle", "timer"),
)


def _free_port() -> int:
    # The kernel's pick. Until the daemon binds it (seconds later for radosgw) another listener
    # may take it: the start then fails, saying so in the daemon's log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secret() -> str:
    """A cephx key as ceph-authtool makes one: type AES, creation time, 16 random bytes."""
    now = time.time()
    header = struct.pack("<HIIH", 1, int(now), int(now % 1 * 1e9), 16)
    return base64.b64encode(header + os.urandom(16)).decode()


def _keyring(name: str, caps: dict[str, str]) -> str:
    lines = [f"[{name}]", f"\tkey = {_secret()}"]
    lines += [f'\tcaps {service} = "{cap}"' for service, cap in caps.items()]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """A file only its owner reads (keys, as ceph-authtool writes them)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(text)


def _gone(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is None or proc.poll() is not None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name}: none)"
    return f"--- {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def _admin_socket(path: Path, prefix: str, timeout: float = 2.0) -> dict[str, Any]:
    """A command to a daemon's admin socket, without the ceph CLI (a Python start each time):
    the command as JSON ended by a NUL, the answer as a big-endian length and its bytes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({"prefix": prefix, "format": "json"}).encode() + b"\0")
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("admin socket closed mid-answer")
            data += chunk
    return dict(json.loads(data[4:]))


class PrivateRgw:
    """A single-node Ceph cluster with radosgw, of the caller's own, under base/rgw-private."""

    region = "us-east-1"

    def __init__(
        self, base: Path, *, access_key: str | None = None, secret_key: str | None = None
    ) -> None:
        missing = [name for name in BINARIES if shutil.which(name) is None]
        assert not missing, (
            f"Ceph binaries missing: {', '.join(missing)} (Debian packages {PACKAGES})"
        )
        self.dir = Path(base).resolve() / "rgw-private"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "ceph.conf"
        self.state_file = self.dir / "state.json"
        self.log_dir = self.dir / "log"
        self.run_dir = self.dir / "run"
        self.mon_dir = self.dir / "mon"
        self.osd_dir = self.dir / "osd"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._alias: Path | None = None
        # Made once (a boto3 client takes ~0.13 s to make): make_bucket's, wait_ready's.
        self._clients: dict[str, S3Client] = {}
        if self.state_file.exists():
            # A cluster made before (by this object or an earlier one): the same again.
            state = json.loads(self.state_file.read_text())
            self.bootstrapped = True
        else:
            state = {
                "fsid": str(uuid.uuid4()),
                "mon_port": _free_port(),
                "rgw_port": _free_port(),
                "access_key": access_key or "RGW" + secrets.token_hex(8).upper(),
                "secret_key": secret_key or secrets.token_urlsafe(30),
            }
            self.bootstrapped = False
        self.fsid: str = state["fsid"]
        self.mon_port: int = state["mon_port"]
        self.rgw_port: int = state["rgw_port"]
        self.access_key: str = state["access_key"]
        self.secret_key: str = state["secret_key"]

    # -- what tests use ----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and the aws CLI) at it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(
        self, *, connect_timeout: float = 2, read_timeout: float = 10, max_attempts: int = 2
    ) -> S3Client:
        """A boto3 S3 client for it, configured as the CAS's: checksums only when an operation
        requires one (RGW 16 does not verify boto3's default CRCs), path-style addressing,
        bounded timeouts and few retries, so a test of an outage fails fast."""
        # Here, not at the top: conftest.py imports this module in every test process.
        import boto3
        from botocore.config import Config

        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Creates a bucket (of a random valid name when none is given) and returns its name."""
        bucket = name or f"test-{secrets.token_hex(8)}"
        if "admin" not in self._clients:
            self._clients["admin"] = self.client()
        self._clients["admin"].create_bucket(Bucket=bucket)
        return bucket

    # -- the cluster's life ------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> PrivateRgw:
        """Starts every daemon (making the cluster first if the directory has none) and returns
        once a signed PUT and GET succeed. A failure stops what it started and raises with the
        end of the failing daemon's log."""
        assert not self.pids(), f"already running: {self.pids()}"
        deadline = time.monotonic() + timeout
        try:
            self._write_conf()
            if not self.bootstrapped:
                self._bootstrap(deadline)
            else:
                self._start_mon(deadline)
                self._start_osd(deadline)
                self._start_radosgw(deadline)
            self.wait_ready(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stops every daemon (SIGTERM, radosgw and the OSD before the monitor they report to;
        SIGKILL past the deadline) and returns once all have exited."""
        deadline = time.monotonic() + timeout
        # One at a time: radosgw's shutdown waits on the OSD for its last requests (it took the
        # whole 20 s when both were stopped at once), and both tell the monitor they leave.
        for name in ("radosgw", "osd", "mon"):
            proc = self.procs.get(name)
            if _gone(proc):
                continue
            assert proc is not None
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            grace = max(0.1, deadline - time.monotonic())
            if name == "radosgw":
                grace = min(grace, RGW_STOP_GRACE)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self._alias is not None:
            self._alias.unlink(missing_ok=True)
            self._alias = None

    def kill_radosgw(self) -> None:
        """SIGKILLs radosgw (a crash) and returns once it has exited. As after a real crash,
        the OSD keeps the dead gateway's watches for a while (osd client watch timeout, 5 s
        here): until then a change of metadata (a bucket made) waits for them."""
        self._kill("radosgw")

    def start_radosgw(self, timeout: float = START_TIMEOUT) -> None:
        """Starts radosgw again on the same port; returns once a PUT and GET succeed. The OSD
        must be up (radosgw's start waits on it): after killing both, start_osd() first."""
        deadline = time.monotonic() + timeout
        self._check_alive(("mon", "osd"))
        self._start_radosgw(deadline)
        self.wait_ready(deadline - time.monotonic())

    def kill_osd(self) -> None:
        """SIGKILLs the OSD (a crash of the storage) and returns once it has exited."""
        self._kill("osd")

    def start_osd(self, timeout: float = START_TIMEOUT) -> None:
        """Starts the OSD again; returns once it is up and a PUT and GET succeed (only up, when
        radosgw is down too: start_radosgw() then checks those)."""
        deadline = time.monotonic() + timeout
        self._start_osd(deadline)
        if "radosgw" in self.pids():
            self.wait_ready(deadline - time.monotonic())

    def wait_ready(self, timeout: float = 60) -> None:
        """Returns once a PUT and a GET of a probe object (in a scratch bucket of its own)
        succeed; raises with the daemons' logs if they do not in `timeout` seconds."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        # One try per request, each short: a request stuck behind an OSD that is still peering
        # is given up and sent again, rather than waited for until boto3's own timeout.
        if "probe" not in self._clients:
            self._clients["probe"] = self.client(connect_timeout=1, read_timeout=3, max_attempts=1)
        probe = self._clients["probe"]
        body = secrets.token_bytes(16)
        last = "no try yet"
        while True:
            self._check_alive(("mon", "osd", "radosgw"))
            try:
                try:
                    probe.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=body)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                        raise
                    probe.create_bucket(Bucket=PROBE_BUCKET)
                    continue
                got = probe.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read()
                if got == body:
                    return
                last = f"GET returned {got!r}, not the {body!r} just PUT"
            except (BotoCoreError, ClientError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"private RGW not ready after {timeout:.0f}s ({last})\n"
                    + self.log_tail(("radosgw", "osd", "mon"))
                )
            time.sleep(POLL)

    def __enter__(self) -> PrivateRgw:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """The running daemons' process ids, by name (mon, osd, radosgw)."""
        return {name: proc.pid for name, proc in self.procs.items() if not _gone(proc)}

    def log_tail(self, names: Iterable[str] = ("radosgw", "osd", "mon"), lines: int = 30) -> str:
        """The ends of the daemons' logs (and of what they wrote to stderr), for messages."""
        parts = []
        for name in names:
            parts.append(_tail(self.log_dir / f"{self._entity(name)}.log", lines))
            parts.append(_tail(self.log_dir / f"{name}.out", lines))
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"<PrivateRgw {self.endpoint} {sorted(self.pids())} dir={self.dir}>"

    # -- inside ------------------------------------------------------------------------------

    @staticmethod
    def _entity(name: str) -> str:
        osd = f"osd.{OSD_ID}"
        return {"mon": f"mon.{MON_ID}", "osd": osd, "osd-mkfs": osd, "radosgw": RGW_NAME}[name]

    def _socket_dir(self) -> Path:
        """Where the admin sockets are reached: the run directory, or a short alias of it when
        its path is too long for one: a symlink in the system's temporary directory, named
        after the directory (the same for every PrivateRgw on it), removed by stop()."""
        if len(str(self.run_dir / "client.rgw.asok")) <= SOCKET_PATH_MAX:
            return self.run_dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        alias = Path(tempfile.gettempdir()) / f"rgw-private-{digest}"
        if not alias.is_symlink():
            alias.symlink_to(self.run_dir)
            self._alias = alias
        return alias

    def _write_conf(self) -> None:
        for path in (self.log_dir, self.run_dir, self.mon_dir, self.osd_dir, self.dir / "crash"):
            path.mkdir(exist_ok=True)
        d, run = self.dir, self._socket_dir()
        quiet = "".join(f"debug {name} = 0/0\n" for name in QUIET)
        daemon = f"admin socket = {run}/$name.asok\npid file = {run}/$name.pid\n"
        daemon += f"log file = {self.log_dir}/$name.log\n"
        self.conf.write_text(
            f"""# tests/rgw_server.py: a private single-node cluster; everything under {d}
[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
run dir = {run}
crash dir = {d}/crash
keyring = {d}/$name.keyring
log to stderr = false
err to stderr = true
log to syslog = false
mon cluster log file = {self.log_dir}/cluster.log
mon cluster log to syslog = false
# One OSD: a copy of each object, on one host, few placement groups, no autoscaler (a mgr's).
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# radosgw's start waits on a dozen proposals: at the default 1 s interval it took 9 s, ~1 s so.
paxos propose interval = 0.1
# A restarted OSD waits out its predecessor's read lease: 16 s at the default ratio, 2 s so.
osd pool default read lease ratio = 0.1
# A client's request to an OSD that was killed waits until it is found laggy and a new map is
# asked for: 10 s, looked at every 5 s, by default (radosgw's own background work stalled so).
objecter timeout = 2
objecter tick interval = 1
# A disk shared with the tests may get full; the monitor must not stop itself at 5 % free.
mon data avail crit = 0
{quiet}
[mon]
mon data = {self.mon_dir}
keyring = {self.mon_dir}/keyring
{daemon}
[osd]
osd data = {self.osd_dir}
keyring = {self.osd_dir}/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {OSD_SIZE}
bluestore block preallocate file = false
# A check of the store just made read it all once more: a second of the start.
bluestore fsck on mkfs = false
# A killed radosgw's watches on its control objects outlive it this long, and until they
# expire every change of metadata (a bucket made) waits on their acknowledgement: 30 s by
# default. The live ones are pinged every objecter tick (1 s, above).
osd client watch timeout = 5
{daemon}
[{RGW_NAME}]
keyring = {d}/{RGW_NAME}.keyring
rgw data = {d}/rgw
# Without tcp_nodelay every small GET waited 44 ms for the delayed ACK.
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port} tcp_nodelay=1
{daemon}"""
        )

    def _bootstrap(self, deadline: float) -> None:
        """A new cluster: keyrings, monitor and OSD made, every daemon started, the S3 user."""
        admin = _keyring(
            "client.admin",
            {"mon": "allow *", "osd": "allow *", "mgr": "allow *", "mds": "allow *"},
        )
        osd = _keyring(
            f"osd.{OSD_ID}",
            {"mon": "allow profile osd", "osd": "allow *", "mgr": "allow profile osd"},
        )
        rgw = _keyring(RGW_NAME, {"mon": "allow rw", "osd": "allow rwx", "mgr": "allow rw"})
        _write_private(self.dir / "client.admin.keyring", admin)
        _write_private(self.dir / f"{RGW_NAME}.keyring", rgw)
        _write_private(self.osd_dir / "keyring", osd)
        # The monitor's keyring holds every entity's key: its mkfs puts them in the auth
        # database, so no `ceph auth add` is needed once it runs.
        monitor = _keyring("mon.", {"mon": "allow *"})
        _write_private(self.dir / "mon.keyring", monitor + admin + osd + rgw)
        osd_uuid = str(uuid.uuid4())
        # The OSD's mkfs needs no monitor: it runs while the monitor is made and started.
        mkfs = self._spawn(
            "osd-mkfs",
            ["ceph-osd", "-i", str(OSD_ID), "--mkfs", "--osd-uuid", osd_uuid, "--no-mon-config"],
        )
        try:
            self._make_mon()
            self._start_mon(deadline)
            self._ceph("osd", "new", osd_uuid, str(OSD_ID))
            self._wait_exit(mkfs, "osd-mkfs", deadline)
        finally:
            if not _gone(mkfs):
                mkfs.kill()
                mkfs.wait()
        self._start_osd(deadline)
        self._spawn_radosgw()
        self._run(
            "radosgw-admin",
            "user",
            "create",
            "--uid=test",
            "--display-name=tests/rgw_server.py",
            f"--access-key={self.access_key}",
            f"--secret-key={self.secret_key}",
        )
        _write_private(
            self.state_file,
            json.dumps(
                {
                    "fsid": self.fsid,
                    "mon_port": self.mon_port,
                    "rgw_port": self.rgw_port,
                    "access_key": self.access_key,
                    "secret_key": self.secret_key,
                }
            ),
        )
        self.bootstrapped = True

    def _make_mon(self) -> None:
        monmap = self.dir / "monmap"
        addr = f"[v2:127.0.0.1:{self.mon_port}]"
        self._run(
            "monmaptool", "--create", "--clobber", "--fsid", self.fsid, "--addv", MON_ID, addr,
            str(monmap), conf=False,
        )  # fmt: skip
        self._run(
            "ceph-mon", "--mkfs", "-i", MON_ID, "--monmap", str(monmap),
            "--keyring", str(self.dir / "mon.keyring"),
        )  # fmt: skip

    def _start_mon(self, deadline: float) -> None:
        self._spawn("mon", ["ceph-mon", "-f", "-i", MON_ID])
        sock = self._socket_dir() / f"mon.{MON_ID}.asok"
        self._wait(
            "mon",
            lambda: _admin_socket(sock, "mon_status").get("state") == "leader",
            deadline,
            "the monitor leads its quorum of one",
        )

    def _start_osd(self, deadline: float) -> None:
        self._spawn("osd", ["ceph-osd", "-f", "-i", str(OSD_ID)])
        sock = self._socket_dir() / f"osd.{OSD_ID}.asok"

        def up() -> bool:
            # "status" exists once the store is mounted (asked before, each try is an error in
            # the OSD's log); "active" once it has booted and seen itself up in the map.
            if "status" not in _admin_socket(sock, "help"):
                return False
            return _admin_socket(sock, "status").get("state") == "active"

        self._wait("osd", up, deadline, "the OSD is up")

    def _spawn_radosgw(self) -> None:
        self._spawn("radosgw", ["radosgw", "-f", "-n", RGW_NAME])

    def _start_radosgw(self, deadline: float) -> None:
        self._spawn_radosgw()

        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", self.rgw_port), timeout=1):
                return True

        self._wait("radosgw", answers, deadline, "radosgw accepts connections")

    def _kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            # Not `kill -0` nor /proc: a SIGKILLed daemon answers those for a while here.
            proc.wait()

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        assert _gone(self.procs.get(name)), f"{name} is already running"
        # Killed with the process that started it (a test worker killed mid-run), not left
        # running on the machine: setpriv sets the parent-death signal, then execs the daemon.
        # (Linux sends it when the *thread* that forked exits: start it from one that stays.)
        wrapper = ["setpriv", "--pdeathsig", "SIGKILL", "--"] if shutil.which("setpriv") else []
        with open(self.log_dir / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(
                [*wrapper, command[0], "-c", str(self.conf), *command[1:]],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not stop it mid-test.
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def _run(self, *command: str, conf: bool = True, timeout: float = 60) -> str:
        args = [command[0], *(["-c", str(self.conf)] if conf else []), *command[1:]]
        done = subprocess.run(
            args, cwd=self.dir, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                + self.log_tail(("mon", "osd", "radosgw"))
            )
        return done.stdout

    def _ceph(self, *command: str) -> str:
        return self._run("ceph", "--connect-timeout", "20", *command)

    def _check_alive(self, names: Iterable[str]) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is None:
                raise RuntimeError(f"private RGW: {name} is not running (killed, not started)")
            if proc.poll() is not None:
                raise RuntimeError(
                    f"private RGW: {name} exited with {proc.returncode}\n" + self.log_tail([name])
                )

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            self._check_alive([name])
            with contextlib.suppress(OSError, ValueError):
                if ready():
                    return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"private RGW: not so in time: {what}\n" + self.log_tail([name]))
            time.sleep(POLL)

    def _wait_exit(self, proc: subprocess.Popen[bytes], name: str, deadline: float) -> None:
        try:
            code = proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} did not finish in time\n" + self.log_tail([name])) from None
        if code != 0:
            raise RuntimeError(f"{name} failed ({code})\n" + self.log_tail([name]))


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.rgw_server DIR`: one in DIR until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.rgw_server", description=__doc__)
    parser.add_argument("dir", type=Path, help="its files go under DIR/rgw-private")
    keys = "(default: random; a DIR that already holds one keeps its own)"
    parser.add_argument("--access-key", help=f"the S3 user's access key {keys}")
    parser.add_argument("--secret-key", help=f"the S3 user's secret key {keys}")
    args = parser.parse_args(argv)

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    server = PrivateRgw(args.dir, access_key=args.access_key, secret_key=args.secret_key)
    try:
        started = time.monotonic()
        server.start()
        for name, value in server.env().items():
            print(f"export {name}={value}")
        print(
            f"# up in {time.monotonic() - started:.1f}s, files in {server.dir}; "
            "SIGINT or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        while True:
            signal.pause()
    except SystemExit:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
