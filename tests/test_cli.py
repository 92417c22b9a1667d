"""`seer`: every command run in-process against a real storage root in a temporary directory."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from tests import blobs
from tests.helpers import ledger_schema, parcel, sqlite_file_schema
from worker.fleet import control
from worker.ledger import migrations
from worker.parcels import failures
from worker.runtime import Runtime


def one_line_failure(result, code: int) -> str:
    """The command failed with `code` and exactly one line on stderr, no traceback."""
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].strip(), result.err
    assert "Traceback" not in result.err + result.out
    return lines[0]


def ok(result) -> str:
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result.out


def parcel_count(runtime) -> int:
    return runtime.ledger.scalar("SELECT count(*) FROM parcels")


def pending(runtime) -> int:
    return runtime.queues.postmaster.pending_count()


def jsonl(*items) -> str:
    return "".join(json.dumps(i) + "\n" for i in items)


def send(cli, *items) -> list[str]:
    return ok(cli("parcel", "send", "-", stdin=jsonl(*items))).split()


def make_failed(runtime, n: int = 1, failed_at: float | None = None, agent="agent-f") -> list[str]:
    """Queues `n` parcels in the ledger (no Huey task) and marks them failed."""
    from worker.parcels import intake as parcels

    items = [parcels.validate(parcel(agent, i), runtime.settings.max_parcel_size) for i in range(n)]
    ids = parcels.queue_parcels(runtime.ledger, items)
    when = time.time() if failed_at is None else failed_at
    with runtime.ledger.write():
        for pid in ids:
            runtime.ledger.execute(
                "UPDATE parcels SET state='failed', finished_at=?, error=?, attempts=3 WHERE id=?",
                (when, f"boom {pid}", pid),
            )
    return ids


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def current_ledger_schema() -> list[tuple]:
    rt = Runtime.open()
    try:
        return ledger_schema(rt.ledger)
    finally:
        rt.close()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- init -----------------------------------------------------------------------------------------


def test_init_creates_storage_root_with_group_modes(env, cli, tmp_path, umask_022):
    root = tmp_path / "storage"
    out = ok(cli("init"))
    assert str(root) in out
    for directory in (
        root,
        root / "orchestration",
        root / "orchestration" / "cas",
        root / "orchestration" / "memory",
        root / "logs",
    ):
        assert directory.is_dir(), directory
    assert (root / "ledger.db").is_file() and (root / "queue.db").is_file()
    wrong = {}
    for path in sorted(root.rglob("*")):
        expected = 0o770 if path.is_dir() else 0o660
        if mode(path) != expected:
            wrong[str(path.relative_to(root))] = oct(mode(path))
    if mode(root) != 0o770:
        wrong["."] = oct(mode(root))
    # ledger.db-wal and ledger.db-shm exist while the ledger is open (in-process: now).
    assert wrong == {}, f"wrong modes (expected dirs 0o770, files 0o660): {wrong}"
    rt = Runtime.open()
    try:
        assert migrations.current_version(rt.ledger) == migrations.LATEST
    finally:
        rt.close()


def test_init_honours_custom_modes(env, cli, tmp_path, monkeypatch, umask_022):
    monkeypatch.setenv("SEER_DIR_MODE", "0750")
    monkeypatch.setenv("SEER_FILE_MODE", "0640")
    ok(cli("init"))
    root = tmp_path / "storage"
    assert mode(root) == mode(root / "orchestration" / "cas") == 0o750
    assert mode(root / "ledger.db") == mode(root / "queue.db") == 0o640


@pytest.mark.queue_facing
def test_init_twice_is_harmless_and_keeps_data(env, cli, tmp_path):
    root = tmp_path / "storage"
    out = ok(cli("init"))
    assert f"migrations applied: {len(migrations.MIGRATIONS)}" in out
    (pid,) = send(cli, parcel("agent-1", 1))
    schema, queue_schema = current_ledger_schema(), sqlite_file_schema(root / "queue.db")

    out = ok(cli("init"))
    assert "migrations applied: 0" in out and "directories created: 0" in out
    assert current_ledger_schema() == schema
    assert sqlite_file_schema(root / "queue.db") == queue_schema
    rt = Runtime.open()
    try:
        assert failures.parcel(rt.ledger, pid).state == "queued"
        assert pending(rt) == 1
    finally:
        rt.close()
    assert ok(cli("parcel", "show", pid))


# -- refusing an uninitialised root ---------------------------------------------------------------

EVERY_COMMAND_BUT_INIT = [
    ("status",),
    ("status", "--json"),
    ("migrate",),
    ("migrate", "--status"),
    ("migrate", "--rollback", "1"),
    ("worker",),
    ("worker", "scheduler"),
    ("up",),
    ("down",),
    ("send-test-parcel",),
    ("parcel", "send", "-"),
    ("parcel", "show", "x"),
    ("inbox", "agent-1"),
    ("inbox", "ack", "1"),
    ("artifacts", "pull", "a" * 64),
    ("failed", "list"),
    ("failed", "show", "x"),
    ("failed", "retry", "x"),
    ("failed", "retry", "--all"),
    ("failed", "purge", "--yes"),
    ("queue", "pause"),
    ("queue", "resume"),
    ("queue", "status"),
]


@pytest.mark.parametrize("args", EVERY_COMMAND_BUT_INIT, ids=" ".join)
@pytest.mark.parametrize("root_exists", [False, True], ids=["no-dir", "empty-dir"])
def test_commands_refuse_an_uninitialised_root_and_create_nothing(
    env, cli, tmp_path, args, root_exists
):
    root = tmp_path / "storage"
    if root_exists:
        root.mkdir()
    result = cli(*args, stdin=jsonl(parcel()))
    code = 3 if args[0] == "status" else 2
    if args == ("status", "--json"):
        assert result.code == 3 and len(result.err.splitlines()) == 1
        assert result.json()["level"] == "unknown"
        line = result.err
    else:
        line = one_line_failure(result, code)
    assert str(root) in line and "seer init" in line
    if root_exists:
        assert list(root.iterdir()) == []
    else:
        assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["storage"] if root_exists else [])


# -- migrate --------------------------------------------------------------------------------------


def test_migrate_status_and_json(runtime, cli):
    out = ok(cli("migrate", "--status"))
    assert f"schema version {migrations.LATEST}, code {migrations.LATEST}" in out
    for m in migrations.MIGRATIONS:
        assert m.name in out
    states = cli("migrate", "--status", "--json").json()
    assert [s["version"] for s in states] == [m.version for m in migrations.MIGRATIONS]
    assert all(s["applied_at"] for s in states)
    out = ok(cli("migrate"))
    assert "nothing to do" in out


def test_rollback_then_commands_refuse_until_migrate(runtime, cli):
    (pid,) = send(cli, parcel("agent-1", 1))
    out = ok(cli("migrate", "--rollback", "1", "--force", "--yes"))
    assert f"rolled back {migrations.LATEST}" in out
    assert f"schema version now {migrations.LATEST - 1}" in out

    for args in (("queue", "status"), ("parcel", "show", pid), ("send-test-parcel",)):
        line = one_line_failure(cli(*args), 2)
        assert "seer migrate" in line, args
    line = one_line_failure(cli("status"), 3)
    assert "seer migrate" in line
    states = cli("migrate", "--status", "--json").json()
    assert states[-1]["applied_at"] is None and states[0]["applied_at"]

    out = ok(cli("migrate"))
    assert f"applied {migrations.LATEST}" in out
    assert cli("queue", "status").code == 0
    assert cli("parcel", "show", pid, "--json").json()["state"] == "queued"


def test_rollback_arguments(runtime, cli):
    assert cli("migrate", "--rollback", "0").code == 2
    assert cli("migrate", "--rollback", "x").code == 2
    assert cli("migrate", "--rollback", "1", "--status").code == 2
    # Issue 10, item 2: a typo (99) undid every migration; all the way down needs --to-zero.
    line = one_line_failure(cli("migrate", "--rollback", "99", "--force", "--yes"), 2)
    assert f"only {migrations.LATEST} migrations applied" in line
    everything = str(migrations.LATEST)
    line = one_line_failure(cli("migrate", "--rollback", everything, "--force", "--yes"), 2)
    assert "--to-zero" in line and "drops every table" in line
    assert migrations.current_version(runtime.ledger) == migrations.LATEST
    out = ok(cli("migrate", "--rollback", everything, "--to-zero", "--force", "--yes"))
    assert "schema version now 0" in out
    assert "nothing to roll back" in ok(cli("migrate", "--rollback", "1"))
    ok(cli("migrate"))
    assert cli("status", "--json").code in (0, 1, 2)


def test_rollback_refuses_without_a_backup_newer_than_the_last_migration(runtime, cli, tmp_path):
    refused = cli("migrate", "--rollback", "1")
    assert refused.code == 1 and "seer backup" in refused.err and "--force" in refused.err
    assert migrations.current_version(runtime.ledger) == migrations.LATEST
    assert cli("backup", str(tmp_path / "before-rollback")).code == 0
    out = ok(cli("migrate", "--rollback", "1", "--yes"))
    assert f"schema version now {migrations.LATEST - 1}" in out


def test_rollback_says_what_it_drops_and_asks_first(runtime, cli, tmp_path):
    # Issue 9, item 5: the rollback ran without asking or saying what it would destroy.
    send(cli, parcel("agent-1", 1))
    asked = one_line_failure(cli("migrate", "--rollback", "4", "--force"), 2)
    assert "pass --yes" in asked
    assert migrations.current_version(runtime.ledger) == migrations.LATEST
    shown = cli("migrate", "--rollback", "4", "--force").out
    assert "table small_blobs (0 rows)" in shown
    assert "column parcels.history" in shown and "index messages_unread" in shown
    assert "table alert_outbox (0 rows)" in shown and "table memory (0 rows)" in shown
    assert f"schema version {migrations.LATEST} -> {migrations.LATEST - 4}" in shown
    out = ok(cli("migrate", "--rollback", "4", "--force", "--yes"))
    assert "table compaction_runs (0 rows)" in out
    assert f"schema version now {migrations.LATEST - 4}" in out


@pytest.mark.queue_facing
def test_rollback_refuses_while_a_consumer_runs_outside_supervisord(runtime, cli, consumers):
    from tests.helpers import wait_for

    consumer = consumers("scheduler")
    wait_for(lambda: cli("status", "--json").json()["consumers"][1]["alive"], 30, "the consumer")
    line = one_line_failure(cli("migrate", "--rollback", "1", "--force", "--yes"), 1)
    assert "seer-scheduler" in line and "stop the workers" in line
    assert migrations.current_version(runtime.ledger) == migrations.LATEST
    consumer.stop()
    assert "rolled back" in ok(cli("migrate", "--rollback", "1", "--force", "--yes"))


def test_supervisor_commands_work_with_the_schema_behind(runtime, cli):
    # Issue 9, item 5: after a rollback `seer down` and `seer supervisor …` refused with the
    # schema error, locking the operator out of stopping the workers.
    ok(cli("migrate", "--rollback", "1", "--force", "--yes"))
    status = cli("supervisor", "status")
    assert status.code == 4 and "cannot reach supervisord" in status.err  # not the schema
    assert cli("supervisor", "stop").code == 4
    assert cli("supervisor", "remove").code == 4
    down = cli("down")
    assert down.code == 0 and "not running" in down.out


@pytest.mark.queue_facing
def test_queue_commands_accept_the_queue_name(runtime, cli):
    # Issue 9, item 7: the card's `queue:pause postmaster` names the queue; it was refused.
    assert "postmaster queue paused" in ok(cli("queue", "pause", "postmaster"))
    assert control.is_paused(runtime.ledger)
    assert "PAUSED" in ok(cli("queue", "status", "postmaster"))
    line = one_line_failure(cli("queue", "pause", "scheduler"), 2)
    assert "scheduler queue is never paused" in line
    line = one_line_failure(cli("queue", "resume", "nope"), 2)
    assert "no queue 'nope'" in line
    assert "resumed" in ok(cli("queue", "resume", "postmaster"))


def test_ledger_ahead_of_the_code_is_refused(runtime, cli):
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)"
        )
    line = one_line_failure(cli("queue", "status"), 2)
    assert "99" in line and "ahead" in line
    line = one_line_failure(cli("status"), 3)
    assert "99" in line
    line = one_line_failure(cli("migrate", "--rollback", "1"), 2)
    assert "99" in line


def test_migrate_on_a_ledger_ahead_of_the_code_does_not_claim_success(runtime, cli):
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)"
        )
    result = cli("migrate")
    # The ledger is at 99; `seer migrate` must refuse it, not say "schema is at version 2".
    line = one_line_failure(result, 2)
    assert "99" in line


# -- parcel send ----------------------------------------------------------------------------------


@pytest.mark.queue_facing
def test_send_one_parcel_from_file(runtime, cli, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(parcel("agent-1", 1), indent=2))  # pretty-printed: one parcel
    out = ok(cli("parcel", "send", str(path)))
    (pid,) = out.split()
    assert uuid.UUID(pid)
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "queued" and row.to_agent_id == "agent-1"
    assert row.payload["envelope"]["body"] == "parcel 1"
    assert pending(runtime) == 1


@pytest.mark.queue_facing
def test_send_json_lines_prints_ids_in_order(runtime, cli):
    items = [parcel(f"agent-{n}", n) for n in range(3)]
    out = ok(cli("parcel", "send", "-", stdin="\n" + jsonl(*items) + "\n\n"))
    ids = out.splitlines()
    assert len(ids) == 3
    agents = [failures.parcel(runtime.ledger, i).to_agent_id for i in ids]
    assert agents == ["agent-0", "agent-1", "agent-2"]
    # One delivery task per batch of POSTMASTER_BATCH_SIZE (100): it delivers all three.
    assert parcel_count(runtime) == 3 and pending(runtime) == 1


def test_send_json_flag_gives_a_list(runtime, cli):
    result = cli("parcel", "send", "-", "--json", stdin=jsonl(parcel("a", 1), parcel("b", 2)))
    ids = result.json()
    assert isinstance(ids, list) and len(ids) == 2
    assert {failures.parcel(runtime.ledger, i).to_agent_id for i in ids} == {"a", "b"}


@pytest.mark.queue_facing
def test_one_bad_line_rejects_the_whole_batch(runtime, cli):
    good = json.dumps(parcel("a", 1))
    bad = json.dumps({"task_id": "t"})  # no to_agent_id
    line = one_line_failure(cli("parcel", "send", "-", stdin=f"{good}\n{good}\n{bad}\n{good}\n"), 2)
    assert "line 3" in line and "to_agent_id" in line
    line = one_line_failure(cli("parcel", "send", "-", stdin=f"{good}\n{{not json\n"), 2)
    assert "line 2" in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0


def _attachment(**spec) -> dict:
    item = parcel("a", 1)
    item["attachments"] = {"f.txt": spec}
    return item


BAD_INPUTS = {
    "a list": json.dumps([parcel("a", 1)]),
    "a string": json.dumps("hello"),
    "a number": "42",
    "missing to_agent_id": json.dumps({"task_id": "t"}),
    "empty to_agent_id": json.dumps({"to_agent_id": ""}),
    "blank to_agent_id": json.dumps({"to_agent_id": "   "}),
    "numeric to_agent_id": json.dumps({"to_agent_id": 5}),
    "attachment without content": json.dumps(_attachment(filename="f.txt")),
    "attachment with non-string content": json.dumps(_attachment(content=5)),
    "invalid base64": json.dumps(_attachment(content="not base64!!", encoding="base64")),
    "unknown encoding": json.dumps(_attachment(content="x", encoding="gzip")),
    "unknown top-level field": json.dumps({**parcel("a", 1), "priority": 1}),
    "envelope not an object": json.dumps({"to_agent_id": "a", "envelope": "x"}),
    "NaN": '{"to_agent_id": "a", "envelope": {"body": NaN}}',
    "Infinity": '{"to_agent_id": "a", "envelope": {"body": Infinity}}',
    "empty input": "",
    "blank input": "  \n\n ",
    "not JSON": "hello there",
}


@pytest.mark.parametrize("text", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_refused_in_one_line_and_nothing_queued(runtime, cli, text):
    line = one_line_failure(cli("parcel", "send", "-", stdin=text), 2)
    assert "nothing queued" in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0


def test_bad_input_messages_say_what_is_wrong(runtime, cli):
    def refuse(text: str) -> str:
        return one_line_failure(cli("parcel", "send", "-", stdin=text), 2)

    assert "JSON object" in refuse(BAD_INPUTS["a list"])
    assert "to_agent_id" in refuse(BAD_INPUTS["empty to_agent_id"])
    assert "content" in refuse(BAD_INPUTS["attachment without content"])
    assert "base64" in refuse(BAD_INPUTS["invalid base64"])
    assert "encoding" in refuse(BAD_INPUTS["unknown encoding"])
    assert "priority" in refuse(BAD_INPUTS["unknown top-level field"])
    assert "NaN" in refuse(BAD_INPUTS["NaN"])
    assert "empty" in refuse(BAD_INPUTS["empty input"])


def test_valid_base64_attachment_is_accepted(runtime, cli):
    content = base64.b64encode(b"\x00\x01binary").decode()
    (pid,) = send(cli, _attachment(content=content, encoding="base64"))
    assert failures.parcel(runtime.ledger, pid).state == "queued"


def test_over_max_parcel_size_is_refused(runtime, cli, monkeypatch):
    monkeypatch.setenv("POSTMASTER_MAX_PARCEL_SIZE", "300")
    small = parcel("a", 1, attachment="x")
    big = parcel("a", 2, attachment="y" * 400)
    line = one_line_failure(cli("parcel", "send", "-", stdin=jsonl(big)), 2)
    assert "POSTMASTER_MAX_PARCEL_SIZE" in line
    line = one_line_failure(cli("parcel", "send", "-", stdin=jsonl(small, big)), 2)
    assert "line 2" in line and "POSTMASTER_MAX_PARCEL_SIZE" in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0
    assert len(send(cli, small)) == 1


def test_invalid_utf8_is_refused(runtime, cli):
    line = one_line_failure(cli("parcel", "send", "-", stdin=b"\xff\xfe{}"), 2)
    assert "UTF-8" in line and "line 1" in line
    good = json.dumps(parcel("a", 1)).encode()
    line = one_line_failure(cli("parcel", "send", "-", stdin=good + b"\n" + b'{"x": "\xc3"}\n'), 2)
    assert "UTF-8" in line and "line 2" in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0


def test_lone_surrogate_escape_is_refused_in_one_line(runtime, cli):
    # Valid JSON text, but "\ud800" decodes to a string that cannot be stored as UTF-8.
    text = '{"to_agent_id": "a", "envelope": {"body": "\\ud800"}}'
    line = one_line_failure(cli("parcel", "send", "-", stdin=text), 2)
    assert "nothing queued" in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0


def test_unreadable_file_is_refused(runtime, cli, tmp_path):
    missing = tmp_path / "missing.json"
    line = one_line_failure(cli("parcel", "send", str(missing)), 2)
    assert str(missing) in line
    line = one_line_failure(cli("parcel", "send", str(tmp_path)), 2)
    assert str(tmp_path) in line
    assert parcel_count(runtime) == 0 and pending(runtime) == 0


# -- send-test-parcel -----------------------------------------------------------------------------


@pytest.mark.queue_facing
def test_send_test_parcel_goes_to_the_test_agent(runtime, cli):
    out = ok(cli("send-test-parcel"))
    (pid,) = out.split()
    assert uuid.UUID(pid)
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "queued" and row.to_agent_id == "seer-test"
    assert row.payload["envelope"]["body"] == {"test": True}
    assert pending(runtime) == 1
    runtime.postmaster().deliver_waiting()
    (msg,) = cli("inbox", "seer-test", "--json").json()
    assert msg["parcel_id"] == pid


@pytest.mark.queue_facing
def test_send_test_parcel_agent_override(runtime, cli, monkeypatch):
    monkeypatch.setenv("POSTMASTER_TEST_AGENT", "ops-probe")
    (pid,) = ok(cli("send-test-parcel")).split()
    row = failures.parcel(runtime.ledger, pid)
    assert row.to_agent_id == "ops-probe"
    assert row.payload["envelope"]["body"] == {"test": True}


@pytest.mark.queue_facing
def test_send_test_parcel_while_paused_notes_it(runtime, cli):
    ok(cli("queue", "pause"))
    result = cli("send-test-parcel")
    assert result.code == 0 and "paused" in result.err
    assert pending(runtime) == 1


# -- parcel show ----------------------------------------------------------------------------------


def test_parcel_show_queued_and_delivered(runtime, cli):
    (pid,) = send(cli, parcel("agent-1", 1, attachment="hello"))
    out = ok(cli("parcel", "show", pid))
    assert pid in out and "queued" in out and "agent-1" in out
    shown = cli("parcel", "show", pid, "--json").json()
    assert shown["id"] == pid and shown["state"] == "queued"
    assert shown["message_id"] is None and shown["artifacts"] == []
    assert shown["payload"]["to_agent_id"] == "agent-1"

    assert runtime.postmaster().deliver_waiting().delivered == 1
    shown = cli("parcel", "show", pid, "--json").json()
    assert shown["state"] == "delivered" and isinstance(shown["message_id"], int)
    assert sorted(a["kind"] for a in shown["artifacts"]) == ["attachment", "manifest"]
    digest = hashlib.sha256(b"hello").hexdigest()
    assert any(a["hash"] == digest for a in shown["artifacts"])
    out = ok(cli("parcel", "show", pid))
    assert "delivered" in out and f"message  {shown['message_id']}" in out
    assert "fe://artifacts/by-task/" in out


def test_parcel_show_unknown(runtime, cli):
    line = one_line_failure(cli("parcel", "show", "no-such-parcel"), 1)
    assert "no-such-parcel" in line
    one_line_failure(cli("parcel", "show", "no-such-parcel", "--json"), 1)


# -- inbox ----------------------------------------------------------------------------------------


def test_inbox_list_unread_limit_json_and_ack(runtime, cli):
    ids = send(cli, *(parcel("agent-1", n) for n in range(3)), parcel("agent-2", 9))
    assert runtime.postmaster().deliver_waiting().delivered == 4

    messages = cli("inbox", "agent-1", "--json").json()
    assert [m["parcel_id"] for m in messages] == list(reversed(ids[:3]))  # newest first
    assert all(m["read_at"] is None for m in messages)
    assert len(cli("inbox", "agent-1", "--limit", "1", "--json").json()) == 1

    out = ok(cli("inbox", "agent-1"))
    assert all(i in out for i in ids[:3]) and ids[3] not in out and "unread" in out

    first = messages[-1]["id"]
    assert "acknowledged" in ok(cli("inbox", "ack", str(first)))
    assert "already read" in ok(cli("inbox", "ack", str(first)))
    unread = cli("inbox", "agent-1", "--unread", "--json").json()
    assert first not in [m["id"] for m in unread] and len(unread) == 2
    assert len(cli("inbox", "agent-1", "--json").json()) == 3


def test_inbox_empty_and_errors(runtime, cli):
    out = ok(cli("inbox", "nobody"))
    assert "no messages for nobody" in out
    assert cli("inbox", "nobody", "--json").json() == []
    line = one_line_failure(cli("inbox", "ack", "12345"), 1)
    assert "12345" in line
    line = one_line_failure(cli("inbox", "ack", "abc"), 2)
    assert "abc" in line
    one_line_failure(cli("inbox", "ack"), 2)
    one_line_failure(cli("inbox", "agent-1", "--limit", "0"), 2)
    one_line_failure(cli("inbox", "agent-1", "extra"), 2)


# -- artifacts pull -------------------------------------------------------------------------------


@pytest.fixture
def artifact(runtime, cli):
    """A delivered parcel's attachment: (uri, hash)."""
    send(cli, parcel("agent-1", 1, attachment="hello artifact\n"))
    runtime.postmaster().deliver_waiting()
    (msg,) = cli("inbox", "agent-1", "--json").json()
    entry = msg["envelope"]["attachments"]["notes.txt"]
    return entry["uri"], entry["hash"]


