"""Property-based: arbitrary JSON to the send path and arbitrary strings to every command that
takes an id or a value. Whatever comes in: exit 0, or one line on stderr and exit 1 or 2, never
a traceback (issue 10, item 10). Examples are bounded and derandomized: the same in CI."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as it reaches a program: any code point, lone surrogates included (what Python makes of
# bytes that are not UTF-8).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


def one_line_or_ok(result) -> None:
    assert "Traceback" not in result.out + result.err, result.err
    if result.code == 0:
        return
    assert result.code in (1, 2), result
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.err


def dumped(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


@SETTINGS
@given(
    agent=ANY_TEXT | JSON,
    envelope=JSON,
    headers=JSON,
    extra=st.dictionaries(st.sampled_from(["task_id", "type", "stream", "attachments"]), JSON),
)
def test_parcel_send_of_arbitrary_json(runtime, cli, agent, envelope, headers, extra):
    parcel = {"to_agent_id": agent, "envelope": envelope, "headers": headers, **extra}
    try:
        text = dumped(parcel)
    except (UnicodeEncodeError, ValueError):
        return
    result = cli("parcel", "send", "-", stdin=text.encode("utf-8", "surrogatepass"))
    one_line_or_ok(result)
    if result.code == 0:
        (pid,) = result.out.split()
        one_line_or_ok(cli("parcel", "show", pid, "--json"))


@SETTINGS
@given(value=JSON)
def test_memory_set_of_arbitrary_json(runtime, cli, value):
    try:
        text = dumped(value)
    except ValueError:
        return
    one_line_or_ok(cli("memory", "set", "agent", "key", text))
    one_line_or_ok(cli("memory", "keys", "agent", "--json"))


COMMANDS_WITH_AN_ARGUMENT = (
    ("failed", "show", "{}"),
    ("failed", "show", "{}", "--json"),
    ("failed", "retry", "{}"),
    ("parcel", "show", "{}"),
    ("parcel", "show", "{}", "--json"),
    ("inbox", "{}"),
    ("inbox", "{}", "--json"),
    ("inbox", "ack", "{}"),
    ("artifacts", "pull", "{}"),
    ("memory", "get", "{}", "k"),
    ("memory", "get", "a", "{}"),
    ("memory", "forget", "{}", "k"),
    ("memory", "keys", "{}"),
    ("memory", "set", "a", "k", "{}"),
    ("memory", "set", "a", "k", "{}", "--string"),
    ("memory", "set-ephemeral", "a", "k", "1", "--ttl", "{}"),
    ("compact-memory", "--agent", "{}", "--dry-run"),
    ("failed", "list", "--limit", "{}"),
    ("inbox", "a", "--limit", "{}"),
    ("compactions", "--limit", "{}"),
    ("failed", "purge", "--older-than", "{}", "--yes"),
    ("queue", "status", "{}"),
)


@SETTINGS
@given(text=ANY_TEXT, which=st.sampled_from(COMMANDS_WITH_AN_ARGUMENT))
def test_every_command_that_takes_an_argument_survives_any_string(runtime, cli, text, which):
    args = [text if part == "{}" else part for part in which]
    one_line_or_ok(cli(*args))
