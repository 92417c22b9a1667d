"""`seer up` / `seer down` with a real, unprivileged supervisord on a unix socket."""

from __future__ import annotations

import psutil

from tests.helpers import wait_for
from worker.fleet import supervision


def test_up_runs_both_consumers_idempotently_and_down_stops_them(runtime, cli):
    layout = runtime.layout
    try:
        first = cli("up")
        assert first.code == 0, first.err
        assert "started" in first.out
        sup = supervision.Supervisor(supervision.socket_path(layout))
        programs = {p.name: p for p in sup.programs()}
        assert set(programs) == {"seer-postmaster", "seer-scheduler"}
        assert all(p.state == "RUNNING" for p in programs.values())
        supervisord_pid = sup.pid()

        # Twice: nothing starts twice.
        again = cli("up")
        assert again.code == 0 and "already running" in again.out
        assert sup.pid() == supervisord_pid
        assert {p.name: p.pid for p in sup.programs()} == {n: p.pid for n, p in programs.items()}

        # The consumers are the real thing: a parcel goes through.
        parcel_id = cli("send-test-parcel").out.strip()
        wait_for(
            lambda: cli("parcel", "show", parcel_id, "--json").json()["state"] == "delivered",
            30,
            "delivery through the supervised consumer",
        )

        # The scheduler registers when it starts, not when the postmaster delivers: wait for it.
        def with_the_scheduler_registered():
            shown = cli("status")
            return shown if "scheduler: alive" in shown.out else None

        status = wait_for(with_the_scheduler_registered, 30, "the scheduler consumer to register")
        assert "supervisor running" in status.out
        assert "postmaster: alive" in status.out and "scheduler: alive" in status.out
        for name in ("seer-postmaster", "seer-scheduler", "supervisord"):
            assert (layout.logs / f"{name}.log").is_file()
        # supervisord listens on its unix socket only, group-accessible, nothing for others.
        assert supervision.socket_path(layout).stat().st_mode & 0o777 == 0o770
        assert not [c for c in psutil.Process(supervisord_pid).net_connections("inet")], (
            "supervisord must not listen on the network"
        )
    finally:
        down = cli("down")
    assert down.code == 0 and "stopped" in down.out
    assert not psutil.pid_exists(supervisord_pid) or (
        psutil.Process(supervisord_pid).status() == psutil.STATUS_ZOMBIE
    )
    for p in programs.values():
        assert not psutil.pid_exists(p.pid) or psutil.Process(p.pid).status() == "zombie"
    second = cli("down")
    assert second.code == 0 and "not running" in second.out


def test_supervisor_unreachable_is_reported_in_status(runtime, cli):
    result = cli("status")
    assert "supervisor not reachable" in result.out
