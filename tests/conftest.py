"""Fixtures: a temporary storage root per test, the CLI run in-process, real consumers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from seer_console.cli import main
from tests.blobs import KINDS
from tests.helpers import (
    DEFAULT_BACKENDS,
    LEDGER_BACKENDS,
    QUEUE_BACKENDS,
    backend_environment,
    drop_run_database,
    flush_run_redis,
    recycle_schema,
)
from tests.rgw_server import PrivateRgw
from worker.runtime import Runtime
from worker.settings import SPECS

BIN = Path(sys.executable).parent


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def pytest_configure(config: pytest.Config) -> None:
    # A run started in the background by a shell without job control inherits SIGINT and
    # SIGQUIT ignored, and so would every process a test starts (a Python started so keeps
    # ignoring them: `seer logs -f` did not stop at SIGINT). The tests' processes start as from
    # a terminal: a handled signal is reset to its default across exec.
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGQUIT, None)):
        if signal.getsignal(sig) == signal.SIG_IGN:
            with contextlib.suppress(ValueError):  # not the main thread: left as it is
                signal.signal(sig, handler or signal.SIG_DFL)
    config.addinivalue_line(
        "markers",
        "backends(*names): the backends (ledger and queue, tests/helpers.py) this test "
        "applies to, instead of sqlite and postgresql: for what exists on one engine only, such "
        "as a SQLite file's damage, or on one pair (postgresql+redis)",
    )
    config.addinivalue_line(
        "markers",
        "blob_kinds(*kinds): the kinds of blob (tests/blobs.py KINDS) a blob_kind test runs on",
    )
    config.addinivalue_line(
        "markers",
        "queue_facing: the test is about the queue (doorbells, consumers, pause): it runs on "
        "the redis backend too",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every test that builds a storage root runs once per ledger backend. Screenshot tests
    # stay on SQLite with their ids unchanged: the picture is the same, its file name too.
    if "ledger_backend" not in metafunc.fixturenames or "snap_compare" in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        wanted = marker.args
    else:
        wanted = DEFAULT_BACKENDS
        if metafunc.definition.get_closest_marker("queue_facing") is not None:
            wanted += QUEUE_BACKENDS
    chosen = [b for b in wanted if b in LEDGER_BACKENDS]
    if "blob_kind" in metafunc.fixturenames:
        # Both kinds of blob on SQLite; on the other ledgers the kind whose code is the
        # ledger's (rows of small_blobs): the files' code does not depend on the ledger.
        # Objects (the files' place taken by an S3 bucket on the session's Ceph RGW) on SQLite
        # too: the object store's code does not depend on the ledger either.
        # `@pytest.mark.blob_kinds(...)` narrows the kinds (the objects take seconds a test).
        limit = metafunc.definition.get_closest_marker("blob_kinds")
        kinds = limit.args if limit is not None else ("ledger", "files", "objects")
        pairs = [(b, "ledger") for b in chosen if "ledger" in kinds] + [
            (b, kind) for b in chosen if b == "sqlite" for kind in kinds if kind != "ledger"
        ]
        metafunc.parametrize(("ledger_backend", "blob_kind"), pairs, indirect=True)
        return
    metafunc.parametrize("ledger_backend", chosen, indirect=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # A PostgreSQL or Redis test that skips would pass CI having tested nothing: it fails.
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("ledger_backend") if callspec else None
    if report.skipped and backend not in (None, "sqlite") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"a {backend} test was skipped: {report.longrepr}"


# Files whose tests run for minutes of wall time (real schedulers across minute slots): started
# first, so that the rest of the suite fills the other workers meanwhile instead of waiting for
# them at the end.
LONG_FIRST = ("test_scaleout_faults.py", "test_doorbells.py", "test_queue_outage.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_FIRST)


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_run_database()
    flush_run_redis()


@pytest.fixture
def ledger_backend(request: pytest.FixtureRequest) -> str:
    """Which ledger and queue the test's storage root uses (tests/helpers.py lists them)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ledger_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """A clean environment whose storage root is tmp_path/storage, its ledger on
    `ledger_backend`; cwd is tmp_path."""
    for spec in SPECS:
        monkeypatch.delenv(spec.name, raising=False)
    monkeypatch.delenv("SEER_ENV_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEER_STORAGE_PATH", str(tmp_path / "storage"))
    # A test with `runtime` starts with `seer init`: an initialised schema will do.
    chosen = backend_environment(
        ledger_backend, tmp_path, initialised="runtime" in request.fixturenames
    )
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    # Tests retry quickly; production waits longer between tries.
    monkeypatch.setenv("POSTMASTER_RETRY_DELAY", "0.2s")
    yield dict(os.environ)
    if ledger_backend == "postgresql":
        recycle_schema(chosen["SEER_DATABASE_URL"])


@pytest.fixture
def blob_kind(request: pytest.FixtureRequest, env: dict[str, str], monkeypatch) -> str:
    """Which kind of blob the CAS stores (tests/blobs.py): a test or module that uses it runs
    with its blobs as rows of the ledger, and on SQLite once more as files
    (pytest_generate_tests pairs them). Before `runtime`: it sets what the runtime reads."""
    kind = getattr(request, "param", "ledger")
    chosen = {"ORCHESTRATION_CAS_SMALL_BLOB_SIZE": KINDS[kind]}
    if kind == "objects":
        server = request.getfixturevalue("rgw")
        chosen.update(server.env(), ORCHESTRATION_CAS_URL=f"s3://{server.make_bucket()}/cas")
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    env.update(chosen)
    return kind


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRgw]:
    """A real Ceph RGW (tests/rgw_server.py) for this test process, started when a test first
    asks for it; each test takes a bucket of its own (`rgw_bucket`, the "objects" blob kind).
    Tests that kill radosgw or the OSD start a PrivateRgw of their own."""
    server = PrivateRgw(tmp_path_factory.getbasetemp() / "rgw").start()
    yield server
    server.stop()


@pytest.fixture
def rgw_bucket(rgw: PrivateRgw) -> str:
    """A new, empty bucket on the session's RGW."""
    return rgw.make_bucket()


