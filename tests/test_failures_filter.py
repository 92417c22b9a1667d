"""Failures by filter: the service (FailureFilter, matching, counts, retry and purge in
batches) and `seer failed list|retry|purge` with --agent, --error, --type and ages."""

from __future__ import annotations

import pytest

from tests.helpers import parcel
from tests.test_cli import ok, one_line_failure, pending
from worker.cas import tools as cas_tools
from worker.ops import operations
from worker.parcels import failures, inbox
from worker.parcels import intake as parcels
from worker.parcels.failures import FailureFilter
from worker.runtime import Runtime

HOUR = 3600.0

# (agent, type, error, failed this long before now)
FAILED = (
    ("ops-bot", "pm.task.created", "TimeoutError: inbox did not answer", 3 * HOUR),
    ("ops-bot", "pm.task.created", "TimeoutError: inbox did not answer", 3 * HOUR),
    ("ops-bot", "pm.task.created", "TimeoutError: inbox did not answer", 3 * HOUR),
    ("ops-bot", "pm.review", "ValueError: bad priority", 0.5 * HOUR),
    ("ops-bot", "pm.review", "ValueError: bad priority", 0.5 * HOUR),
    ("planner", "pm.task.created", "waiting for a TIMEOUT", 10 * 60),
    ("planner", "pm.task.created", "100% done_ish", 10 * 60),
)


def make_failures(runtime: Runtime, now: float) -> dict[str, list[str]]:
    """The parcels of FAILED, failed at their ages before `now`; ids by agent."""
    items = []
    for n, (agent, kind, _, _) in enumerate(FAILED):
        item = parcel(agent, n)
        item["type"] = kind
        items.append(parcels.validate(item, runtime.settings.max_parcel_size))
    ids = parcels.queue_parcels(runtime.ledger, items)
    with runtime.ledger.write():
        for pid, (_, _, error, age) in zip(ids, FAILED, strict=True):
            runtime.ledger.execute(
                "UPDATE parcels SET state = 'failed', attempts = 3, crashes = 1, isolate = 1, "
                "not_before = ?, finished_at = ?, error = ? WHERE id = ?",
                (now + 999, now - age, error, pid),
            )
    by_agent: dict[str, list[str]] = {}
    for pid, (agent, *_) in zip(ids, FAILED, strict=True):
        by_agent.setdefault(agent, []).append(pid)
    return by_agent


@pytest.fixture
def failed(runtime):
    now = runtime.ledger.now()
    return runtime, now, make_failures(runtime, now)


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (FailureFilter(), 7),
        (FailureFilter(agent="ops-bot"), 5),
        (FailureFilter(agent="ops"), 0),  # exact, not a prefix
        (FailureFilter(error="timeout"), 4),  # any case
        (FailureFilter(error="100%"), 1),  # LIKE's characters taken literally
        (FailureFilter(error="e_i"), 1),
        (FailureFilter(error="%"), 1),
        (FailureFilter(type="pm.review"), 2),
        (FailureFilter(older_than=HOUR), 3),
        (FailureFilter(newer_than=HOUR), 4),
        (FailureFilter(older_than=20 * 60, newer_than=HOUR), 2),
        (FailureFilter(agent="ops-bot", error="TIMEOUT"), 3),
        (FailureFilter(agent="planner", error="timeout", type="pm.task.created"), 1),
        (FailureFilter(agent="ops-bot", type="pm.review", older_than=HOUR), 0),
        (FailureFilter(text="planner"), 2),
        (FailureFilter(text="priority"), 2),
    ],
    ids=lambda v: v.describe() if isinstance(v, FailureFilter) else str(v),
)
def test_each_field_and_combinations_select_and_count_the_same(failed, chosen, expected):
    runtime, now, _ = failed
    found = failures.matching(runtime.ledger, chosen, now)
    assert len(found) == expected
    assert failures.count_matching(runtime.ledger, chosen, now) == expected
    assert [f.failed_at for f in found] == sorted((f.failed_at for f in found), reverse=True)
    if chosen.agent:
        assert {f.to_agent_id for f in found} <= {chosen.agent}


def test_matching_is_limited_and_the_text_field_finds_ids(failed):
    runtime, now, by_agent = failed
    assert len(failures.matching(runtime.ledger, FailureFilter(), now, limit=2)) == 2
    pid = by_agent["planner"][0]
    (found,) = failures.matching(runtime.ledger, FailureFilter(text=pid[:13].upper()), now)
    assert found.id == pid


def test_describe_says_the_filter():
    said = FailureFilter(agent="ops-bot", error="timeout", older_than=7200).describe()
    assert said == "agent ops-bot, error ~timeout, failed more than 2h ago"
    assert FailureFilter().describe() == "every failed parcel"
    assert not FailureFilter() and FailureFilter(type="x")


