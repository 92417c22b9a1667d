"""Production supervision with a real supervisord: restarts, graceful stops, the rendered
program file, `seer supervisor …`, and the console's worker keys."""

from __future__ import annotations

import os
import signal
import threading

import psutil
import pytest

from seer_console.app import SeerConsole
from seer_console.screens import ConfirmScreen
from seer_console.source import SnapshotSource
from tests.helpers import parcel, wait_for
from worker import control, parcels, supervision


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
    return parcels.send(runtime.ledger, batch, runtime.ring)


def delivered(runtime) -> int:
    return runtime.ledger.scalar("SELECT value FROM counters WHERE name = 'parcels_delivered'")


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


def test_graceful_stop_while_parcels_are_running_loses_none(runtime, supervised, cli):
    # Big attachments keep the worker busy inside a batch when the stop comes.
    big = "x" * 200_000
    ids = send(runtime, [parcel("a", n, attachment=big + str(n)) for n in range(400)])
    wait_for(lambda: delivered(runtime) > 0, 30, "delivery to start")
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


def test_remove_stops_and_removes_the_programs_idempotently(runtime, supervised, cli):
    first = cli("supervisor", "remove")
    assert first.code == 0 and "removed the seer group" in first.out
    assert [p for p in supervised.programs() if p.group == "seer"] == []
    again = cli("supervisor", "remove")
    assert again.code == 0 and "nothing to remove" in again.out


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
    (group,) = [g for g in options.process_group_configs if g.name == "seer"]
    programs = {p.name: p for p in group.process_configs}
    assert set(programs) == {"seer-postmaster", "seer-scheduler"}
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