def test_pull_by_uri_and_hash_to_stdout(cli, artifact):
    uri, digest = artifact
    assert digest == hashlib.sha256(b"hello artifact\n").hexdigest()
    assert ok(cli("artifacts", "pull", uri)) == "hello artifact\n"
    assert ok(cli("artifacts", "pull", digest)) == "hello artifact\n"


def test_pull_to_file_and_force(cli, artifact, tmp_path):
    uri, digest = artifact
    dest = tmp_path / "out.txt"
    out = ok(cli("artifacts", "pull", uri, "-o", str(dest)))
    assert dest.read_bytes() == b"hello artifact\n" and digest in out
    dest.write_text("mine")
    line = one_line_failure(cli("artifacts", "pull", digest, "-o", str(dest)), 2)
    assert "--force" in line
    assert dest.read_text() == "mine"
    ok(cli("artifacts", "pull", digest, "-o", str(dest), "--force"))
    assert dest.read_bytes() == b"hello artifact\n"


@pytest.mark.parametrize(
    "ref",
    [
        "../etc/passwd",
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "a" * 65,
        "",
        "fe://artifacts/by-task/t/../etc",
        "fe://elsewhere/x",
    ],
)
def test_pull_invalid_reference(runtime, cli, tmp_path, ref):
    dest = tmp_path / "out.bin"
    one_line_failure(cli("artifacts", "pull", ref), 2)
    one_line_failure(cli("artifacts", "pull", ref, "-o", str(dest)), 2)
    assert not dest.exists()


