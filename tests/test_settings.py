"""Settings: defined once, read from the environment over a `.env` file, refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.settings import (
    SPECS,
    Settings,
    SettingsError,
    load_settings,
    parse_duration,
    parse_env_file,
    parse_size,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "seer.env.example"
GIB = 1024**3


def one_line_failure(result, code: int) -> str:
    """The command failed with `code` and exactly one line on stderr, no traceback."""
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].strip(), result.err
    assert "Traceback" not in result.err + result.out
    return lines[0]


# -- the example file -----------------------------------------------------------------------------


def test_example_file_lists_exactly_every_setting_with_its_default():
    found = parse_env_file(EXAMPLE)
    assert sorted(found) == sorted(s.name for s in SPECS)
    for spec in SPECS:
        assert found[spec.name] == spec.default, spec.name
    # No name listed twice (a dict would hide the second one).
    names = re.findall(r"^\s*(?:export\s+)?([A-Za-z_]\w*)\s*=", EXAMPLE.read_text(), re.M)
    assert len(names) == len(set(names)) == len(SPECS)


def test_example_file_documents_each_setting_with_its_help_line():
    lines = EXAMPLE.read_text().splitlines()
    specs = {s.name: s for s in SPECS}
    for number, line in enumerate(lines):
        name = line.split("=", 1)[0].strip()
        if name not in specs:
            continue
        comment = []
        for above in reversed(lines[:number]):
            if not above.startswith("# "):
                break
            comment.insert(0, above[2:])
        assert " ".join(specs[name].help.split()) in " ".join(" ".join(comment).split()), name


def test_example_file_alone_gives_the_default_settings(env):
    from_file = load_settings({"SEER_ENV_FILE": str(EXAMPLE)})
    defaults = load_settings({})
    assert from_file == defaults
    assert defaults == Settings(
        **{f: spec.parse(spec.default) for f, spec in zip(_field_names(), SPECS, strict=True)}
    )


def _field_names() -> list[str]:
    from dataclasses import fields

    return [f.name for f in fields(Settings)]


def test_defaults(env):
    s = load_settings({})
    assert s.storage_path == Path("storage")
    assert s.storage_root == Path.cwd() / "storage"
    assert s.redact_secrets is True
    assert s.cas_max_size == 100 * GIB
    assert s.cas_alert_threshold == 0.8
    assert s.queue_connection == "database"
    assert s.max_parcel_size == 32 * 1024**2
    assert s.retry_delay == 10.0 and s.lease == 600.0
    assert s.test_agent == "seer-test"
    assert (s.dir_mode, s.file_mode) == (0o770, 0o660)
    assert s.database_url == ""


# -- parsers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("107374182400", 100 * GIB),
        ("100G", 100 * GIB),
        ("100g", 100 * GIB),
        ("100GB", 100 * GIB),
        ("512M", 512 * 1024**2),
        ("1.5K", 1536),
        ("2T", 2 * 1024**4),
        (" 64 ", 64),
        ("10b", 10),
    ],
)
def test_sizes_parse(raw, expected):
    assert parse_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "lots", "-1", "10X", "1e9", "G", "1,000"])
def test_bad_sizes_are_refused(raw):
    with pytest.raises(ValueError):
        parse_size(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30", 30.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 7 * 86400.0),
        ("2w", 14 * 86400.0),
        ("0.2s", 0.2),
        ("1.5h", 5400.0),
        ("15M", 900.0),
    ],
)
def test_durations_parse(raw, expected):
    assert parse_duration(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["", "soon", "-5s", "15 minutes", "1y", "h", "1h30m"])
def test_bad_durations_are_refused(raw):
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_sizes_and_durations_through_settings(env):
    s = load_settings(
        {
            "ORCHESTRATION_CAS_MAX_SIZE": "100G",
            "POSTMASTER_MAX_PARCEL_SIZE": "1M",
            "POSTMASTER_LEASE": "15m",
            "POSTMASTER_RETRY_DELAY": "90s",
        }
    )
    assert s.cas_max_size == 100 * GIB and s.max_parcel_size == 1024**2
    assert s.lease == 900.0 and s.retry_delay == 90.0


@pytest.mark.parametrize("word", ["database", "DATABASE", "sqlite", " Sqlite "])
def test_queue_connection_accepts_the_task_cards_word(env, word):
    assert load_settings({"QUEUE_CONNECTION": word}).queue_connection == word.strip().lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("yes", True), ("ON", True), ("True", True), ("0", False), ("off", False)],
)
def test_bools(env, raw, expected):
    assert load_settings({"ORCHESTRATION_REDACT_SECRETS": raw}).redact_secrets is expected


def test_modes(env):
    s = load_settings({"SEER_DIR_MODE": "750", "SEER_FILE_MODE": "0640"})
    assert (s.dir_mode, s.file_mode) == (0o750, 0o640)


# -- bad values: one line naming the variable, the value and what is allowed -----------------------

BAD_VALUES = [
    # (variable, value, a word of what is allowed)
    ("ORCHESTRATION_REDACT_SECRETS", "maybe", "true or false"),
    ("ORCHESTRATION_CAS_MAX_SIZE", "lots", "size"),
    ("POSTMASTER_MAX_PARCEL_SIZE", "32Q", "size"),
    ("ORCHESTRATION_CAS_ALERT_THRESHOLD", "1.5", "fraction"),
    ("ORCHESTRATION_CAS_ALERT_THRESHOLD", "0", "fraction"),
    ("QUEUE_CONNECTION", "kafka", "sqlite"),
    ("SEER_DIR_MODE", "0777", "others"),
    ("SEER_FILE_MODE", "0666", "others"),
    ("SEER_DIR_MODE", "rwx", "octal"),
    ("POSTMASTER_RETRY_DELAY", "soon", "duration"),
    ("POSTMASTER_LEASE", "10 minutes", "duration"),
    ("POSTMASTER_TRIES", "0", "whole number"),
    ("ORCHESTRATION_MEMORY_TTL_HOURS", "abc", "whole number"),
    ("POSTMASTER_QUEUE", "bad name!", "letters"),
    ("SEER_SQLITE_SYNCHRONOUS", "off", "full"),
    ("POSTMASTER_TEST_AGENT", "   ", "agent id"),
    ("SEER_STORAGE_PATH", "  ", "path"),
    # Allowed by their shape, meaningless as settings.
    ("ORCHESTRATION_CAS_MAX_SIZE", "0", "more than 0"),
    ("POSTMASTER_MAX_PARCEL_SIZE", "0", "more than 0"),
    ("ORCHESTRATION_CAS_MAX_SIZE", "1" * 400, "size"),
    ("SEER_SAMPLE_INTERVAL", "1" * 400, "duration"),
    ("POSTMASTER_LEASE", "9" * 30, "duration"),
    ("SEER_DIR_MODE", "0000", "owner rwx"),
    ("SEER_FILE_MODE", "0000", "owner rw"),
    ("SEER_FILE_MODE", "0400", "owner rw"),
    ("ALERT_REPEAT_INTERVAL", "0", "60"),
    ("ORCHESTRATION_COMPACTION_CRON", "5-1 * * * *", "minute field '5-1' is not valid"),
    ("ORCHESTRATION_COMPACTION_CRON", "0 0 31 2 *", "no day that exists"),
    ("ORCHESTRATION_MONITOR_CRON", "0 0 31 4,6,9,11 *", "no day that exists"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_VALUES)
def test_load_settings_names_variable_value_and_what_is_allowed(env, name, value, allowed):
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert name in message and repr(value) in message
    assert allowed in message


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_VALUES)
def test_bad_value_stops_status_with_one_line_exit_3(
    cli, runtime, monkeypatch, name, value, allowed
):
    monkeypatch.setenv(name, value)
    line = one_line_failure(cli("status"), 3)
    assert name in line and value.strip() in line and allowed in line


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_VALUES)
def test_bad_value_stops_other_commands_with_one_line_exit_2(
    cli, runtime, monkeypatch, name, value, allowed
):
    monkeypatch.setenv(name, value)
    for args in (("queue", "status"), ("failed", "list"), ("migrate", "--status")):
        line = one_line_failure(cli(*args), 2)
        assert name in line and value.strip() in line and allowed in line, args


def test_value_with_a_newline_is_still_one_line(cli, runtime, monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_REDACT_SECRETS", "yes\nno")
    line = one_line_failure(cli("status"), 3)
    assert "ORCHESTRATION_REDACT_SECRETS" in line
    one_line_failure(cli("send-test-parcel"), 2)


def test_bad_value_stops_init_before_anything_is_created(cli, env, tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUE_CONNECTION", "kafka")
    line = one_line_failure(cli("init"), 2)
    assert "QUEUE_CONNECTION" in line and "kafka" in line
    assert not (tmp_path / "storage").exists()


def test_bad_value_in_env_file_is_one_line_too(cli, runtime, tmp_path):
    (tmp_path / ".env").write_text("POSTMASTER_TRIES=many\n")
    line = one_line_failure(cli("status"), 3)
    assert "POSTMASTER_TRIES" in line and "many" in line
    line = one_line_failure(cli("queue", "status"), 2)
    assert "POSTMASTER_TRIES" in line and "many" in line


@pytest.mark.parametrize(
    "url",
    [
        "mysql://seer:hunter2-s3cret@db.internal/seer",
        "postgresql://seer:hunter2-s3cret@db.internal:99999/seer",
        "postgresql://seer:hunter2-s3cret@db.internal:5432/",
        "hunter2-s3cret",
    ],
)
def test_a_bad_database_url_is_refused_without_its_password(cli, env, monkeypatch, url):
    monkeypatch.setenv("SEER_DATABASE_URL", url)
    spec = next(s for s in SPECS if s.name == "SEER_DATABASE_URL")
    assert spec.secret
    # `seer status` is a monitoring check: UNKNOWN (3), as Nagios has it.
    for args, code in ((("status",), 3), (("queue", "status"), 2), (("failed", "list"), 2)):
        result = cli(*args)
        line = one_line_failure(result, code)
        assert "hunter2" not in result.err + result.out
        assert "SEER_DATABASE_URL=(hidden)" in line and "postgresql://" in line


def test_an_unreachable_database_is_one_line_naming_host_and_port(cli, runtime, monkeypatch):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    monkeypatch.setenv("SEER_DATABASE_URL", "postgresql://seer:hunter2-s3cret@127.0.0.1:9/seer")
    for args in (("status",), ("queue", "status"), ("failed", "list"), ("init",)):
        result = cli(*args)
        assert result.code != 0, args
        line = result.err.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line, result.err
        assert "127.0.0.1:9" in line and "hunter2" not in result.err + result.out


# -- the .env file --------------------------------------------------------------------------------


def test_env_file_in_working_directory_is_read(env, tmp_path):
    (tmp_path / ".env").write_text(
        "# Seer settings\n"
        "\n"
        "export POSTMASTER_TRIES=7\n"
        'POSTMASTER_TEST_AGENT="probe agent"\n'
        "POSTMASTER_QUEUE='parcels'\n"
        "   # indented comment\n"
        "SEER_SQLITE_SYNCHRONOUS=normal # trailing comment\n"
        "ORCHESTRATION_CAS_MAX_SIZE = 50G\n"
        "POSTMASTER_LEASE=15m\n"
    )
    s = load_settings({})
    assert s.tries == 7
    assert s.test_agent == "probe agent"
    assert s.postmaster_queue == "parcels"
    assert s.sqlite_synchronous == "normal"
    assert s.cas_max_size == 50 * GIB
    assert s.lease == 900.0


def test_env_file_hash_inside_a_value_is_kept(env, tmp_path):
    (tmp_path / ".env").write_text('POSTMASTER_TEST_AGENT=agent#1\nAPP_NAME="a # b"\n')
    assert load_settings({}).test_agent == "agent#1"
    assert parse_env_file(tmp_path / ".env")["APP_NAME"] == "a # b"


def test_env_file_quoted_value_followed_by_a_comment(env, tmp_path):
    # A quoted value with a comment after it is common in .env files (python-dotenv, docker
    # compose and shells all read it as the quoted text).
    (tmp_path / ".env").write_text(
        'SEER_SQLITE_SYNCHRONOUS="normal"  # safe against crashes\n'
        "POSTMASTER_TEST_AGENT='probe'  # who gets test parcels\n"
    )
    values = parse_env_file(tmp_path / ".env")
    assert values == {"SEER_SQLITE_SYNCHRONOUS": "normal", "POSTMASTER_TEST_AGENT": "probe"}
    s = load_settings({})
    assert s.sqlite_synchronous == "normal" and s.test_agent == "probe"


def test_real_environment_wins_over_env_file(env, tmp_path, cli, monkeypatch):
    (tmp_path / ".env").write_text("POSTMASTER_TEST_AGENT=from-file\nPOSTMASTER_TRIES=5\n")
    s = load_settings({"POSTMASTER_TEST_AGENT": "from-env"})
    assert s.test_agent == "from-env" and s.tries == 5
    # Through the CLI: the environment's good value wins over a bad one in the file.
    (tmp_path / ".env").write_text("QUEUE_CONNECTION=kafka\n")
    monkeypatch.setenv("QUEUE_CONNECTION", "sqlite")
    assert cli("init").code == 0
    assert cli("queue", "status").code == 0


def test_env_file_from_seer_env_file(env, tmp_path):
    (tmp_path / ".env").write_text("POSTMASTER_TRIES=5\n")
    other = tmp_path / "conf" / "seer.env"
    other.parent.mkdir()
    other.write_text("POSTMASTER_TRIES=9\n")
    s = load_settings({"SEER_ENV_FILE": str(other)})
    # SEER_ENV_FILE replaces the working directory's .env, it is not merged with it.
    assert s.tries == 9
    assert load_settings({}).tries == 5


def test_seer_env_file_missing_is_one_line_error(cli, runtime, tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "seer.env"
    monkeypatch.setenv("SEER_ENV_FILE", str(missing))
    with pytest.raises(SettingsError, match="SEER_ENV_FILE"):
        load_settings()
    line = one_line_failure(cli("status"), 3)
    assert "SEER_ENV_FILE" in line and str(missing) in line
    line = one_line_failure(cli("queue", "status"), 2)
    assert "SEER_ENV_FILE" in line and str(missing) in line
    line = one_line_failure(cli("init"), 2)
    assert "SEER_ENV_FILE" in line


def test_env_file_malformed_line_names_file_and_line(cli, runtime, tmp_path):
    (tmp_path / ".env").write_text("# ok\nPOSTMASTER_TRIES=3\nthis is not a setting\n")
    with pytest.raises(SettingsError, match=r"\.env:3"):
        load_settings()
    line = one_line_failure(cli("status"), 3)
    assert ".env:3" in line
    line = one_line_failure(cli("failed", "list"), 2)
    assert ".env:3" in line


def test_env_file_not_utf8_is_one_line_error(cli, runtime, tmp_path):
    (tmp_path / ".env").write_bytes(b"POSTMASTER_TEST_AGENT=\xff\xfe\n")
    line = one_line_failure(cli("queue", "status"), 2)
    assert ".env" in line and "UTF-8" in line


def test_unknown_names_in_env_file_are_ignored(env, tmp_path):
    (tmp_path / ".env").write_text("APP_KEY=whatever\nPOSTMASTER_TRIES=4\n")
    assert load_settings({}).tries == 4


def test_example_file_is_exactly_what_seer_config_example_writes(cli):
    from pathlib import Path

    from worker.settings_example import render_example

    example = Path(__file__).resolve().parents[1] / "config" / "seer.env.example"
    assert example.read_text() == render_example(), "run `make config`"
    assert cli("config", "example").out == render_example()


def test_config_show_hides_secrets(env, cli, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-secret")
    shown = cli("config", "show", "--json").json()
    assert shown["SMTP_PASSWORD"] == "(hidden)" and shown["POSTMASTER_TRIES"] == 3
    assert "hunter2" not in cli("config", "show").out


def test_config_show_prints_values_as_the_env_file_writes_them(env, cli, monkeypatch):
    monkeypatch.setenv("SEER_DIR_MODE", "0750")
    text = dict(
        line.split(None, 1) for line in cli("config", "show").out.splitlines()[1:] if " " in line
    )
    assert text["SEER_DIR_MODE"].strip() == "0750" and text["SEER_FILE_MODE"].strip() == "0660"
    assert text["ORCHESTRATION_REDACT_SECRETS"].strip() == "true"
    shown = cli("config", "show", "--json").json()
    assert shown["SEER_DIR_MODE"] == "0750" and shown["ORCHESTRATION_REDACT_SECRETS"] is True


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/services/T0/B0/x",  # a bracket left open: "Invalid IPv6 URL" at send
        "https://hooks.example.com:99999999/services/x",  # a port that is no port
        "https://:443/services/x",  # no host
    ],
)
def test_a_webhook_url_that_cannot_be_sent_to_is_refused_at_load(
    env, cli, runtime, monkeypatch, url
):
    with pytest.raises(SettingsError) as caught:
        load_settings({"ALERT_SLACK_WEBHOOK_URL": url})
    message = str(caught.value)
    assert "ALERT_SLACK_WEBHOOK_URL" in message and "http(s) URL" in message
    assert url not in message and "(hidden)" in message  # the URL is a secret
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", url)
    for args in (("alerts", "test"), ("monitor-storage",), ("alerts", "list")):
        result = cli(*args)
        assert result.code != 0 and "Traceback" not in result.err, (args, result.err)
        assert "ALERT_SLACK_WEBHOOK_URL" in result.err


def test_a_channel_that_cannot_be_built_never_stops_the_others(runtime, monkeypatch):
    from worker.alerts import channels, outbox
    from worker.alerts.channels import slack
    from worker.monitoring import monitor

    def broken(*args, **kwargs):
        raise ValueError("Invalid IPv6 URL")

    monkeypatch.setattr(slack, "SlackChannel", broken)
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", "https://hooks.example.com/services/x")
    from worker.runtime import Runtime

    wired = Runtime.open()
    report = monitor.deliver(wired)
    ids = monitor.queue_test_alert(wired)
    rows = outbox.deliver_rows(
        wired.ledger, channels.channels_from_settings(wired.settings, wired.layout), ids
    )
    said = {d.channel: (d.status, d.last_error) for d in rows}
    assert said["log"] == ("sent", None)
    assert said["slack"][0] == "pending" and "cannot be used" in said["slack"][1]
    assert report.sent == 0
    wired.close()


@pytest.mark.parametrize(
    ("low", "high", "values"),
    [
        (
            "ORCHESTRATION_CAS_ALERT_THRESHOLD",
            "ORCHESTRATION_CAS_CRITICAL_THRESHOLD",
            ("0.95", "0.9"),
        ),
        ("POSTMASTER_QUEUE_WARNING", "POSTMASTER_QUEUE_CRITICAL", ("500", "100")),
        ("POSTMASTER_QUEUE_WARNING", "POSTMASTER_QUEUE_CRITICAL", ("200", "200")),
    ],
)
def test_a_warning_line_above_the_critical_one_is_refused(
    env, cli, runtime, monkeypatch, low, high, values
):
    with pytest.raises(SettingsError) as caught:
        load_settings({low: values[0], high: values[1]})
    message = str(caught.value)
    assert low in message and high in message and "below the critical" in message
    monkeypatch.setenv(low, values[0])
    monkeypatch.setenv(high, values[1])
    line = one_line_failure(cli("status"), 3)
    assert low in line


@pytest.mark.parametrize("name", ["with%percent", 'with"quote', "with\nnewline"])
def test_a_storage_root_supervisord_cannot_hold_is_refused(env, cli, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SEER_STORAGE_PATH", str(tmp_path / name))
    line = one_line_failure(cli("init"), 2)
    assert "SEER_STORAGE_PATH" in line and "supervisord" in line
    assert not (tmp_path / name).exists()
