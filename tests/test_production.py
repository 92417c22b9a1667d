"""Production supervision with a real supervisord: restarts, graceful stops, the rendered
program file, `seer supervisor …`, and the console's worker keys."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
from textual.widgets import Static

from seer_console.app import SeerConsole
from seer_console.screens import ConfirmScreen
from seer_console.source import SnapshotSource
from tests.conftest import BIN
from tests.helpers import parcel, wait_for
from worker.fleet import control, supervision
from worker.ledger import migrations
from worker.ops import operations
from worker.parcels import intake as parcels


@pytest.fixture
def supervised(runtime, cli):
    """The local supervisord of `seer up`, both programs RUNNING; stopped afterwards."""
    assert cli("up").code == 0
    sup = supervision.Supervisor(supervision.socket_path(runtime.layout))
    yield sup
    cli("down")


def program(sup, name: str) -> supervision.ProgramInfo:
    return next(p for p in sup.programs() if p.name == name)


def send(runtime, items) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return list(operations.send_parcels(runtime, batch).ids)


def delivered(runtime) -> int:
    return runtime.ledger.counter("parcels_delivered")


def assert_each_delivered_once(runtime, ids: list[str]) -> None:
    rows = runtime.ledger.rows("SELECT parcel_id, count(*) AS n FROM messages GROUP BY parcel_id")
    assert {r["parcel_id"] for r in rows} == set(ids)
    assert all(r["n"] == 1 for r in rows)


def test_status_start_stop_restart(runtime, supervised, cli):
    result = cli("supervisor", "status", "--json")
    assert result.code == 0
    assert {p["name"]: p["state"] for p in result.json()} == {
        "seer-postmaster": "RUNNING",
        "seer-scheduler": "RUNNING",
    }
    first_pid = program(supervised, "seer-scheduler").pid
    out = cli("supervisor", "stop", "scheduler")
    assert out.code == 0 and "stopped" in out.out
    assert program(supervised, "seer-scheduler").state == "STOPPED"
    assert cli("supervisor", "stop", "scheduler").out.strip().endswith("already stopped (STOPPED)")
    assert cli("supervisor", "status").code == 3  # one is not running
    assert "started" in cli("supervisor", "start", "seer-scheduler").out
    assert "restarted" in cli("supervisor", "restart", "scheduler").out
    assert program(supervised, "seer-scheduler").pid not in (0, first_pid)
    bad = cli("supervisor", "stop", "nope")
    assert bad.code == 1 and "no program 'nope'" in bad.err


def test_supervisor_down_is_one_line_and_non_zero(runtime, cli):
    result = cli("supervisor", "status")
    assert result.code == 4
    assert result.err.count("\n") == 1 and "cannot reach supervisord" in result.err
    assert cli("supervisor", "stop", "--socket", "/nonexistent/supervisor.sock").code == 4


@pytest.mark.queue_facing
def test_sigkilled_postmaster_is_restarted_and_every_parcel_is_delivered_once(runtime, supervised):
    before = send(runtime, [parcel("a", n, attachment=f"b{n}") for n in range(100)])
    wait_for(lambda: delivered(runtime) >= 20, 30, "deliveries under way")
    victim = program(supervised, "seer-postmaster").pid
    during = send(runtime, [parcel("a", n, attachment=f"d{n}") for n in range(100, 200)])
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (
            program(supervised, "seer-postmaster").state == "RUNNING"
            and program(supervised, "seer-postmaster").pid != victim
        ),
        30,
        "supervisord to restart seer-postmaster",
    )
    after = send(runtime, [parcel("a", n, attachment=f"a{n}") for n in range(200, 300)])
    ids = before + during + after
    wait_for(lambda: delivered(runtime) == len(ids), 60, "every parcel delivered")
    assert_each_delivered_once(runtime, ids)
    assert psutil.pid_exists(victim) is False or psutil.Process(victim).status() == "zombie"


@pytest.mark.queue_facing
def test_graceful_stop_while_parcels_are_running_loses_none(runtime, supervised, cli):
    # Big attachments keep the worker busy inside a batch when the stop comes.
    big = "x" * 200_000
    ids = send(runtime, [parcel("a", n, attachment=big + str(n)) for n in range(400)])

    def mid_drain() -> bool:
        # Chosen from what is seen, not from the clock: a batch in flight, and more to come.
        states = {
            r["state"]: r["n"]
            for r in runtime.ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
        }
        return states.get("in_flight", 0) > 0 and states.get("queued", 0) > 0

    wait_for(mid_drain, 30, "a batch in flight with parcels still queued", step=0.005)
    result = cli("supervisor", "stop", "seer-postmaster")
    assert result.code == 0, result.err
    assert program(supervised, "seer-postmaster").state == "STOPPED"
    # The running batch finished: nothing is left in flight, nothing is lost.
    counts = {
        r["state"]: r["n"]
        for r in runtime.ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
    }
    assert counts.get("in_flight", 0) == 0
    assert counts.get("delivered", 0) + counts.get("queued", 0) == len(ids)
    assert counts.get("queued", 0) > 0, "the stop came after the drain: make the batch bigger"
    assert cli("supervisor", "start", "seer-postmaster").code == 0
    wait_for(lambda: delivered(runtime) == len(ids), 120, "the rest delivered")
    assert_each_delivered_once(runtime, ids)


SLOW_COMMIT_HOOK = """
import os, time