def test_pull_unknown_hash(runtime, cli, tmp_path):
    dest = tmp_path / "out.bin"
    one_line_failure(cli("artifacts", "pull", "0" * 64), 1)
    one_line_failure(cli("artifacts", "pull", "0" * 64, "-o", str(dest)), 1)
    assert not dest.exists()


@pytest.mark.usefixtures("blob_kind")
def test_pull_corrupted_blob(runtime, cli, artifact, tmp_path):
    _, digest = artifact
    blobs.damage(runtime.store, digest)
    result = cli("artifacts", "pull", digest)
    line = one_line_failure(result, 1)
    assert "corrupt" in line and result.out == ""
    out_dir = tmp_path / "pulled"
    out_dir.mkdir()
    line = one_line_failure(cli("artifacts", "pull", digest, "-o", str(out_dir / "x.txt")), 1)
    assert "corrupt" in line
    assert list(out_dir.iterdir()) == []


# -- failed ---------------------------------------------------------------------------------------


def test_failed_list_and_show(runtime, cli):
    ids = make_failed(runtime, 2)
    out = ok(cli("failed", "list"))
    assert all(i in out for i in ids) and "(2 failed)" in out
    listed = cli("failed", "list", "--json").json()
    assert sorted(f["id"] for f in listed) == sorted(ids)
    assert all(f["attempts"] == 3 and f["error"].startswith("boom") for f in listed)
    assert len(cli("failed", "list", "--limit", "1", "--json").json()) == 1

    shown = cli("failed", "show", ids[0], "--json").json()
    assert shown["id"] == ids[0] and shown["state"] == "failed"
    assert shown["error"] == f"boom {ids[0]}"
    out = ok(cli("failed", "show", ids[0]))
    assert ids[0] in out and f"boom {ids[0]}" in out
    one_line_failure(cli("failed", "show", "nope"), 1)


