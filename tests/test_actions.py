"""Every action exists once: each console action and the `seer` command that does the same
thing reach the same service function of worker.ops.operations.

The console's actions are walked through its command palette (which offers every action of
every pane, tests/test_console.py checks that); each is confirmed where it asks. The service
functions are wrapped to record their calls and run for real, except those that would talk to
a supervisord or roll the schema back, which answer as they would.
"""

from __future__ import annotations

import inspect

import pytest

from seer_console.app import SeerConsole
from seer_console.screens import ConfirmScreen
from tests.console_fixtures import NOW, FixedSource, fill, use_utc
from worker.fleet import supervision
from worker.ops import operations

# Console action (its palette title) -> the `seer` commands that do the same, and the service
# functions both must call.
SAME_ACTION: dict[str, tuple[list[list[str]], set[str]]] = {
    "Pause the postmaster queue": ([["queue", "pause"]], {"pause"}),
    "Resume the postmaster queue": ([["queue", "resume"]], {"resume"}),
    "Send a test parcel": ([["send-test-parcel"]], {"send_test_parcel"}),
    "Retry the selected failed parcel": ([["failed", "retry", "{failed}"]], {"retry_failed"}),
    "Retry every failed parcel": ([["failed", "retry", "--all"]], {"retry_all_failed"}),
    "Purge every failed parcel": ([["failed", "purge", "--yes"]], {"purge_failed"}),
    "Compact agents' memory now": ([["compact-memory"]], {"compact_memory"}),
    "Send a test alert": ([["alerts", "test"]], {"send_test_alert"}),
    **{
        f"{verb.capitalize()} seer-{program}": (
            [["supervisor", verb, program]],
            {"control"},
        )
        for verb in ("start", "stop", "restart")
        for program in ("postmaster", "scheduler")
    },
    # The runbook's first two steps, one key in the console, two commands in a runbook.
    "Roll back: pause and stop the postmaster": (
        [["queue", "pause"], ["supervisor", "stop", "postmaster"]],
        {"pause", "control"},
    ),
    "Roll back the last migration": (
        [["migrate", "--rollback", "1", "--yes"]],
        {"rollback_preview", "migration_rollback"},
    ),
}

# What would reach a supervisord or drop tables: recorded, answered, not done.
ANSWERS = {
    "control": lambda sup, action, program: [f"seer-{program}: {action} done"],
    "rollback_preview": lambda *a, **k: "would undo migration 5",
    "migration_rollback": lambda *a, **k: "undid migration 5",
}


def record_service_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name, function in inspect.getmembers(operations, inspect.isfunction):
        if function.__module__ != operations.__name__ or name.startswith("_"):
            continue
        target = ANSWERS.get(name, function)

        def wrapped(*args, _name=name, _target=target, **kwargs):
            calls.append(_name)
            return _target(*args, **kwargs)

        monkeypatch.setattr(operations, name, wrapped)
    return calls


def running_programs(sup) -> list[supervision.ProgramInfo]:
    return [
        supervision.ProgramInfo(
            name, name, "RUNNING", 4242, NOW - 60, NOW, 0, "", "pid 4242", code=20
        )
        for name in supervision.PROGRAMS
    ]


@pytest.fixture
def recorded(runtime, monkeypatch):
    use_utc()
    fill(runtime)
    monkeypatch.setattr(supervision.Supervisor, "programs", running_programs)
    return runtime, record_service_calls(monkeypatch)


def a_failed_parcel(runtime) -> str:
    """A failed parcel to retry (the console's walk retried and purged the others)."""
    with runtime.ledger.write():
        parcel_id = runtime.ledger.scalar(
            "SELECT id FROM parcels WHERE state = 'queued' ORDER BY seq LIMIT 1"
        )
        runtime.ledger.execute(
            "UPDATE parcels SET state = 'failed', finished_at = ?, error = 'test' WHERE id = ?",
            (NOW, parcel_id),
        )
    return parcel_id


async def console_calls(runtime, calls: list[str]) -> dict[str, list[str]]:
    """Each mutating palette command run once (confirmed), with the service calls it made."""
    app = SeerConsole(FixedSource(runtime), live=False, clock=lambda: NOW)
    found: dict[str, list[str]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        titles = [c.title for p in app.screen.query("Pane") for c in p.commands() if c.mutates]
        # Pausing turns the pause key into resume: that one is walked right after.
        titles.insert(titles.index("Pause the postmaster queue") + 1, "Resume the postmaster queue")
        for title in titles:
            # Each finds something to act on: a failed parcel, shown.
            a_failed_parcel(runtime)
            app.poll()
            await app.workers.wait_for_complete()
            await pilot.pause()
            (command,) = [c for c in app.get_system_commands(app.screen) if c.title == title]
            del calls[:]
            command.callback()
            await pilot.pause()
            if isinstance(app.screen, ConfirmScreen):
                await pilot.press("y")
            await app.workers.wait_for_complete()
            await pilot.pause()
            await app.workers.wait_for_complete()
            found[title] = list(calls)
    return found


async def test_every_console_action_and_its_command_call_the_same_service_function(recorded, cli):
    runtime, calls = recorded
    by_console = await console_calls(runtime, calls)
    assert set(by_console) == set(SAME_ACTION), "a console action without its command here"
    for title, (commands, functions) in SAME_ACTION.items():
        missing = functions - set(by_console[title])
        assert not missing, f"console {title!r} called {by_console[title]}, not {missing}"
        failed = a_failed_parcel(runtime)
        del calls[:]
        for argv in commands:
            result = cli(*(a.format(failed=failed) for a in argv))
            assert result.code == 0, (argv, result.err)
        missing = functions - set(calls)
        assert not missing, f"`seer {commands}` called {calls}, not {missing}"