from worker.parcels import postmaster

_commit = postmaster.Postmaster._commit


def _slow(self, rows, outcome, now):
    # The test's hook: each batch takes SEER_TEST_SLOW_COMMIT seconds more to commit.
    time.sleep(float(os.environ["SEER_TEST_SLOW_COMMIT"]))
    return _commit(self, rows, outcome, now)


postmaster.Postmaster._commit = _slow
"""


@pytest.mark.backends("sqlite")
def test_a_stop_waits_for_a_batch_longer_than_a_calls_timeout(runtime, cli, monkeypatch, tmp_path):
    # supervisord answers a stop once the program has stopped; a batch that took longer than
    # the 5 s a call may wait said "cannot reach supervisord (TimeoutError)" (one core busy).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_COMMIT_HOOK)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("SEER_TEST_SLOW_COMMIT", "3")
    try:
        assert cli("up").code == 0
        sup = supervision.Supervisor(supervision.socket_path(runtime.layout))
        (pid,) = send(runtime, [parcel("a", 1)])
        wait_for(
            lambda: (
                runtime.ledger.scalar("SELECT state FROM parcels WHERE id = ?", (pid,))
                == "in_flight"
            ),
            30,
            "the batch in flight",
        )
        monkeypatch.setattr(supervision, "CALL_TIMEOUT", 1.0)  # 3 s of batch, not 6
        stopped = cli("supervisor", "stop", "seer-postmaster")
        assert stopped.code == 0, stopped.err
        assert "stopped (its running batch finished first)" in stopped.out
        assert program(sup, "seer-postmaster").state == "STOPPED"
        assert delivered(runtime) == 1
    finally:
        cli("down")


def test_remove_stops_and_removes_the_programs_idempotently(runtime, supervised, cli):
    first = cli("supervisor", "remove")
    assert first.code == 0, first.err
    assert "stopped and removed seer-postmaster" in first.out
    assert "stopped and removed seer-scheduler" in first.out
    assert supervised.programs() == []
    again = cli("supervisor", "remove")
    assert again.code == 0 and "nothing to remove" in again.out


def test_up_adds_back_what_remove_removed(runtime, supervised, cli):
    # Issue 9, item 6: `seer up` said "already running", showed an empty table, exited 0.
    assert cli("supervisor", "remove").code == 0
    assert cli("supervisor", "status").code == 3
    up = cli("up")
    assert up.code == 0, up.out + up.err
    assert "added back to supervisord: seer-postmaster, seer-scheduler" in up.out
    assert {p.name: p.state for p in supervised.programs()} == {
        "seer-postmaster": "RUNNING",
        "seer-scheduler": "RUNNING",
    }
    assert "seer-postmaster" in up.out and "RUNNING" in up.out
    assert cli("supervisor", "status").code == 0


def test_rendered_production_file_is_accepted_by_supervisord(runtime, cli, tmp_path):
    from supervisor.options import ServerOptions

    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (tmp_path / ".env").write_text("POSTMASTER_TRIES=3\n")
    user = psutil.Process().username()
    result = cli(
        "supervisor", "render", "--user", user, "--dir", str(tmp_path), "--log-dir", str(log_dir)
    )
    assert result.code == 0, result.err
    rendered = tmp_path / "seer-postmaster.conf"
    rendered.write_text(result.out)
    assert "@" not in "".join(line for line in result.out.splitlines() if not line.startswith(";"))
    main_conf = tmp_path / "supervisord.conf"
    main_conf.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/s.pid\n"
        f"[unix_http_server]\nfile={tmp_path}/s.sock\n"
        f"[include]\nfiles={rendered}\n"
    )
    options = ServerOptions()
    options.realize(args=["-c", str(main_conf)])
    # Each program is its own group: `supervisorctl start seer-postmaster` works as written.
    groups = {g.name: g for g in options.process_group_configs}
    assert set(groups) == {"seer-postmaster", "seer-scheduler"}
    programs = {g.name: g.process_configs[0] for g in groups.values()}
    assert all(len(g.process_configs) == 1 for g in groups.values())
    postmaster = programs["seer-postmaster"]
    assert postmaster.stopsignal == signal.SIGINT and postmaster.stopasgroup
    from supervisor.datatypes import RestartUnconditionally

    assert postmaster.autorestart is RestartUnconditionally and postmaster.redirect_stderr
    assert postmaster.stdout_logfile == str(log_dir / "seer-postmaster.log")
    assert postmaster.command.endswith("/bin/seer worker postmaster")
    assert postmaster.environment["SEER_STORAGE_PATH"] == str(runtime.layout.root)
    assert postmaster.environment["SEER_ENV_FILE"] == str(tmp_path / ".env")
    assert postmaster.stopwaitsecs >= 60 and postmaster.umask == 0o007


async def test_console_worker_keys_against_a_real_supervisord(runtime, supervised):
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.3)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("4")  # the Worker pane
        await pilot.press("down")  # seer-scheduler
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # Cancel
        await pilot.pause()
        assert program(supervised, "seer-scheduler").state == "RUNNING"
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("y")
        await _until(pilot, lambda: program(supervised, "seer-scheduler").state == "STOPPED")
        await pilot.press("s")
        await _until(pilot, lambda: program(supervised, "seer-scheduler").state == "RUNNING")
        old = program(supervised, "seer-scheduler").pid
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("y")
        await _until(pilot, lambda: program(supervised, "seer-scheduler").pid not in (0, old))
        # Rollback steps 1 and 2: pause the queue and stop the parcel worker.
        await pilot.press("b")
        await pilot.pause()
        await pilot.press("y")
        await _until(pilot, lambda: program(supervised, "seer-postmaster").state == "STOPPED")
        assert control.is_paused(runtime.ledger)


async def test_console_worker_keys_are_disabled_read_only(runtime, supervised):
    app = SeerConsole(SnapshotSource(runtime.settings), read_only=True, refresh=0.3)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("4", "o", "b", "m")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
    assert program(supervised, "seer-postmaster").state == "RUNNING"
    assert not control.is_paused(runtime.ledger)


async def _until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not predicate():
            assert not deadline.is_set(), "timed out"
            await pilot.pause(0.05)
    finally:
        timer.cancel()


def _wait_registered(cli) -> None:
    wait_for(
        lambda: all(c["alive"] for c in cli("status", "--json").json()["consumers"]),
        30,
        "both consumers registered",
    )


def _worker_rows(runtime) -> dict:
    return {w.program: w for w in SnapshotSource(runtime.settings).read().workers}


@pytest.mark.queue_facing
def test_restarts_count_processes_and_the_last_exit_says_sigkill(runtime, supervised, cli):
    # Issue 9, item 4: the start-up hook runs once per worker thread (the scheduler has two),
    # so a fresh `seer up` showed the scheduler with "1 restart".
    _wait_registered(cli)
    rows = _worker_rows(runtime)
    assert {name: w.restarts for name, w in rows.items()} == {
        "seer-postmaster": 0,
        "seer-scheduler": 0,
    }
    assert all(w.last_exit is None for w in rows.values())
    out = cli("status").out
    assert "postmaster: alive" in out and out.count("0 restarts") == 2 and "last exit" not in out

    victim = program(supervised, "seer-postmaster").pid
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        consumers = cli("status", "--json").json()["consumers"]
        postmaster = next(c for c in consumers if c["queue"] == "postmaster")
        return postmaster["alive"] and victim not in postmaster["pids"]

    wait_for(restarted, 30, "supervisord to restart seer-postmaster, and it to register")
    rows = _worker_rows(runtime)
    assert rows["seer-postmaster"].restarts == 1 and rows["seer-scheduler"].restarts == 0
    last = rows["seer-postmaster"].last_exit
    assert last is not None and last.short == "SIGKILL" and not last.expected
    assert abs(last.at - time.time()) < 60
    assert rows["seer-scheduler"].last_exit is None
    status = cli("status")
    assert "postmaster: alive" in status.out and ", 1 restart\n" in status.out
    (line,) = [x for x in status.out.splitlines() if x.startswith("last exit")]
    assert "postmaster" in line and "terminated by SIGKILL (not expected)" in line
    exit_json = next(c for c in cli("status", "--json").json()["consumers"] if c["restarts"])
    assert exit_json["last_exit"]["how"] == "terminated by SIGKILL"


async def test_console_worker_pane_shows_restarts_and_the_last_exit(runtime, supervised, cli):
    _wait_registered(cli)
    victim = program(supervised, "seer-postmaster").pid
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: _worker_rows(runtime)["seer-postmaster"].restarts == 1,
        30,
        "the restarted consumer to register",
    )
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.3)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await _until(pilot, lambda: "SIGKILL" in _pane_text(app))
        text = _pane_text(app)
        postmaster, scheduler = text.split("scheduler")
        assert "1 restart\n" in postmaster and "last exit SIGKILL" in postmaster, text
        assert " hb " in postmaster.split("\n")[0], text  # the restarted one's heartbeat
        assert "0 restarts" in scheduler and "last exit" not in scheduler


def _pane_text(app) -> str:
    return str(app.query_one("#worker-rows", Static).content)


def _supervisorctl(runtime, *args: str) -> subprocess.CompletedProcess:
    """The real supervisorctl, run as the README says: only SEER_STORAGE_ROOT exported."""
    env = {"PATH": os.environ["PATH"], "SEER_STORAGE_ROOT": str(runtime.layout.root)}
    return subprocess.run(
        [str(BIN / "supervisorctl"), "-c", "supervisor/supervisord.conf", *args],
        cwd=supervision.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_task_cards_supervisorctl_commands_work_as_written(runtime, supervised, tmp_path):
    # Issue 9, item 7: `supervisorctl start seer-postmaster` said `no such process` (the
    # programs sat in group `seer:`), and the file could not be read without every ENV_ name.
    status = _supervisorctl(runtime, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "seer-postmaster" in status.stdout and "seer:" not in status.stdout
    stop = _supervisorctl(runtime, "stop", "seer-postmaster")
    assert stop.returncode == 0 and "seer-postmaster: stopped" in stop.stdout, stop.stdout
    assert program(supervised, "seer-postmaster").state == "STOPPED"
    start = _supervisorctl(runtime, "start", "seer-postmaster")
    assert start.returncode == 0 and "seer-postmaster: started" in start.stdout, start.stdout
    assert program(supervised, "seer-postmaster").state == "RUNNING"
    one = _supervisorctl(runtime, "status", "seer-postmaster")
    assert one.returncode == 0 and "RUNNING" in one.stdout
    # `seer supervisorctl` passes through, with the file and the socket filled in.
    seer = subprocess.run(
        [str(BIN / "seer"), "supervisorctl", "status", "seer-scheduler"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert seer.returncode == 0 and "seer-scheduler" in seer.stdout and "RUNNING" in seer.stdout
    stopped = subprocess.run(
        [str(BIN / "seer"), "supervisorctl", "stop", "all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert {p.state for p in supervised.programs()} == {"STOPPED"}


async def test_rollback_refused_while_a_consumer_runs_and_never_locks_the_operator_out(
    runtime, supervised, cli, tmp_path
):
    # Issue 9, item 5: the rollback ran under a running scheduler, and afterwards every
    # command refused with the schema error, even those that only talk to supervisord.
    assert cli("backup", str(tmp_path / "backup")).code == 0
    refused = cli("migrate", "--rollback", "1", "--yes")
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "seer-postmaster, seer-scheduler" in refused.err and "stop the workers" in refused.err
    assert migrations.current_version(runtime.ledger) == migrations.LATEST

    assert cli("supervisor", "stop").code == 0
    done = cli("migrate", "--rollback", "1", "--yes")
    assert done.code == 0, done.err
    assert "table small_blobs" in done.out
    assert migrations.current_version(runtime.ledger) == migrations.LATEST - 1

    # supervisord-only commands work whatever the schema.
    status = cli("supervisor", "status")
    assert status.code == 3 and "STOPPED" in status.out, status.err
    log = runtime.layout.logs / "seer-scheduler.log"
    before = log.stat().st_size if log.exists() else 0
    asked_at = time.time()
    start = cli("supervisor", "start", "scheduler")  # the worker itself refuses the schema
    if start.code in (0, 3):
        # The refusal came after supervisord's startsecs (1 s: a loaded host, the ledger's
        # connection): it saw RUNNING, then the exit (3: already gone when `start` looked
        # again, "not running"). On a host loaded enough that every start outlasts startsecs,
        # supervisord restarts it at once each time and never gives up (EXITED and its exit
        # status last less than one of its loops, too short to be seen over XML-RPC), so
        # what is waited for is an exit since the start with the refusal in the worker's log,
        # or the give-up.
        def refused() -> bool:
            p = program(supervised, "seer-scheduler")
            if p.state in ("BACKOFF", "FATAL"):
                return True
            said = log.read_bytes()[before:] if log.exists() else b""
            return p.stop >= asked_at - 1 and b"the ledger schema is at version" in said

        wait_for(refused, 60, "the refused worker's exit")
    else:
        assert start.code == 1 and start.err.count("\n") == 1 and "SPAWN_ERROR" in start.err
    assert cli("supervisor", "stop", "scheduler").code == 0

    # The console: the Worker pane has supervisord's view, the others say why they have none.
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.3)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await _until(pilot, lambda: "STOPPED" in _pane_text(app))
        assert "postmaster STOPPED" in _pane_text(app)
        assert app.query_one("#worker").border_subtitle == ""
        assert "supervisord running" in app.query_one("#worker").border_title
        assert app.query_one("#queue").border_subtitle == "schema behind: run seer migrate"
        assert "schema behind: run seer migrate" in app.last_error

    down = cli("down")
    assert down.code == 0 and "stopped supervisord" in down.out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.queue_facing
def test_consumers_die_with_a_killed_supervisord_and_up_starts_them_once(runtime, supervised, cli):
    from worker.fleet import consumers as registry

    # Issue 10, item 5: after kill -9 of supervisord the scheduler lived on with ppid 1, and
    # `seer up` started a second one beside it.
    wait_for(
        lambda: all(program(supervised, n).state == "RUNNING" for n in supervision.PROGRAMS),
        30,
        "both programs running",
    )
    pids = [program(supervised, n).pid for n in supervision.PROGRAMS]
    daemon = int((runtime.layout.run / "supervisord.pid").read_text())
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: all(_gone(p) for p in pids), 60, "the consumers to stop with supervisord")
    assert cli("up").code == 0
    wait_for(
        lambda: len([c for c in registry.consumers(runtime.ledger) if c.alive]) == 2,
        30,
        "exactly the two new consumers",
    )
    alive = [c for c in registry.consumers(runtime.ledger) if c.alive]
    assert not {c.pid for c in alive} & set(pids)


def test_a_worker_whose_supervisord_died_while_it_started_does_not_run(runtime, env, tmp_path):
    """supervisord says RUNNING after startsecs, but on a busy host `seer worker` may not
    have reached its prctl by then: a supervisord killed in between sent no signal, and the
    worker ran on as an orphan beside the next `seer up`'s (seen in the suite, one core busy).
    Here the parent is gone before the worker starts; the worker must notice and not run."""
    log = tmp_path / "orphan.log"
    launcher = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.argv[1], 'worker', 'postmaster'], stdout=open(sys.argv[2], 'w'),"
        " stderr=subprocess.STDOUT)\n"
        "print(p.pid)"
    )
    started = subprocess.run(
        [str(BIN / "python"), "-c", launcher, str(BIN / "seer"), str(log)],
        env={**env, "SUPERVISOR_PROCESS_NAME": "seer-postmaster"},
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(started.stdout)
    try:
        wait_for(lambda: _gone(pid), 60, "the orphaned worker to give up")
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert "the parent process exited while the worker was starting" in log.read_text()


@pytest.mark.queue_facing
def test_up_and_down_stop_a_consumer_supervisord_does_not_run(runtime, cli, consumers):
    from worker.fleet import consumers as registry

    def registered(consumer) -> bool:
        return any(
            c.alive and c.pid == consumer.proc.pid for c in registry.consumers(runtime.ledger)
        )

    orphan = consumers("scheduler")
    wait_for(lambda: registered(orphan), 30, "the stray consumer to register")
    result = cli("up")
    try:
        assert result.code == 0, result.err
        assert f"stopped an orphaned seer-scheduler consumer (pid {orphan.proc.pid}" in result.out
        assert orphan.proc.wait(30) is not None
        wait_for(
            lambda: len([c for c in registry.consumers(runtime.ledger) if c.alive]) == 2, 30, "two"
        )
    finally:
        cli("down")
    stray = consumers("postmaster")
    wait_for(lambda: registered(stray), 30, "another stray consumer to register")
    down = cli("down")
    assert "stopped an orphaned seer-postmaster consumer" in down.out
    assert stray.proc.wait(30) is not None
