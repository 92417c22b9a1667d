"""The documents say only what the tool does: every `seer` command they show parses, and
docs/SCALING.md's move to PostgreSQL runs as written."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from seer_console.cli import build_parser
from worker.queue.consumer import flags

TOP = Path(__file__).resolve().parents[1]


def commands(path: Path) -> list[str]:
    found = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            for part in re.split(r"&&|\|\||;|\|", line):
                part = part.strip()
                part = re.sub(r"^.*\$\((seer [^)]*)\).*$", r"\1", part)
                part = re.sub(r"^(sudo -u \S+ )?(env \S+=\S+ )?", "", part)
                if part.startswith("seer ") and ">" not in part.split("seer ", 1)[0]:
                    found.append(part.split(">")[0].strip())
    # The README's command table: its last column is an example to run.
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| `seer") and cells[-1].startswith("`seer "):
            found.append(cells[-1].strip("`").split(" > ")[0])
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/RUNBOOK.md", "docs/SCALING.md"])
def test_every_seer_command_in_the_docs_parses(doc):
    parser = build_parser()
    shown = commands(TOP / doc)
    assert shown, f"no seer command found in {doc}"
    for command in shown:
        plain = re.sub(r"\$\([^)]*\)", "X", command).replace("<", "").replace(">", "")
        words = shlex.split(plain)[1:]
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            raise AssertionError(f"{doc}: `{command}` does not parse") from exc


@pytest.mark.parametrize("queue", ["postmaster", "scheduler"])
def test_the_readme_gives_the_flags_seer_worker_runs_with(queue):
    """README's plain `huey_consumer` equivalents are the consumers `seer worker` runs."""
    (line,) = [
        line
        for line in (TOP / "README.md").read_text().splitlines()
        if line.startswith(f"huey_consumer worker.queue.huey_app.{queue} ")
    ]
    assert line.split()[2:] == flags(queue)


def walkthrough(section: str) -> list[str]:
    """The shell lines of one section of docs/SCALING.md, in order, comments dropped."""
    text = (TOP / "docs" / "SCALING.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_scalings_move_to_postgresql_runs_as_written(runtime, cli, tmp_path, monkeypatch):
    # The walk-through of docs/SCALING.md, each command as the page has it, on a SQLite root
    # with a delivered and a queued parcel: only the paths and the server are this test's.
    import subprocess
    import sys

    from tests.helpers import backend_environment, wait_for

    bin_dir = Path(sys.executable).parent
    target = backend_environment("postgresql", tmp_path)["SEER_DATABASE_URL"]
    backups, app = tmp_path / "backups", tmp_path / "app"
    backups.mkdir()  # the operator's backup directory, there before any backup
    app.mkdir()
    assert cli("send-test-parcel").code == 0
    assert runtime.postmaster().deliver_waiting().delivered == 1
    queued = cli("send-test-parcel").out.strip()
    before = cli("status", "--json").json()["parcels"]
    env = dict(os.environ, SEER_ENV_FILE=str(app / ".env"))
    (app / ".env").write_text("")

    def run(line: str) -> subprocess.CompletedProcess:
        line = line.replace("/srv/seer/backups", str(backups)).replace("/srv/seer/app", str(app))
        line = re.sub(r"postgresql://seer@db\.internal:5432/seer", target, line)
        if line.startswith("createdb "):
            return subprocess.CompletedProcess(line, 0)  # the target schema exists already
        args = shlex.split(line)
        if args[0] == "seer":
            args[0] = str(bin_dir / "seer")
        done = subprocess.run(
            args if args[0] != "echo" else ["bash", "-c", line],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        # `seer status` exits with the health (1 warning, 2 critical: the consumers are down
        # until `seer up`); anything else is a failure.
        allowed = (0, 1, 2) if args[1:2] == ["status"] else (0,)
        assert done.returncode in allowed, f"`{line}` failed: {done.stdout}{done.stderr}"
        return done

    moved = walkthrough("Moving an existing deployment to PostgreSQL")
    assert any(line.startswith("seer migrate-backend") for line in moved)
    try:
        for line in moved:
            if line.startswith("seer up"):
                # "the same figures as before the move", read from PostgreSQL now (.env).
                assert f"SEER_DATABASE_URL={target}" in (app / ".env").read_text()
                assert json.loads(run("seer status --json").stdout)["parcels"] == before
            run(line)
        monkeypatch.setenv("SEER_DATABASE_URL", target)
        # `seer up` ran on PostgreSQL: the parcel queued before the move is delivered there.
        wait_for(
            lambda: cli("parcel", "show", queued, "--json").json()["state"] == "delivered",
            60,
            "the queued parcel's delivery on PostgreSQL",
        )
    finally:
        subprocess.run([str(bin_dir / "seer"), "down"], env=env, cwd=tmp_path, capture_output=True)