@pytest.mark.queue_facing
def test_retry_matching_is_the_single_retry_and_a_postmaster_delivers_them(failed):
    runtime, now, by_agent = failed
    chosen = FailureFilter(agent="ops-bot", error="timeout")
    rung = operations.retry_failed_matching(runtime, chosen, now)
    assert list(rung.ids) == by_agent["ops-bot"][:3]  # oldest first
    assert rung.notified and pending(runtime) == 1  # the queue's doorbell rang
    for pid in rung.ids:
        entry = failures.parcel(runtime.ledger, pid)
        # What `retry` does: queued, fresh tries, due now, its contents kept.
        assert (entry.state, entry.attempts, entry.crashes, entry.not_before) == (
            "queued",
            0,
            0,
            0,
        )
        assert entry.finished_at is None and entry.payload["to_agent_id"] == "ops-bot"
    assert runtime.ledger.scalar("SELECT max(isolate) FROM parcels WHERE state = 'queued'") == 0
    assert failures.count_failed(runtime.ledger) == 4
    # Nothing more matches: a second run retries nothing and rings nothing.
    again = operations.retry_failed_matching(runtime, chosen, now)
    assert again.ids == () and pending(runtime) == 1

    result = runtime.postmaster().deliver_waiting()
    assert result.delivered == 3
    delivered = {m.parcel_id for m in inbox.messages(runtime.ledger, "ops-bot")}
    assert delivered == set(rung.ids)


def test_retry_and_purge_walk_in_batches_and_count_what_they_did(failed, monkeypatch):
    runtime, now, by_agent = failed
    monkeypatch.setattr(failures, "BATCH", 2)  # 7 parcels: four transactions
    ids = failures.retry_matching(runtime.ledger, FailureFilter(agent="ops-bot"), now)
    assert ids == by_agent["ops-bot"]
    assert failures.purge_matching(runtime.ledger, FailureFilter(type="pm.task.created"), now) == 2
    assert failures.count_failed(runtime.ledger) == 0
    # The retried ones are queued, not purged (a purge takes failed parcels only).
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'queued'") == 5
    status = runtime.ledger.counters()
    assert status["parcels_failed"] == 0 and status["parcels_queued"] == 5


def test_a_retried_parcel_that_fails_again_meanwhile_is_not_taken_twice(failed, monkeypatch):
    runtime, now, by_agent = failed
    first = by_agent["ops-bot"][0]
    real = runtime.ledger.write
    batches = []

    def fail_the_first_again():
        # Between two batches, the first retried parcel fails again.
        if batches and runtime.ledger.scalar(
            "SELECT state FROM parcels WHERE id = ?", (first,)
        ) == ("queued"):
            with real():
                runtime.ledger.execute(
                    "UPDATE parcels SET state = 'failed', finished_at = ? WHERE id = ?",
                    (now - 4 * HOUR, first),
                )
        batches.append(1)
        return real()

    monkeypatch.setattr(failures, "BATCH", 1)
    monkeypatch.setattr(runtime.ledger, "write", fail_the_first_again)
    ids = failures.retry_matching(runtime.ledger, FailureFilter(agent="ops-bot"), now)
    assert ids == by_agent["ops-bot"]
    assert failures.parcel(runtime.ledger, first).state == "failed"


def test_purge_matching_leaves_cas_accounting_and_gc_in_step(runtime, monkeypatch):
    # Real failures: a quota too small for the big attachments (their blobs written or not,
    # no artifact rows), beside small parcels delivered with theirs.
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "4096")
    tight = Runtime.open()
    try:
        items = [parcel("big", n, attachment="x" * 5000 + str(n)) for n in range(3)]
        items += [parcel("small", n, attachment=f"small {n}") for n in range(3)]
        parcels.queue_parcels(
            tight.ledger, [parcels.validate(i, tight.settings.max_parcel_size) for i in items]
        )
        for _ in range(10):
            tight.postmaster().deliver_waiting(now=tight.ledger.now() + 3600)
            if not tight.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'queued'"):
                break
        assert failures.count_failed(tight.ledger) == 3
        assert tight.ledger.scalar("SELECT count(*) FROM parcels WHERE state='delivered'") == 3
        before = cas_tools.reconcile(tight.ledger, tight.store, repair=False)
        assert before.in_step
        removed = operations.purge_failed_matching(tight, FailureFilter(agent="big"))
        assert removed == 3 and failures.count_failed(tight.ledger) == 0
        after = cas_tools.reconcile(tight.ledger, tight.store, repair=False)
        assert after.in_step and after.table == before.table
        cas_tools.gc(tight.ledger, tight.store, grace=0)
        assert cas_tools.reconcile(tight.ledger, tight.store, repair=False).in_step
        # What was delivered is whole: every artifact's bytes are still there.
        for row in tight.ledger.rows("SELECT hash FROM artifacts"):
            assert tight.store.read(row["hash"])
    finally:
        tight.close()


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_list_filters_and_json(failed, cli):
    _, _, by_agent = failed
    rows = cli("failed", "list", "--agent", "ops-bot", "--error", "timeout", "--json").json()
    assert sorted(r["id"] for r in rows) == sorted(by_agent["ops-bot"][:3])
    out = ok(cli("failed", "list", "--type", "pm.review", "--limit", "1"))
    assert "1 shown of 2 matching type pm.review; 7 failed" in out
    assert len(cli("failed", "list", "--older-than", "1h", "--json").json()) == 3
    assert len(cli("failed", "list", "--newer-than", "1h", "--json").json()) == 4
    assert len(cli("failed", "list", "--json").json()) == 7


