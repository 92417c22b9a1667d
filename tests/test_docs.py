"""The documents say only what the tool does: every `seer` command they show parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from seer_console.cli import build_parser

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
