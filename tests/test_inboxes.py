"""Inboxes (worker/parcels/inbox.py and `seer inbox`): agents with their unread counts in one
grouped query, an agent's messages unread first a keyset page at a time, one message opened
with its attachments' URIs, every string redacted; the CLI's words for each."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers import parcel
from worker.parcels import inbox
from worker.parcels import intake as parcels

GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
T0 = 1_795_780_800.0


def deliver(runtime, *items, at: float = T0) -> list[int]:
    """Queues and delivers the parcels; their message ids, in the order given."""
    ids = parcels.queue_parcels(
        runtime.ledger, [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    )
    runtime.postmaster().deliver_waiting(now=at)
    return [inbox.message_for_parcel(runtime.ledger, pid).id for pid in ids]


def one_line_failure(result, code: int) -> str:
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.err
    assert "Traceback" not in result.err + result.out
    return lines[0]


def ok(result) -> str:
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result.out


# -- the service ----------------------------------------------------------------------------------


def test_agents_with_their_total_and_unread_counts_newest_first(runtime):
    ledger = runtime.ledger
    assert inbox.agents(ledger) == []
    a = deliver(runtime, *(parcel("agent-a", n) for n in range(3)), at=T0)
    deliver(runtime, parcel("agent-b", 9), at=T0 + 60)
    c = deliver(runtime, parcel("agent-c", 5), at=T0 + 120)
    assert inbox.ack(ledger, a[0], now=T0 + 200) and inbox.ack(ledger, c[0], now=T0 + 200)

    found = inbox.agents(ledger)
    assert found == [
        inbox.AgentInbox("agent-c", 1, 0, T0 + 120),
        inbox.AgentInbox("agent-b", 1, 1, T0 + 60),
        inbox.AgentInbox("agent-a", 3, 2, T0),
    ]
    assert found[0].as_dict() == {
        "agent": "agent-c",
        "messages": 1,
        "unread": 0,
        "last_at": T0 + 120,
    }
    assert inbox.agents(ledger, limit=2) == found[:2]


def test_the_agents_query_reads_the_unread_partial_index(runtime):
    ledger = runtime.ledger
    deliver(runtime, parcel("agent-a", 1), parcel("agent-b", 2))
    if ledger.dialect == "sqlite":
        plan = " | ".join(
            str(r["detail"]) for r in ledger.rows("EXPLAIN QUERY PLAN " + inbox._AGENTS, (10,))
        )
        assert "messages_unread" in plan and "messages_agent" in plan, plan
    else:
        with ledger.write():
            ledger.execute("SET LOCAL enable_seqscan = off")
            plan = " | ".join(
                r["QUERY PLAN"] for r in ledger.rows("EXPLAIN " + inbox._AGENTS, (10,))
            )
        assert "messages_unread" in plan and "Seq Scan" not in plan, plan


def walk(ledger, agent: str, limit: int, **kw) -> list[list[int]]:
    """Every page's message ids, following the cursors to the end."""
    pages, after = [], None
    while True:
        page = inbox.messages_page(ledger, agent, after=after, limit=limit, **kw)
        pages.append([m.id for m in page.messages])
        if page.next is None:
            return pages
        after = page.next


def flat(pages: list[list[int]]) -> list[int]:
    return [i for page in pages for i in page]


def test_messages_unread_first_newest_first_in_each_part_by_keyset_pages(runtime):
    ledger = runtime.ledger
    ids = deliver(runtime, *(parcel("agent-a", n) for n in range(7)), parcel("agent-b", 1))
    read = {ids[1], ids[4], ids[5]}
    for message_id in read:
        inbox.ack(ledger, message_id, now=T0 + 10)
    unread = [i for i in reversed(ids[:7]) if i not in read]
    done = [i for i in reversed(ids[:7]) if i in read]

    # The old call, unchanged: newest first, unread or not; and --unread.
    assert [m.id for m in inbox.messages(ledger, "agent-a")] == list(reversed(ids[:7]))
    assert [m.id for m in inbox.messages(ledger, "agent-a", unread=True)] == unread
    assert [m.id for m in inbox.messages(ledger, "agent-a", unread_first=True)] == unread + done
    assert [m.id for m in inbox.messages(ledger, "agent-a", limit=2)] == [ids[6], ids[5]]

    for limit in (1, 2, 3, 4, 10):
        pages = walk(ledger, "agent-a", limit, unread_first=True)
        assert flat(pages) == unread + done, limit
        assert all(len(p) == limit for p in pages[:-1]) and 0 < len(pages[-1]) <= limit
        assert flat(walk(ledger, "agent-a", limit)) == list(reversed(ids[:7]))
        assert flat(walk(ledger, "agent-a", limit, unread=True)) == unread
    # A page that ends exactly at the last unread message goes on with the read ones.
    first = inbox.messages_page(ledger, "agent-a", unread_first=True, limit=len(unread))
    assert first.next == inbox.Cursor(unread[-1], True)
    second = inbox.messages_page(ledger, "agent-a", unread_first=True, after=first.next, limit=2)
    assert [m.id for m in second.messages] == done[:2] and second.next == inbox.Cursor(
        done[1], False
    )
    assert inbox.messages_page(ledger, "nobody", unread_first=True) == inbox.MessagePage((), None)