def test_failed_show_refuses_a_parcel_that_is_not_failed(runtime, cli):
    (pid,) = send(cli, parcel("a", 1))
    line = one_line_failure(cli("failed", "show", pid), 1)
    assert pid in line


@pytest.mark.queue_facing
def test_failed_retry_one(runtime, cli):
    ids = make_failed(runtime, 2)
    assert pending(runtime) == 0
    out = ok(cli("failed", "retry", ids[0]))
    assert ids[0] in out
    row = failures.parcel(runtime.ledger, ids[0])
    assert row.state == "queued" and row.attempts == 0
    assert pending(runtime) == 1
    assert failures.parcel(runtime.ledger, ids[1]).state == "failed"
    # Not failed any more: a second retry finds nothing.
    one_line_failure(cli("failed", "retry", ids[0]), 1)
    one_line_failure(cli("failed", "retry", "nope"), 1)
    one_line_failure(cli("failed", "retry"), 2)
    assert pending(runtime) == 1


@pytest.mark.queue_facing
def test_failed_retry_all(runtime, cli):
    ids = make_failed(runtime, 3)
    out = ok(cli("failed", "retry", "--all"))
    assert "3" in out
    assert all(failures.parcel(runtime.ledger, i).state == "queued" for i in ids)
    assert all(failures.parcel(runtime.ledger, i).attempts == 0 for i in ids)
    assert pending(runtime) == 1
    assert "0" in ok(cli("failed", "retry", "--all"))
    assert pending(runtime) == 1
    # Retried parcels deliver.
    assert runtime.postmaster().deliver_waiting().delivered == 3


