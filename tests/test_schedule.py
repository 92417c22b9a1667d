"""The periodic jobs' runs recorded in the ledger (by the scheduler's own job functions and by
`seer schedule run`), and `seer schedule`'s columns, on both ledger engines."""

from __future__ import annotations

import pytest

from worker.fleet import control
from worker.monitoring import watchdog
from worker.ops import jobs, schedule


def periodic_run(runtime, name: str):
    """The job as the scheduler consumer runs it (jobs.build, what Huey is given)."""
    (job,) = [p for p in jobs.build(runtime).periodic if p.name == name]
    return job.run


def test_a_periodic_run_is_recorded_with_its_start_duration_and_result(runtime):
    before = runtime.ledger.now()
    periodic_run(runtime, "sample")()
    run = control.job_runs(runtime.ledger)["sample"]
    assert run.ok and run.error is None and run.by == "scheduler"
    assert before <= run.started_at <= runtime.ledger.now()
    assert 0 <= run.took < 30
    assert run.last_ok_at == run.started_at
    assert runtime.ledger.scalar("SELECT count(*) FROM metric_samples") == 1


def test_a_failed_run_keeps_its_error_and_the_last_good_run(runtime):
    run = periodic_run(runtime, "monitor_storage")
    run()
    good = control.job_runs(runtime.ledger)["monitor_storage"]
    assert good.ok
    # A link planted where the report goes: refused, and the run says so.
    log = runtime.layout.logs / "orchestration.log"
    log.unlink()
    log.symlink_to(runtime.layout.root / "elsewhere")
    run()
    failed = control.job_runs(runtime.ledger)["monitor_storage"]
    assert not failed.ok and "symbolic link" in (failed.error or "")
    assert "\n" not in (failed.error or "")
    assert failed.started_at >= good.started_at and failed.last_ok_at == good.started_at


def test_a_job_that_raises_is_recorded_then_raises(runtime):
    token = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"

    def body() -> None:
        raise RuntimeError(f"cannot reach\nthe server with {token}")

    with pytest.raises(RuntimeError):
        jobs.run_recorded(runtime, "deliver_alerts", body)
    run = control.job_runs(runtime.ledger)["deliver_alerts"]
    assert run.error is not None and run.error.startswith("RuntimeError: cannot reach the")
    assert token not in run.error and run.last_ok_at is None


def test_evaluate_rules_still_notes_its_run_for_the_watchdogs(runtime):
    periodic_run(runtime, "evaluate_rules")()
    assert control.last_run(runtime.ledger, watchdog.SCHEDULER_JOB) is not None
    assert control.job_runs(runtime.ledger)["evaluate_rules"].ok


def test_jobs_service_gives_next_and_last_runs(runtime):
    now = runtime.ledger.now()
    periodic_run(runtime, "sample")()
    found = {j.name: j for j in schedule.jobs(runtime, now=now)}
    assert set(found) == {j.name for j in jobs.periodic(runtime.settings)}
    assert found["sample"].result == "ok" and found["sample"].safe
    assert found["reap"].result == "never ran" and not found["reap"].safe
    assert found["reap"].why_not
    assert found["sample"].next_run is not None and found["sample"].next_run > now


def test_run_now_runs_a_safe_job_recorded_with_who_and_refuses_the_others(runtime):
    run = schedule.run_now(runtime, "compact_memory", by="console")
    assert run.ok and run.by == "console"
    assert control.job_runs(runtime.ledger)["compact_memory"].by == "console"
    assert runtime.compactor().recent(1)[0].trigger == "console"
    with pytest.raises(schedule.NotRunnable, match="reap is not run on request"):
        schedule.run_now(runtime, "reap")
    with pytest.raises(schedule.NotRunnable, match="no periodic job 'nope'"):
        schedule.run_now(runtime, "nope")


def test_seer_schedule_shows_the_columns_and_the_queue_depth(runtime, cli):
    periodic_run(runtime, "sample")()
    shown = cli("schedule")
    assert shown.code == 0
    header = shown.out.splitlines()[0].split()
    assert header == [
        "JOB",
        "SCHEDULE",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
        "TOOK",
        "RESULT",
        "LAST",
        "OK",
    ]
    sample = next(line for line in shown.out.splitlines() if line.startswith("sample "))
    assert " ok " in sample and "s  ok" in sample
    reap = next(line for line in shown.out.splitlines() if line.startswith("reap "))
    assert "never ran" in reap
    assert "scheduler queue: 0 waiting" in shown.out
    listed = cli("schedule", "--json").json()
    sample_json = next(j for j in listed if j["job"] == "sample")
    assert sample_json["result"] == "ok" and sample_json["last_ok"] == sample_json["last_run"]
    assert sample_json["took"] >= 0 and sample_json["queue_depth"] == 0
    assert sample_json["runnable"] and not next(j for j in listed if j["job"] == "reap")["runnable"]


def test_seer_schedule_run_runs_a_safe_job_and_refuses_the_others(runtime, cli):
    ran = cli("schedule", "run", "sample")
    assert ran.code == 0 and ran.out.startswith("sample ran: ok")
    assert control.job_runs(runtime.ledger)["sample"].by.startswith("cli:")
    assert "(by cli:" in cli("schedule").out
    refused = cli("schedule", "run", "reap")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "monitor_storage" in refused.err and "sample" in refused.err
    unknown = cli("schedule", "run", "nope")
    assert unknown.code == 2 and "no periodic job 'nope'" in unknown.err
    assert cli("schedule", "run").code == 2


def test_seer_schedule_run_says_a_failed_run_and_exits_1(runtime, cli):
    # A directory where the report goes (a link would stop every command at the start).
    (runtime.layout.logs / "orchestration.log").mkdir(exist_ok=True)
    failed = cli("schedule", "run", "monitor_storage", "--json")
    assert failed.code == 1
    shown = failed.json()
    assert shown["ok"] is False and "storage report not logged" in shown["error"]
    assert "FAILED: storage report not logged" in cli("schedule").out


def test_errors_are_redacted_and_one_line_where_they_are_read(runtime, cli):
    # A body's own message is recorded as it said it (and older versions redacted nothing).
    token = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
    control.record_job_run(runtime.ledger, "sample", 100.0, 0.5, f"refused\nwith {token}")
    (job,) = [j for j in schedule.jobs(runtime) if j.name == "sample"]
    assert job.last is not None and job.last.error == "refused with [REDACTED:github-token]"
    assert job.result_line() == "FAILED: refused with [REDACTED:github-token]"
    assert job.result_line(10) == "FAILED: refused w…"
    shown = cli("schedule")
    assert token not in shown.out and "FAILED: refused with [REDACTED" in shown.out
    assert token not in cli("schedule", "--json").out


def test_the_cli_and_the_console_view_show_the_same_columns(runtime, cli):
    import re

    from seer_console.views.schedule import COLUMNS

    control.record_job_run(runtime.ledger, "compact_memory", 100.0, 1.25, by="console")
    header, *lines = cli("schedule").out.splitlines()
    assert re.split(r"\s{2,}", header) == list(COLUMNS) == list(schedule.COLUMNS)
    compact = next(line for line in lines if line.startswith("compact_memory "))
    assert "1.25s  ok (by console)" in compact
