"""A parcel full of secrets fails; no command, view, log or metric that shows it shows a secret;
nor any that shows the queue's storage, REDIS_URL's password.

Only a retry uses the raw copy: the parcel delivered after the retry carries its content.
"""

from __future__ import annotations

import json
import logging

import pytest

from seer_console import output
from seer_console.app import SeerConsole
from seer_console.screens import FailureScreen
from seer_console.source import SnapshotSource
from tests.helpers import ledger_tables
from worker.parcels import intake as parcels
from worker.runtime import Runtime

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "Ab1" * 12
PASSWORD = "hunter2-correct-horse"
SLACK = "xoxb-" + "1234567890-0987654321-" + "a1B2c3D4e5F6g7H8i9J0k1L2"
SECRETS = (AWS, GITHUB, PASSWORD, SLACK)


def secret_parcel() -> dict:
    return {
        "to_agent_id": "agent-s",
        "task_id": f"task-{GITHUB}",
        "stream": "command.delegation",
        "type": "pm.task.created",
        "headers": {"authorization": f"Bearer {GITHUB}", SLACK: "a key that is a token"},
        "envelope": {
            "body": f"deploy with {AWS} and password={PASSWORD}, then ping {GITHUB}",
            "metadata": {"note": f"slack {SLACK}"},
        },
        # Bigger than the quota below: the parcel fails on it.
        "attachments": {"big.txt": {"content": "x" * 4096, "mime_type": "text/plain"}},
    }


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def open_failure(app, pilot) -> str:
    """Opens the failure view of the first failed parcel; returns its text once loaded."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press("3", "enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(app.screen, FailureScreen)
    return str(app.screen.query_one("#failure-text").render())


async def closes(app, pilot) -> bool:
    """Escape leaves the failure view."""
    await pilot.press("escape")
    await pilot.pause()
    return not isinstance(app.screen, FailureScreen)


@pytest.fixture
def failed_secret(env, cli, monkeypatch, caplog):
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "1024")
    assert cli("init").code == 0
    runtime = Runtime.open()
    (pid,) = parcels.queue_parcels(
        runtime.ledger, [parcels.validate(secret_parcel(), runtime.settings.max_parcel_size)]
    )
    caplog.set_level(logging.DEBUG)
    result = runtime.postmaster().deliver_waiting()
    assert result.failed == 1
    yield runtime, pid
    runtime.close()


def test_no_command_that_shows_a_failed_parcel_shows_its_secrets(failed_secret, cli, caplog):
    _, pid = failed_secret
    outputs = {}
    for args in (
        ("failed", "list"),
        ("failed", "list", "--json"),
        ("failed", "show", pid),
        ("failed", "show", pid, "--json"),
        ("parcel", "show", pid),
        ("parcel", "show", pid, "--json"),
        ("parcel", "show", pid, "--traceback"),
        ("parcel", "show", pid, "--json", "--traceback"),
        ("inbox", "agent-s"),
        ("inbox", "agent-s", "--json"),
        ("status",),
        ("status", "--json"),
        ("metrics",),
        ("alerts", "list", "--json"),
    ):
        result = cli(*args)
        assert "Traceback" not in result.err, (args, result.err)
        outputs[" ".join(args)] = result.out + result.err
    found = {cmd: leaks(text) for cmd, text in outputs.items() if leaks(text)}
    assert found == {}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert leaks(logged) == []

    # Shown, not hidden: the text commands print the redacted parcel, the JSON carries it.
    shown = cli("failed", "show", pid, "--json").json()
    assert shown["state"] == "failed" and "CAS quota exceeded" in shown["error"]
    assert "[REDACTED:aws-access-key]" in shown["payload"]["envelope"]["body"]
    assert "[REDACTED:" in shown["task_id"]
    assert all("xoxb" not in key for key in shown["payload"]["headers"])
    for cmd in ("failed show", "parcel show"):
        text = outputs[f"{cmd} {pid}"]
        assert "parcel (secrets redacted)" in text and "[REDACTED:password]" in text, cmd


def stored_text(runtime) -> str:
    """Every string in every table of the ledger, and every blob of the CAS."""
    ledger = runtime.ledger
    parts = []
    for table in ledger_tables(ledger):
        for row in ledger.rows(f'SELECT * FROM "{table}"'):
            # Bytes decoded: small blobs are rows of the ledger (`small_blobs.data`).
            parts.extend(
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                for v in row.values()
                if isinstance(v, str | bytes)
            )
    parts.extend(
        path.read_bytes().decode("utf-8", "replace") for path in runtime.layout.cas.rglob("*.blob")
    )
    return "\n".join(parts)


def test_a_retry_uses_the_raw_copy_and_nothing_stored_holds_a_secret(
    failed_secret, cli, monkeypatch, caplog
):
    _, pid = failed_secret
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "10MB")
    assert cli("failed", "retry", pid).code == 0
    bigger = Runtime.open()
    assert bigger.postmaster().deliver_waiting().delivered == 1
    (message,) = bigger.ledger.rows("SELECT * FROM messages WHERE parcel_id = ?", (pid,))
    headers, envelope = json.loads(message["headers"]), json.loads(message["envelope"])
    # Delivered from the raw copy: the content arrived, with its secrets redacted, ids too.
    assert "deploy with [REDACTED:aws-access-key]" in envelope["body"]
    assert headers["task_id"] == "task-[REDACTED:github-token]"
    assert envelope["attachments"]["big.txt"]["size"] == 4096
    assert bigger.ledger.scalar("SELECT payload FROM parcels WHERE id = ?", (pid,)) is None
    assert leaks(stored_text(bigger)) == []
    assert leaks("\n".join(r.getMessage() for r in caplog.records)) == []
    bigger.close()


def test_a_secret_shaped_agent_id_is_refused_at_send(runtime, cli):
    result = cli("parcel", "send", "-", stdin=json.dumps({"to_agent_id": SLACK}))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert "looks like a secret" in result.err and SLACK not in result.err
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels") == 0


async def test_the_console_shows_the_failed_parcel_redacted(failed_secret):
    runtime, pid = failed_secret
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one("#failed DataTable")
        rows = [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        assert rows and leaks(" ".join(rows)) == []
        text = await open_failure(app, pilot)
        assert pid in text and "CAS quota exceeded" in text
        assert "[REDACTED:" in text and leaks(text) == []


MARKUP = ("[/]", "[bold red]agent", "[link=file:///etc/passwd]x[/link]", "[REDACTED:secret]")


@pytest.mark.parametrize("agent", MARKUP)
async def test_the_console_shows_markup_in_data_as_text(runtime, agent):
    # Issue 10, item 1: an agent id of `[/]` crashed the console on every start.
    from worker.parcels import intake as parcel_module

    (pid,) = parcel_module.queue_parcels(
        runtime.ledger,
        [parcel_module.validate({"to_agent_id": agent}, runtime.settings.max_parcel_size)],
    )
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE parcels SET state='failed', finished_at=1, attempts=3, error=? WHERE id=?",
            (f"boom {agent}", pid),
        )
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one("#failed DataTable")
        cells = [str(c) for c in table.get_row_at(0)]
        assert cells[1] == output.one_line(agent, 16) and f"boom {agent}" in cells[4]
        app.notify(f"a message quoting {agent}")
        assert agent in await open_failure(app, pilot)
        assert await closes(app, pilot)


async def test_a_huge_failed_parcel_opens_bounded_and_closes(runtime):
    from seer_console.screens import DETAIL_LIMIT
    from worker.parcels import intake as parcel_module

    big = {"to_agent_id": "a", "envelope": {"body": "y" * 2_000_000}}
    (pid,) = parcel_module.queue_parcels(
        runtime.ledger, [parcel_module.validate(big, runtime.settings.max_parcel_size)]
    )
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE parcels SET state='failed', finished_at=1, attempts=3, error='x' WHERE id=?",
            (pid,),
        )
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        text = await open_failure(app, pilot)
        assert len(text) < DETAIL_LIMIT + 10_000 and "more characters" in text
        assert await closes(app, pilot)


async def test_a_parcel_nested_too_deep_to_show_is_said_and_the_view_closes(runtime):
    # Stored before sends were bounded at 64 levels: far deeper than Python's recursion limit.
    deep = "[" * 5000 + "]" * 5000
    payload = '{"to_agent_id": "a", "envelope": {"body": ' + deep + "}}"
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size,"
            " created_at, finished_at, attempts, error) VALUES ('deep', 'a', 't', 'm', 's',"
            " 'failed', ?, ?, 1, 2, 3, 'x')",
            (payload, len(payload)),
        )
    app = SeerConsole(SnapshotSource(runtime.settings), refresh=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        assert "Cannot show parcel deep" in await open_failure(app, pilot)
        assert await closes(app, pilot)


# -- REDIS_URL's password (issue 13, item 5) --------------------------------------------------

REDIS_PASSWORD = "s3cret"
REDIS_SHOWING = (
    ("status",),
    ("status", "--json"),
    ("queue", "status"),
    ("queue", "status", "--json"),
    ("metrics",),
    ("config", "show"),
    ("config", "show", "--json"),
    ("send-test-parcel",),
)


async def console_screen() -> str:
    """Everything the console shows after one read, as its screenshot's text."""
    app = SeerConsole(SnapshotSource(), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        return app.export_screenshot()


async def test_redis_url_password_is_never_shown(env, cli, monkeypatch, tmp_path, caplog):
    from tests.redis_server import PrivateRedis

    with PrivateRedis(tmp_path, extra=("--requirepass", REDIS_PASSWORD)) as server:
        monkeypatch.setenv("QUEUE_CONNECTION", "redis")
        monkeypatch.setenv("REDIS_URL", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0")
        assert cli("init").code == 0
        caplog.set_level(logging.DEBUG)
        seen: dict[str, str] = {}

        async def everything(state: str) -> None:
            for args in REDIS_SHOWING:
                result = cli(*args)
                assert "Traceback" not in result.err, (state, args, result.err)
                seen[f"{state}: {' '.join(args)}"] = result.out + result.err
            seen[f"{state}: console"] = await console_screen()

        await everything("answering")
        assert "ping" in seen["answering: status"]  # reachable with the password
        monkeypatch.setenv("REDIS_URL", f"redis://:wrong-{REDIS_PASSWORD}@127.0.0.1:{server.port}")
        await everything("refusing the password")
        assert "refused the password" in seen["refusing the password: status"]
        server.stop()
        await everything("stopped")
        assert "UNREACHABLE" in seen["stopped: status"]
    assert [key for key, text in seen.items() if REDIS_PASSWORD in text] == []
    assert REDIS_PASSWORD not in "\n".join(r.getMessage() for r in caplog.records)