def test_failed_purge(runtime, cli):
    old = make_failed(runtime, 2, failed_at=time.time() - 7200)
    new = make_failed(runtime, 1)
    # No --yes and no terminal: refused, nothing deleted.
    line = one_line_failure(cli("failed", "purge", stdin=""), 2)
    assert "--yes" in line
    assert failures.count_failed(runtime.ledger) == 3
    line = one_line_failure(cli("failed", "purge", "--older-than", "soon", "--yes"), 2)
    assert "soon" in line
    assert failures.count_failed(runtime.ledger) == 3

    out = ok(cli("failed", "purge", "--older-than", "1h", "--yes"))
    assert "purged 2" in out
    assert [r.id for r in failures.list_failed(runtime.ledger)] == new
    assert all(failures.parcel(runtime.ledger, i) is None for i in old)
    assert "purged 1" in ok(cli("failed", "purge", "--yes"))
    assert failures.count_failed(runtime.ledger) == 0
    assert "no failed parcels" in ok(cli("failed", "purge", "--yes"))
    status = cli("status", "--json").json()
    assert status["parcels"]["failed"] == 0


# -- queue ----------------------------------------------------------------------------------------


@pytest.mark.queue_facing
def test_queue_pause_resume_status(runtime, cli):
    assert "paused" in ok(cli("queue", "pause"))
    assert "already paused" in ok(cli("queue", "pause"))
    fresh = Runtime.open()
    try:
        assert control.is_paused(fresh.ledger)
    finally:
        fresh.close()
    assert "PAUSED" in ok(cli("queue", "status"))
    q = cli("queue", "status", "--json").json()
    assert q["paused"] is True and q["name"] == "postmaster"
    assert "PAUSED" in cli("status").out

    send(cli, parcel("a", 1))
    assert cli("queue", "status", "--json").json()["depth"] == 1

    out = ok(cli("queue", "resume"))
    assert "resumed" in out
    assert "not paused" in ok(cli("queue", "resume"))
    fresh = Runtime.open()
    try:
        assert not control.is_paused(fresh.ledger)
    finally:
        fresh.close()
    q = cli("queue", "status", "--json").json()
    assert q["paused"] is False and "PAUSED" not in ok(cli("queue", "status"))