@pytest.mark.queue_facing
def test_cli_retry_by_filter_asks_when_more_than_one(failed, cli):
    runtime, _, by_agent = failed
    # More than one, no terminal, no --yes: refused, nothing retried.
    line = one_line_failure(cli("failed", "retry", "--agent", "ops-bot", stdin=""), 2)
    assert "Retry 5 failed parcels (agent ops-bot)?" in line and "--yes" in line
    assert failures.count_failed(runtime.ledger) == 7
    out = ok(cli("failed", "retry", "--agent", "ops-bot", "--error", "TIMEOUT", "--yes"))
    assert "3 failed parcels back in the queue (agent ops-bot, error ~TIMEOUT)" in out
    assert pending(runtime) == 1
    # One: no question.
    out = ok(cli("failed", "retry", "--agent", "planner", "--error", "100%"))
    assert "1 failed parcel back in the queue" in out
    out = ok(cli("failed", "retry", "--type", "nothing.like.this"))
    assert "no failed parcels match" in out
    assert failures.count_failed(runtime.ledger) == 3
    # The old shapes still work.
    (pid,) = [
        i for i in by_agent["planner"] if failures.parcel(runtime.ledger, i).state == "failed"
    ]
    assert f"parcel {pid} back in the queue" in ok(cli("failed", "retry", pid))
    assert "2 failed parcels back in the queue" in ok(cli("failed", "retry", "--all"))


def test_cli_retry_refuses_no_way_or_two_ways(failed, cli):
    runtime, _, by_agent = failed
    line = one_line_failure(cli("failed", "retry"), 2)
    assert "ID, --all or a filter" in line and "--agent AGENT" in line
    line = one_line_failure(cli("failed", "retry", by_agent["planner"][0], "--agent", "x"), 2)
    assert "ID and a filter together" in line
    line = one_line_failure(cli("failed", "retry", "--all", "--error", "x"), 2)
    assert "--all and a filter together" in line
    assert failures.count_failed(runtime.ledger) == 7


def test_cli_purge_by_filter(failed, cli):
    runtime, _, by_agent = failed
    line = one_line_failure(cli("failed", "purge", "--agent", "ops-bot", stdin=""), 2)
    assert "Delete 5 failed parcels (agent ops-bot) for good?" in line
    out = ok(cli("failed", "purge", "--older-than", "1h", "--agent", "ops-bot", "--yes"))
    assert "purged 3 failed parcels (agent ops-bot, failed more than 1h ago)" in out
    assert all(failures.parcel(runtime.ledger, i) is None for i in by_agent["ops-bot"][:3])
    out = ok(cli("failed", "purge", "--error", "priority", "--type", "pm.review", "--yes"))
    assert "purged 2 failed parcels" in out
    assert "no failed parcels to purge (agent ops-bot)" in ok(
        cli("failed", "purge", "--agent", "ops-bot", "--yes")
    )
    assert failures.count_failed(runtime.ledger) == 2
    assert cli("status", "--json").json()["parcels"]["failed"] == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("failed", "list", "--older-than", "soon"), "--older-than 'soon'"),
        (("failed", "list", "--newer-than=-1h"), "--newer-than '-1h'"),
        (("failed", "retry", "--older-than", "3 weeks", "--yes"), "--older-than '3 weeks'"),
        (("failed", "purge", "--newer-than", "x", "--yes"), "--newer-than 'x'"),
        (("failed", "purge", "--agent", " ", "--yes"), "--agent"),
        (("failed", "list", "--error", ""), "--error"),
    ],
)
def test_cli_bad_values_are_one_line(failed, cli, args, said):
    line = one_line_failure(cli(*args), 2)
    assert said in line
    assert failures.count_failed(failed[0].ledger) == 7
