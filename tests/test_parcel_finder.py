"""The parcel finder (worker/parcels/finder.py) and `seer parcel find|show`: every filter, id
prefix bounds, paging, bad input, redaction, and a parcel's life written by the real Postmaster
(a try that failed, a delivery, a failure, a retry, a take-back by the reaper)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import parcel
from tests.test_postmaster import GITHUB, dead_owner
from worker.identity import current_owner
from worker.parcels import failures, finder, postmaster
from worker.parcels import intake as parcels
from worker.parcels.postmaster import Postmaster


def one_line_failure(result, code: int) -> str:
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err + result.out, result.err
    return lines[0]


def queue(runtime, *items, now: float = 1000.0) -> list[str]:
    return parcels.queue_parcels(
        runtime.ledger,
        [parcels.validate(p, runtime.settings.max_parcel_size) for p in items],
        now=now,
    )


def kinds(life) -> list[str]:
    return [e.kind for e in life.events]


def insert(runtime, parcel_id: str, created_at: float = 1000.0, **fields) -> None:
    """A parcel row as intake writes one, with an id of the test's choosing."""
    row = {
        "id": parcel_id,
        "to_agent_id": "agent-x",
        "task_id": "task-x",
        "type": "t.x",
        "stream": "s",
        "state": "queued",
        "size": 1,
        "created_at": created_at,
        **fields,
    }
    with runtime.ledger.write():
        runtime.ledger.execute(
            f"INSERT INTO parcels ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )


@pytest.fixture
def mixed(runtime):
    """Twelve parcels: agents a/b/c, tasks by three, types by two, queued one a second;
    the first four delivered, the next two failed."""
    ids = []
    for n in range(12):
        item = parcel(f"agent-{'abc'[n % 3]}", n // 3)
        item["type"] = f"type.{n % 2}"
        ids += queue(runtime, item, now=1000.0 + n)
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE parcels SET state = 'delivered', finished_at = 2000 + seq WHERE id IN "
            f"({', '.join('?' * 4)})",
            ids[:4],
        )
        runtime.ledger.execute(
            "UPDATE parcels SET state = 'failed', finished_at = 3000, error = 'boom' "
            "WHERE id IN (?, ?)",
            ids[4:6],
        )
    return ids


def found_ids(runtime, **filters) -> list[str]:
    return [r.id for r in finder.find(runtime.ledger, **filters).rows]


def test_each_filter_finds_its_parcels_newest_first(runtime, mixed):
    ids = mixed
    newest_first = ids[::-1]
    assert found_ids(runtime) == newest_first
    assert found_ids(runtime, agent="agent-b") == [i for n, i in enumerate(ids) if n % 3 == 1][::-1]
    assert found_ids(runtime, task_id="task-2") == ids[6:9][::-1]
    assert found_ids(runtime, type="type.1") == ids[1::2][::-1]
    assert found_ids(runtime, state="delivered") == ids[:4][::-1]
    assert found_ids(runtime, state="failed") == ids[4:6][::-1]
    assert found_ids(runtime, state="queued", agent="agent-a") == [ids[6], ids[9]][::-1]
    assert found_ids(runtime, since=1005.0) == ids[5:][::-1]
    assert found_ids(runtime, until=1002.0) == ids[:3][::-1]
    assert found_ids(runtime, since=1003.0, until=1004.5, agent="agent-a") == [ids[3]]
    assert found_ids(runtime, since=5000.0) == [] and found_ids(runtime, until=10.0) == []
    assert found_ids(runtime, agent="nobody") == []
    assert found_ids(runtime, id_prefix=ids[7][:13]) == [ids[7]]
    row = finder.find(runtime.ledger, id_prefix=ids[4]).rows[0]
    assert (row.state, row.error, row.finished_at, row.to_agent_id) == (
        "failed",
        "boom",
        3000,
        "agent-b",
    )


def test_id_prefix_is_a_range_with_exact_bounds(runtime):
    tail = "-1111-4111-8111-111111111111"
    for head in ("abcdef00", "abcdef0f", "abcdef10", "abcdeeff", "abcdf000"):
        insert(runtime, head + tail)
    assert sorted(found_ids(runtime, id_prefix="abcdef0")) == [
        "abcdef00" + tail,
        "abcdef0f" + tail,
    ]
    assert found_ids(runtime, id_prefix="abcdef0f") == ["abcdef0f" + tail]
    assert found_ids(runtime, id_prefix="ABCDEF1") == ["abcdef10" + tail]
    assert len(found_ids(runtime, id_prefix="abcde")) == 4
    assert len(found_ids(runtime, id_prefix="abcd")) == 5
    assert found_ids(runtime, id_prefix="abcdef00-") == ["abcdef00" + tail]
    assert found_ids(runtime, id_prefix="abcdef00" + tail) == ["abcdef00" + tail]
    assert found_ids(runtime, id_prefix="abcdef01") == []


@pytest.mark.parametrize(
    "bad", ["xyz", "abcd-", "abcdef00-1111-4111-8111-1111111111111", "abcdef001", "", " ", "a%"]
)
def test_an_id_prefix_not_shaped_like_an_id_is_refused(bad):
    with pytest.raises(finder.FinderError, match="parcel id"):
        finder.validate_prefix(bad)


def test_paging_walks_every_parcel_once(runtime):
    ids = queue(runtime, *(parcel("agent-p", n % 4) for n in range(23)))
    seen, before, pages = [], None, 0
    while True:
        page = finder.find(runtime.ledger, agent="agent-p", before=before, limit=5)
        seen += [r.id for r in page.rows]
        pages += 1
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == ids[::-1] and pages == 5
    exact = finder.find(runtime.ledger, limit=23)
    assert len(exact.rows) == 23 and exact.next_before is None
    by_task, before = [], None
    while True:
        page = finder.find(runtime.ledger, task_id="task-1", before=before, limit=2)
        by_task += [r.id for r in page.rows]
        if page.next_before is None:
            break
        before = page.next_before
    assert by_task == [i for n, i in enumerate(ids) if n % 4 == 1][::-1]


def test_bad_terms_are_refused_with_what_is_allowed(runtime):
    with pytest.raises(finder.FinderError, match="not one of queued, in_flight"):
        finder.find(runtime.ledger, state="lost")
    with pytest.raises(finder.FinderError, match="limit"):
        finder.find(runtime.ledger, limit=0)
    with pytest.raises(finder.FinderError, match=r"an age .* or an ISO time"):
        finder.parse_when("soon", 0.0)
    assert finder.parse_when("2h", 10_000.0) == 10_000.0 - 7200
    assert finder.parse_when("1970-01-01T01:00", 0.0) == 3600.0
    assert finder.parse_when("1970-01-01T01:00+01:00", 0.0) == 0.0
    query = finder.parse_filter("agent:ops-bot state:failed task:T-1 type:x since:2h", 9000.0)
    assert query == finder.Query(
        agent="ops-bot", state="failed", task_id="T-1", type="x", since=1800.0
    )
    assert finder.parse_filter("ABCD", 0.0) == finder.Query(id_prefix="abcd")
    for text, said in (
        ("colour:red", "unknown term 'colour'"),
        ("agent:", "has no value"),
        ("state:lost", "not one of"),
        ("since:soon", "since 'soon' is not an age"),
        ("zzz", "not a parcel id"),
    ):
        with pytest.raises(finder.FinderError, match=said):
            finder.parse_filter(text, 0.0)


def test_secrets_in_agent_task_and_error_are_redacted(runtime, cli):
    # Intake refuses such an agent and redacts tasks; rows written otherwise (an older
    # release, a restored backup) are shown redacted all the same.
    pid = "abcdef00-1111-4111-8111-111111111111"
    history = json.dumps({"k": "try_failed", "t": 1002.0, "error": f"token {GITHUB}"}) + "\n"
    insert(
        runtime,
        pid,
        to_agent_id=f"agent-{GITHUB}",
        task_id=f"task-{GITHUB}",
        state="delivered",
        finished_at=1003.0,
        error=f"was {GITHUB}",
        history=history,
    )
    (row,) = finder.find(runtime.ledger, agent=f"agent-{GITHUB}").rows
    assert row.id == pid and GITHUB not in json.dumps(row.as_dict())
    assert "[REDACTED" in row.to_agent_id and "[REDACTED" in row.task_id
    assert GITHUB not in json.dumps([r.as_dict() for r in finder.recent(runtime.ledger)])
    life = finder.life(runtime.ledger, pid)
    assert life is not None and GITHUB not in json.dumps(life.as_dict())
    assert life.events[1].error.startswith("token [REDACTED")
    for args in (("parcel", "find", "--id", "abcdef"), ("parcel", "show", pid, "--json")):
        result = cli(*args)
        assert result.code == 0 and GITHUB not in result.out, result


def test_life_of_a_delivery_after_a_failed_try(runtime, monkeypatch):
    (pid,) = queue(runtime, parcel("agent-l", 1, attachment="hello"))
    me = current_owner(runtime.settings.host_id)
    real_put = runtime.store.put_many
    calls = []

    def failing_once(blobs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(f"the CAS hiccuped {GITHUB}")
        return real_put(blobs)

    monkeypatch.setattr(runtime.store, "put_many", failing_once)
    assert runtime.postmaster().deliver_waiting(now=1001.0).retried == 1
    assert runtime.postmaster().deliver_waiting(now=1100.0).delivered == 1
    life = finder.life(runtime.ledger, pid, store=runtime.store)
    assert life is not None and life.state == "delivered"
    assert kinds(life) == ["sent", "claimed", "try_failed", "claimed", "delivered"]
    sent, claimed, tried, _, delivered = life.events
    assert sent.at == 1000.0 and claimed.at == 1001.0
    assert (claimed.host, claimed.pid, claimed.thread) == (me.host, me.pid, me.thread)
    assert tried.attempt == 1 and tried.error.startswith("OSError: the CAS hiccuped")
    assert GITHUB not in tried.error and tried.retry_at > 1001.0
    assert delivered.message_id == life.message_id and life.message_id is not None
    assert "delivered as message" in delivered.describe() and me.host in delivered.describe()
    (attachment,) = life.artifacts
    assert (attachment.name, attachment.size) == ("notes.txt", 5)
    assert attachment.uri.startswith("fe://artifacts/by-task/task-1/" + attachment.hash)
    assert life.manifest is not None and life.manifest.kind == "manifest"
    assert json.loads(life.manifest_text)["parcel_id"] == pid
    assert life.actions == ("pull",)
    assert finder.life(runtime.ledger, "00000000-0000-4000-8000-000000000000") is None


def test_life_names_the_consumer_of_a_registered_process(runtime):
    from worker.fleet import consumers

    (pid,) = queue(runtime, parcel("agent-c", 1))
    consumers.register(runtime.ledger, "postmaster", host_id=runtime.settings.host_id)
    runtime.postmaster().deliver_waiting(now=1001.0)
    life = finder.life(runtime.ledger, pid)
    claimed = life.events[1]
    assert claimed.kind == "claimed" and claimed.consumer == "postmaster"
    assert claimed.describe().endswith(f"thread {claimed.thread} (postmaster)")


def test_life_of_a_failure_then_a_retry(runtime):
    (pid,) = queue(runtime, parcel("agent-f", 1))
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE parcels SET payload = '[]' WHERE id = ?", (pid,))
    runtime.postmaster().deliver_waiting(now=1001.0)
    life = finder.life(runtime.ledger, pid)
    assert kinds(life) == ["sent", "claimed", "failed"] and life.actions == ("retry",)
    assert life.events[-1].attempt == 1 and "not valid any more" in life.events[-1].error
    assert failures.retry(runtime.ledger, pid, now=1001.5)
    life = finder.life(runtime.ledger, pid)
    assert kinds(life) == ["sent", "claimed", "failed", "retried"] and life.actions == ()
    assert life.events[-1].at == 1001.5  # written down when it happened, not inferred
    assert life.events[-1].note == "put back in the queue by an operator"
    runtime.postmaster().deliver_waiting(now=1002.0)
    assert kinds(finder.life(runtime.ledger, pid)) == [
        "sent",
        "claimed",
        "failed",
        "retried",
        "claimed",
        "failed",
    ]


@pytest.mark.parametrize("how", ["all", "matching"])
def test_every_kind_of_retry_writes_its_time_into_the_life(runtime, how):
    pids = queue(runtime, parcel("agent-f", 1), parcel("agent-g", 2))
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE parcels SET payload = '[]'")
    runtime.postmaster().deliver_waiting(now=1001.0)
    if how == "all":
        assert sorted(failures.retry_all(runtime.ledger, now=1005.0)) == sorted(pids)
    else:
        chosen = failures.FailureFilter(agent="agent-g")
        assert failures.retry_matching(runtime.ledger, chosen, now=1005.0) == [pids[1]]
    retried = [pid for pid in pids if how == "all" or pid == pids[1]]
    for pid in pids:
        last = finder.life(runtime.ledger, pid).events[-1]
        if pid in retried:
            assert (last.kind, last.at) == ("retried", 1005.0)
        else:
            assert last.kind == "failed"


def test_life_of_a_parcel_taken_back_from_a_dead_worker(runtime):
    (pid,) = queue(runtime, parcel("agent-d", 1))
    owner = dead_owner()
    dead = Postmaster(runtime.ledger, runtime.store, runtime.settings, owner=owner)
    assert len(dead._claim(now=1001.0, limit=10)) == 1
    assert postmaster.recover(runtime.ledger, runtime.settings, now=1002.0).requeued == 1
    runtime.postmaster().deliver_waiting(now=1003.0)
    life = finder.life(runtime.ledger, pid)
    assert kinds(life) == ["sent", "claimed", "taken_back", "claimed", "delivered"]
    taken = life.events[2]
    assert (taken.at, taken.pid, taken.host) == (1002.0, owner.pid, owner.host)
    assert life.events[1].pid == owner.pid and life.events[3].pid != owner.pid


def test_life_of_a_parcel_from_before_the_history(runtime):
    (pid,) = queue(runtime, parcel("agent-o", 1))
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE parcels SET state = 'failed', history = NULL, claimed_at = 1001, "
            "finished_at = 1002, attempts = 3, error = 'old' WHERE id = ?",
            (pid,),
        )
    life = finder.life(runtime.ledger, pid)
    assert kinds(life) == ["sent", "claimed", "failed"]
    assert life.events[-1].error == "old" and life.events[1].note == "last claim only"


def test_recent_lists_the_newest_deliveries(runtime, mixed):
    assert [r.id for r in finder.recent(runtime.ledger, limit=3)] == mixed[1:4][::-1]
    assert all(r.state == "delivered" for r in finder.recent(runtime.ledger))


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_find_prints_a_page_and_the_next_cursor(runtime, cli, mixed):
    result = cli("parcel", "find", "--agent", "agent-a", "--limit", "2")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split() == ["PARCEL", "AGENT", "TASK", "TYPE", "STATE", "TRIES", "QUEUED"]
    assert [line.split()[0] for line in lines[1:3]] == [mixed[9], mixed[6]]
    cursor = lines[-1].rsplit("--before ", 1)[1].rstrip(")")
    rest = cli("parcel", "find", "--agent", "agent-a", "--before", cursor, "--json").json()
    assert [r["id"] for r in rest["parcels"]] == [mixed[3], mixed[0]]
    assert rest["next_before"] is None
    assert set(rest["parcels"][0]) == {
        "seq",
        "id",
        "to_agent_id",
        "task_id",
        "type",
        "state",
        "attempts",
        "created_at",
        "finished_at",
        "error",
    }
    out = cli("parcel", "find", "--state", "failed", "--id", mixed[5][:8]).out
    assert mixed[5] in out and "no more" in out
    out = cli("parcel", "find", "--since", "1970-01-01T00:16:45", "--until", "1006").out
    assert out.count("\n") >= 2 and "no more" in out


@pytest.mark.parametrize(
    "args, said",
    [
        (("--id", "zz"), "not a parcel id"),
        (("--since", "soon"), "--since 'soon' is not an age"),
        (("--until", "tomorrow"), "--until 'tomorrow'"),
        (("--agent", " "), "--agent needs a value"),
        (("--limit", "5000"), "limit 5000 is not from 1 to 1000"),
    ],
)
def test_cli_find_refuses_bad_values_in_one_line(runtime, cli, args, said):
    assert said in one_line_failure(cli("parcel", "find", *args), 2)


def test_cli_find_refuses_an_unknown_state(runtime, cli):
    result = cli("parcel", "find", "--state", "lost")
    assert result.code == 2 and "invalid choice" in result.err and "Traceback" not in result.err


def test_cli_show_tells_the_life(runtime, cli):
    (pid,) = queue(runtime, parcel("agent-s", 1, attachment="hi"))
    runtime.postmaster().deliver_waiting(now=1001.0)
    out = cli("parcel", "show", pid).out
    assert f"parcel   {pid}" in out and "state    delivered" in out
    life = out.split("\nlife\n", 1)[1].splitlines()
    assert "sent (queued)" in life[0] and "claimed by host" in life[1]
    assert "delivered as message" in life[2]
    shown = cli("parcel", "show", pid, "--json").json()
    assert shown["state"] == "delivered" and shown["message_id"]
    assert len(shown["artifacts"]) == 2
    assert [e["kind"] for e in shown["events"]] == ["sent", "claimed", "delivered"]
    assert shown["events"][2]["message_id"] == shown["message_id"]