@pytest.fixture
def file_blobs(env: dict[str, str], monkeypatch) -> None:
    """Every blob a file (ORCHESTRATION_CAS_SMALL_BLOB_SIZE=0): for what is about the files
    themselves (a full CAS disk, a link planted in the CAS directory). Before `runtime`."""
    monkeypatch.setenv("ORCHESTRATION_CAS_SMALL_BLOB_SIZE", "0")
    env["ORCHESTRATION_CAS_SMALL_BLOB_SIZE"] = "0"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Runs `seer ARGS` in-process; returns Result(code, out, err)."""

    def run(*args: str, stdin: bytes | str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            raw = stdin.encode() if isinstance(stdin, str) else stdin
            fake = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
            monkeypatch.setattr(sys, "stdin", fake)
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def runtime(env: dict[str, str], cli) -> Iterator[Runtime]:
    """An initialised storage root (its ledger on `ledger_backend`, through `env`), opened."""
    assert cli("init").code == 0
    rt = Runtime.open()
    yield rt
    rt.close()


class Consumer:
    """A real `seer worker QUEUE` process (Huey's consumer runs in it)."""

    def __init__(self, env: dict[str, str], cwd: Path, queue: str = "postmaster") -> None:
        self.env, self.cwd, self.queue = env, cwd, queue
        self.log = cwd / f"{queue}-consumer.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Consumer:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [str(BIN / "seer"), "worker", self.queue],
            env=self.env,
            cwd=self.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def consumers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Consumer]]:
    started: list[Consumer] = []

    def start(queue: str = "postmaster") -> Consumer:
        consumer = Consumer(dict(os.environ), tmp_path, queue).start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.kill()


@pytest.fixture
def tmpfs():
    """Mounts a small tmpfs at a directory, so that writes really fail with ENOSPC."""
    mounted: list[Path] = []

    def mount(where: Path, size: str) -> Path:
        if shutil.which("mount") is None or shutil.which("umount") is None:
            pytest.skip("a real full disk needs mount and umount, which are not installed")
        where.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0770", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"a real full disk needs a tmpfs mount, not permitted here: {proc.stderr}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        # Lazily if still busy: commands run in-process leave the store's directory fds open
        # until their runtime is collected.
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def filled(runtime: Runtime) -> Runtime:
    """The console's fixed data (tests/console_fixtures.fill) in a real ledger, in UTC."""
    from tests.console_fixtures import fill, use_utc

    use_utc()
    fill(runtime)
    return runtime
