"""Hostile input to every command: one line and exit 2 for a user's mistake, never a traceback,
nothing half-written (issue 10, item 10)."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import jsonl, ok, one_line_failure


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def parcel_with(envelope_json: str) -> str:
    return '{"to_agent_id": "a", "envelope": {"body": ' + envelope_json + "}}"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (parcel_with(nested(1000)), "nested more than 64"),
        (parcel_with(nested(900)), "nested more than 64"),
        (parcel_with(nested(70)), "nested more than 64"),
        (parcel_with("1" * 4400), "digits"),
        (parcel_with("1" * 200), "digits"),
        (parcel_with("1e999"), "out of range"),
        (parcel_with("-1e999"), "out of range"),
        (parcel_with("NaN"), "not valid JSON"),
        (parcel_with("Infinity"), "not valid JSON"),
    ],
)
def test_parcel_send_refuses_what_could_not_be_stored_and_read_back(runtime, cli, text, said):
    line = one_line_failure(cli("parcel", "send", "-", stdin=text), 2)
    assert said in line
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels") == 0


def test_deep_but_allowed_nesting_is_delivered(runtime, cli):
    (pid,) = ok(cli("parcel", "send", "-", stdin=parcel_with(nested(60)))).split()
    assert runtime.postmaster().deliver_waiting().delivered == 1
    assert cli("parcel", "show", pid, "--json").json()["state"] == "delivered"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\x0b", "\x0c"])
def test_json_lines_split_on_newline_only(runtime, cli, separator):
    lines = jsonl(
        {"to_agent_id": "a", "envelope": {"body": f"one{separator}line"}},
        {"to_agent_id": "b"},
    )
    ids = ok(cli("parcel", "send", "-", stdin=lines)).split()
    assert len(ids) == 2
    shown = cli("parcel", "show", ids[0], "--json").json()
    assert shown["payload"]["envelope"]["body"] == f"one{separator}line"


def test_inbox_json_is_standard_json(runtime, cli):
    ok(cli("parcel", "send", "-", stdin=parcel_with("1e300")))
    runtime.postmaster().deliver_waiting()
    text = cli("inbox", "a", "--json").out
    assert "Infinity" not in text and json.loads(text)[0]["envelope"]["body"] == 1e300


@pytest.mark.parametrize(
    "args",
    [
        ("failed", "show", "\udcff"),
        ("parcel", "show", "\udcff\udcfe"),
        ("inbox", "\udcff"),
        ("memory", "set", "a", "k", "x", "--string"),
        ("memory", "set", "a", "\udcff", "1"),
    ],
)
def test_an_argument_that_is_not_utf8_is_one_line(runtime, cli, args):
    if args[-1] == "--string":
        args = (*args[:4], "\udcff\udcfe", "--string")
    line = one_line_failure(cli(*args), 2)
    assert "not valid UTF-8" in line


@pytest.mark.parametrize(
    "args",
    [
        ("inbox", "a", "--limit", "99999999999999999999"),
        ("failed", "list", "--limit", "99999999999999999999"),
        ("compactions", "--limit", "99999999999999999999"),
        ("alerts", "list", "--limit", "99999999999999999999"),
        ("inbox", "ack", "9" * 30),
        ("inbox", "ack", "-3"),
    ],
)
def test_numbers_out_of_range_are_one_line(runtime, cli, args):
    one_line_failure(cli(*args), 2)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('"\\ud800"', "surrogate"),
        ("9" * 5000, "digits"),
        (nested(5000), "nested"),
        (nested(65), "nested"),
        ("1e999", "out of range"),
    ],
)
def test_memory_set_refuses_what_it_could_not_store_and_read_back(runtime, cli, value, said):
    line = one_line_failure(cli("memory", "set", "a", "k", value), 2)
    assert said in line
    assert cli("memory", "keys", "a", "--json").json() == []


def test_memory_set_ephemeral_with_an_absurd_ttl_stores_nothing(runtime, cli):
    line = one_line_failure(cli("memory", "set-ephemeral", "a", "k", "1", "--ttl", "9" * 21), 2)
    assert "--ttl" in line
    assert cli("memory", "keys", "a", "--json").json() == []


def test_artifacts_pull_into_a_missing_or_unwritable_directory(runtime, cli, tmp_path):
    import hashlib
    import os

    digest = runtime.store.put(b"bytes").digest
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, 5, 0)", (digest,)
        )
    assert digest == hashlib.sha256(b"bytes").hexdigest()
    line = one_line_failure(cli("artifacts", "pull", digest, "-o", str(tmp_path / "no" / "x")), 2)
    assert "no directory" in line
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        line = one_line_failure(cli("artifacts", "pull", digest, "-o", str(locked / "x")), 2)
        assert "cannot write" in line
    line = one_line_failure(cli("artifacts", "pull", digest, "-o", str(tmp_path)), 2)
    assert "exists" in line


@pytest.mark.parametrize(
    "manifest",
    [
        '{"blobs": 1e400}',
        '{"size": 1e400}',
        nested(3000),
        '{"created_at": 1, "blobs": ' + "9" * 5000 + "}",
    ],
)
def test_restore_of_a_manifest_with_absurd_numbers_is_one_line(env, cli, tmp_path, manifest):
    src = tmp_path / "backup"
    src.mkdir()
    (src / "manifest.json").write_text(manifest)
    line = one_line_failure(cli("restore", str(src)), 1)
    assert "manifest.json cannot be read" in line


def test_a_test_agent_with_a_newline_is_a_settings_error(runtime, cli, monkeypatch):
    monkeypatch.setenv("POSTMASTER_TEST_AGENT", "a\nb")
    line = one_line_failure(cli("send-test-parcel"), 2)
    assert "POSTMASTER_TEST_AGENT" in line


def test_artifacts_pull_writes_0600_and_never_through_a_link_or_fifo(runtime, cli, tmp_path):
    import os
    import stat

    digest = runtime.store.put(b"pulled bytes").digest
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, 12, 0)", (digest,)
        )
    out = tmp_path / "out.bin"
    ok(cli("artifacts", "pull", digest, "-o", str(out)))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    link = tmp_path / "link"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for dest in (link, fifo):
        one_line_failure(cli("artifacts", "pull", digest, "-o", str(dest)), 2)  # exists
        ok(cli("artifacts", "pull", digest, "-o", str(dest), "--force"))
        assert dest.is_file() and not dest.is_symlink() and dest.read_bytes() == b"pulled bytes"
    assert target.read_text() == "untouched"