# -- status ---------------------------------------------------------------------------------------


@pytest.mark.queue_facing
def test_status_text_and_json(runtime, cli, tmp_path):
    root = str(tmp_path / "storage")
    result = cli("status")
    assert "Traceback" not in result.err
    assert root in result.out and "NOT RUNNING" in result.out
    # No scheduler consumer means no monitoring and no alerts: critical, even with nothing
    # queued.
    assert result.code == 2 and "scheduler consumer not running" in result.out

    send(cli, parcel("a", 1), parcel("a", 2))
    make_failed(runtime, 1)
    result = cli("status", "--json")
    snap = result.json()
    assert snap["storage_root"] == root
    assert snap["queue"]["depth"] == 2 and snap["queue"]["paused"] is False
    assert snap["parcels"] == {"queued": 2, "in_flight": 0, "delivered": 0, "failed": 1}
    assert snap["failed_last_hour"] == 1
    assert [c["queue"] for c in snap["consumers"]] == ["postmaster", "scheduler"]
    assert all(c["alive"] is False for c in snap["consumers"])
    # Parcels waiting and no consumer for them: critical.
    assert snap["level"] == "critical" and result.code == 2
    out = cli("status").out
    assert "2 queued" in out and "1 failed" in out and root in out


# -- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("status", "--bogus"),
        ("parcel",),
        ("parcel", "send"),
        ("parcel", "nope"),
        ("parcel", "show"),
        ("inbox",),
        ("artifacts",),
        ("artifacts", "pull"),
        ("failed",),
        ("failed", "show"),
        ("queue",),
        ("queue", "bogus"),
        ("worker", "bogus"),
        ("failed", "list", "--limit", "x"),
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_usage_errors_are_one_line_exit_2(env, cli, tmp_path, args):
    result = cli(*args)
    line = one_line_failure(result, 2)
    assert line.startswith("seer")
    assert "error" in line
    if args[:1] in ((), ("frobnicate",), ("status",)):
        assert line.startswith("seer: error:")
    assert not (tmp_path / "storage").exists()


