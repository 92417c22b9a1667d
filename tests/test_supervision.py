"""`seer up` / `seer down` with a real, unprivileged supervisord on a unix socket."""

from __future__ import annotations

import psutil
import pytest
from supervisor.states import ProcessStates, getProcessStateDescription
from supervisor.xmlrpc import Faults

from tests.helpers import wait_for
from worker.fleet import supervision


@pytest.mark.queue_facing
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


def _program(code: int) -> supervision.ProgramInfo:
    name = getProcessStateDescription(code)
    return supervision.ProgramInfo(
        "seer-postmaster", "seer-postmaster", name, 42, 100.0, 160.0, 0, "", "", code=code
    )


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self, name: str) -> None:
        self.calls.append(("start", name))

    def stop(self, name: str) -> None:
        self.calls.append(("stop", name))


def test_control_reads_supervisors_own_states():
    """STARTING and BACKOFF count as started, as supervisord's ALREADY_STARTED does; only
    RUNNING has an uptime."""
    for code in (ProcessStates.STARTING, ProcessStates.BACKOFF, ProcessStates.RUNNING):
        info, sup = _program(code), _Recorder()
        assert info.started and not info.stopped
        assert "already running" in supervision.control(sup, info, "start")
        assert sup.calls == []
        assert info.uptime == (60.0 if code == ProcessStates.RUNNING else 0.0)
    for code in (ProcessStates.STOPPED, ProcessStates.EXITED, ProcessStates.FATAL):
        info, sup = _program(code), _Recorder()
        assert info.stopped and not info.started
        supervision.control(sup, info, "restart")
        assert sup.calls == [("start", "seer-postmaster")]


def test_a_refusal_carries_supervisors_fault_code(runtime, cli):
    try:
        assert cli("up").code == 0
        sup = supervision.Supervisor(supervision.socket_path(runtime.layout))
        with pytest.raises(supervision.SupervisorError) as refused:
            sup.start("seer-postmaster")
        assert refused.value.fault == Faults.ALREADY_STARTED and not refused.value.unreachable
    finally:
        cli("down")
    with pytest.raises(supervision.SupervisorError) as unreachable:
        sup.start("seer-postmaster")
    assert unreachable.value.unreachable and unreachable.value.fault is None