def test_open_message_has_the_redacted_envelope_and_the_attachments_uris(runtime):
    item = parcel("agent-a", 1, attachment="hello artifact\n")
    item["envelope"]["metadata"] = {"api_key": GITHUB, GITHUB: "a secret as a key"}
    (message_id,) = deliver(runtime, item)
    digest = hashlib.sha256(b"hello artifact\n").hexdigest()

    opened = inbox.open_message(runtime.ledger, message_id)
    assert opened is not None and opened.message == inbox.message(runtime.ledger, message_id)
    (attachment,) = opened.attachments
    assert (attachment.name, attachment.size, attachment.hash) == ("notes.txt", 15, digest)
    assert attachment.uri == f"fe://artifacts/by-task/task-1/{digest}/notes.txt"
    assert opened.manifest is not None and opened.manifest.uri.endswith("/manifest.json")
    assert opened.manifest.uri == opened.message.headers["manifest_uri"]
    shown = opened.as_dict()
    assert list(shown)[:9] == [f for f in opened.message.as_dict()]
    assert shown["attachments"][0]["uri"] == attachment.uri
    assert GITHUB not in json.dumps(shown)
    assert inbox.message(runtime.ledger, message_id + 1000) is None
    assert inbox.open_message(runtime.ledger, message_id + 1000) is None


def test_messages_stored_unredacted_are_shown_redacted_keys_too(runtime):
    (message_id,) = deliver(runtime, parcel("agent-a", 1))
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE messages SET envelope = ?, headers = ? WHERE id = ?",
            (
                json.dumps({"body": f"token {GITHUB}", GITHUB: 1}),
                json.dumps({GITHUB: 2}),
                message_id,
            ),
        )
    for found in (
        inbox.message(runtime.ledger, message_id),
        inbox.open_message(runtime.ledger, message_id).message,
        inbox.messages(runtime.ledger, "agent-a", unread_first=True)[0],
    ):
        assert GITHUB not in json.dumps(found.as_dict())
        assert "[REDACTED:" in found.envelope["body"]


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_agents_table_and_json(runtime, cli):
    assert "(no messages delivered yet)" in ok(cli("inbox", "--agents"))
    a = deliver(runtime, parcel("agent-a", 1), parcel("agent-a", 2), at=T0)
    deliver(runtime, parcel("agent-b", 3), at=T0 + 60)
    inbox.ack(runtime.ledger, a[0])
    out = ok(cli("inbox", "--agents")).splitlines()
    assert out[0].split() == ["AGENT", "MESSAGES", "UNREAD", "LAST"]
    assert out[1].split()[:3] == ["agent-b", "1", "1"] and out[2].split()[:3] == [
        "agent-a",
        "2",
        "1",
    ]
    assert cli("inbox", "--agents", "--json").json() == [
        {"agent": "agent-b", "messages": 1, "unread": 1, "last_at": T0 + 60},
        {"agent": "agent-a", "messages": 2, "unread": 1, "last_at": T0},
    ]
    assert len(cli("inbox", "--agents", "--limit", "1", "--json").json()) == 1


def test_cli_show_envelope_and_attachments(runtime, cli):
    item = parcel("agent-a", 1, attachment="hello artifact\n")
    item["envelope"]["metadata"] = {"api_key": GITHUB}
    (message_id,) = deliver(runtime, item)
    digest = hashlib.sha256(b"hello artifact\n").hexdigest()
    uri = f"fe://artifacts/by-task/task-1/{digest}/notes.txt"
    out = ok(cli("inbox", "show", str(message_id)))
    assert f"message   {message_id}" in out and "agent     agent-a" in out and "unread" in out
    assert '"body": "parcel 1"' in out and GITHUB not in out and "[REDACTED:" in out
    assert "NAME" in out and "URI" in out and uri in out and digest in out
    shown = cli("inbox", "show", str(message_id), "--json").json()
    assert shown["id"] == message_id and shown["attachments"][0]["uri"] == uri
    assert shown["manifest"]["kind"] == "manifest" and GITHUB not in json.dumps(shown)
    assert "acknowledged" in ok(cli("inbox", "ack", str(message_id)))
    assert "unread" not in ok(cli("inbox", "show", str(message_id))).split("headers")[0]


def test_cli_agents_named_ack_or_show_are_reachable_with_agent(runtime, cli):
    ack_id, show_id = deliver(runtime, parcel("ack", 1), parcel("show", 2))
    (msg,) = cli("inbox", "--agent", "ack", "--json").json()
    assert msg["id"] == ack_id and msg["to_agent_id"] == "ack"
    (msg,) = cli("inbox", "--agent", "show", "--unread", "--json").json()
    assert msg["id"] == show_id
    assert "(no messages for nobody)" in ok(cli("inbox", "--agent", "nobody"))
    # The words alone still mean the actions, and say how to reach such an agent.
    line = one_line_failure(cli("inbox", "show"), 2)
    assert "seer inbox --agent show" in line


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("inbox",), "give an AGENT"),
        (("inbox", "--agents", "agent-a"), "--agents"),
        (("inbox", "--agent", "a", "b"), "give the agent once"),
        (("inbox", "--agents", "--unread"), "--unread"),
        (("inbox", "show"), "usage: seer inbox show MESSAGE_ID"),
        (("inbox", "show", "1", "2"), "usage: seer inbox show MESSAGE_ID"),
        (("inbox", "show", "abc"), "'abc'"),
        (("inbox", "show", "0"), "'0'"),
        (("inbox", "show", "9" * 30), "must be a whole number"),
        (("inbox", "ack", "-5"), "must be a whole number"),
        (("inbox", "--agents", "--limit", "0"), "--limit"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else None,
)
def test_cli_mistakes_are_one_line_exit_2_before_the_root_is_opened(env, cli, tmp_path, args, said):
    line = one_line_failure(cli(*args), 2)
    assert said in line and line.startswith("seer")
    assert not (tmp_path / "storage").exists()


def test_cli_show_of_an_unknown_message_fails_in_one_line(runtime, cli):
    assert "no message 12345" in one_line_failure(cli("inbox", "show", "12345"), 1)
    assert "no message 12345" in one_line_failure(cli("inbox", "show", "12345", "--json"), 1)