def set_cas_bytes(runtime, value: int) -> None:
    with runtime.ledger.write():
        runtime.ledger.set_counter("cas_bytes", value)


@pytest.mark.parametrize(
    ("used", "level", "code"), [(0, "OK", 0), (85, "WARNING", 1), (95, "CRITICAL", 2)]
)
def test_monitor_storage_exits_with_the_codes_of_status(
    runtime, cli, monkeypatch, used, level, code
):
    """0 ok, 1 warning, 2 critical, as `seer status`, by default: cron and monitoring see a
    full CAS without --exit-code (still accepted)."""
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "1000")
    set_cas_bytes(runtime, used * 10)
    for flags in (
        (),
        ("--dry-run",),
        ("--json",),
        ("--exit-code",),
        ("--dry-run", "--simulate-high-usage"),
    ):
        result = cli("monitor-storage", *flags)
        assert result.code == code, (flags, result)
        if "--json" not in flags:
            assert f"level      {level}" in result.out
    help_text = cli("monitor-storage", "--help").out
    assert "exits 0 ok, 1 warning, 2 critical" in " ".join(help_text.split())


def test_every_manual_monitor_storage_run_but_a_dry_run_logs_its_report(runtime, cli):
    log_path = runtime.layout.logs / "orchestration.log"

    def reports() -> list[dict]:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        return [e for e in map(json.loads, lines) if e.get("event") == "storage.report"]

    for flags, logged in (
        (("--dry-run",), 0),
        (("--dry-run", "--simulate-high-usage"), 0),
        ((), 1),
        (("--json",), 2),
        (("--simulate-high-usage",), 3),
    ):
        assert cli("monitor-storage", *flags).code == 0
        assert len(reports()) == logged, flags
    # The drill logs the real report, not the pretended usage.
    assert reports()[-1]["level"] == "ok" and reports()[-1]["cas_bytes"] == 0


# -- layers and exit codes ----------------------------------------------------------------------

PROJECT = Path(__file__).resolve().parents[1]


def _trees(folder: str):
    for path in sorted((PROJECT / folder).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_cli_modules_import_no_private_name_of_another():
    for path, tree in _trees("seer_console/cli"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seer_console"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_the_domain_neither_prints_nor_imports_the_console():
    for path, tree in _trees("worker"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path}:{node.lineno} prints"
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "seer_console"], path


def test_exit_codes_are_named_and_keep_their_values():
    from seer_console.cli import ExitCode
    from worker.monitoring.status import Health

    assert [(h.name, int(h)) for h in Health] == [
        ("OK", 0),
        ("WARNING", 1),
        ("CRITICAL", 2),
        ("UNKNOWN", 3),
    ]
    assert Health.of("warning") is Health.WARNING and Health.of("no such level") is Health.UNKNOWN
    assert (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE) == (0, 1, 2)
    # supervisorctl's own, for `seer supervisor`.
    assert (ExitCode.NOT_RUNNING, ExitCode.UNREACHABLE) == (3, 4)
