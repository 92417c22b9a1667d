"""The layers of docs/ARCHITECTURE.md, checked: which package may import which, and where each
engine's library may be imported. Every import counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE = {
    "worker.settings",
    "worker.settings_example",
    "worker.schedules",
    "worker.layout",
    "worker.identity",
    "worker.jsondata",
    "worker.redaction",
    "worker.files",
    "worker.doorbells",
    "worker.lean_imports",
    "worker.object_urls",
    "worker.said_once",
    "worker.wording",
}
BELOW_OPS = {
    "worker.ledger",
    "worker.cas",
    "worker.fleet",
    "worker.parcels",
    "worker.memory",
    "worker.alerts",
    "worker.monitoring",
    "worker.queue",
    "worker.runtime",
}
# What each part may import besides itself and the core.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "worker.ledger": set(),
    "worker.cas": {"worker.ledger"},
    "worker.fleet": {"worker.ledger"},
    "worker.parcels": {"worker.ledger", "worker.cas", "worker.fleet"},
    "worker.memory": {"worker.ledger", "worker.fleet"},
    "worker.alerts": {"worker.ledger"},
    "worker.monitoring": {
        "worker.ledger",
        "worker.cas",
        "worker.fleet",
        "worker.parcels",
        "worker.memory",
        "worker.alerts",
    },
    "worker.queue": set(),
    "worker.runtime": {
        "worker.ledger",
        "worker.cas",
        "worker.fleet",
        "worker.parcels",
        "worker.memory",
        "worker.queue",
    },
    "worker.ops": BELOW_OPS,
    "worker.huey_app": {"worker.queue"},
    "seer_console": BELOW_OPS | {"worker.ops", "seer_console"},
}
# Modules that stand above their package's layer, and why (said in ARCHITECTURE.md too).
EXCEPTIONS: dict[str, set[str]] = {
    # gc keeps what parcels still reference: it reads their payloads' attachments.
    "worker.cas.tools": {"worker.parcels"},
    # A bare huey_consumer's entry point: it opens the runtime and prepares the consumer.
    "worker.queue.huey_app": {"worker.runtime", "worker.ops", "worker.ledger"},
}
# Third-party engines and who may import them.
ENGINES = {
    "huey": ("worker.queue",),
    "textual": ("seer_console",),
    # The ledger's implementation, backup's SQLite strategy, and the queue's SQLite storage
    # (Huey's, whose sqlite3 errors it turns into QueueError).
    "sqlite3": ("worker.ledger", "worker.ops.backup.sqlite", "worker.queue.queues"),
    "peewee": ("worker.ledger",),
    # The queue's: Huey's PostgreSQL storage is given the driver it was imported without.
    "psycopg": ("worker.ledger", "worker.queue.queues"),
    "psycopg_pool": ("worker.ledger",),
    "requests": ("worker.alerts.channels.slack",),
    "smtplib": ("worker.alerts.channels.mail",),
    "prometheus_client": ("worker.monitoring.exporter",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    bits = module.split(".")
    if bits[0] == "seer_console":
        return "seer_console"
    if module in CORE or module == "worker":
        return "core"
    if len(bits) >= 2 and (ROOT / "worker" / bits[1]).is_dir():
        return f"worker.{bits[1]}"
    return module


def imports(path: Path) -> set[str]:
    """Every module `path` imports, `from worker import x` counted as worker.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                base = ROOT / full.replace(".", "/")
                if base.with_suffix(".py").exists() or base.is_dir():
                    found.add(full)
    return found


def sources() -> list[Path]:
    return sorted([*(ROOT / "worker").rglob("*.py"), *(ROOT / "seer_console").rglob("*.py")])


def test_each_part_imports_only_the_parts_below_it() -> None:
    wrong = []
    for path in sources():
        module = module_name(path)
        part = part_of(module)
        allowed = MAY_IMPORT[part] | {part, "core"} | EXCEPTIONS.get(module, set())
        for target in sorted(imports(path)):
            if not target.startswith(("worker", "seer_console")) or target == "worker":
                continue
            if part_of(target) not in allowed:
                wrong.append(f"{module} imports {target} ({part} may not use {part_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_each_engine_library_is_imported_by_its_adapter_only() -> None:
    wrong = []
    for path in sources():
        module = module_name(path)
        for target in imports(path):
            engine = target.split(".")[0]
            owners = ENGINES.get(engine)
            if owners and not any(module == o or module.startswith(o + ".") for o in owners):
                wrong.append(f"{module} imports {target} (only {', '.join(owners)} may)")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_domain_never_prints() -> None:
    printing = [
        f"{module_name(path)}:{node.lineno}"
        for path in sorted((ROOT / "worker").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
    ]
    assert not printing, printing


@pytest.mark.queue_facing
def test_the_old_huey_consumer_path_still_loads_the_same_queues(runtime, env) -> None:
    """A supervisor file of the last release names `worker.huey_app.postmaster`; it keeps
    working for one release (what huey_consumer does: import the module, take the Huey)."""
    check = (
        "import worker.huey_app as old, worker.queue.huey_app as new\n"
        "assert old.postmaster is new.postmaster and old.scheduler is new.scheduler\n"
        "assert old.postmaster.name == 'postmaster' and old.scheduler.name == 'scheduler'\n"
        "print('ok')"
    )
    assert _fresh_python(check, env) == "ok"


@pytest.mark.backends("sqlite")
def test_a_sqlite_root_loads_no_driver_of_another_backend(runtime, env) -> None:
    """huey.storage and peewee import redis and psycopg, used or not: a quarter of a second of
    every start of `seer`, the console and `seer worker` (worker.lean_imports)."""
    code = (
        "import sys\n"
        "from worker.runtime import Runtime\n"
        "import seer_console.app, worker.queue.huey_app\n"
        "runtime = Runtime.open()\n"
        "runtime.queues.postmaster.enqueue\n"
        "runtime.ledger.scalar('SELECT count(*) FROM parcels')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'psycopg', 'psycopg2'}))"
    )
    assert _fresh_python(code, env) == "[]"


def test_seer_worker_imports_no_other_command_nor_the_console(env) -> None:
    """`seer worker` is what supervisord starts, and its start is timed to the first dequeue
    (issue 15): it imports its own module of the CLI (and what all share), not the other
    commands', not textual, not the supervisord client."""
    code = (
        "import contextlib, io, sys\n"
        "from seer_console.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['worker', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('seer_console.cli.')\n"
        "    or m.split('.')[0] == 'textual' or m == 'worker.fleet.supervision'))"
    )
    assert _fresh_python(code, env) == "['seer_console.cli.common', 'seer_console.cli.worker']"


def _fresh_python(code: str, env: dict[str, str]) -> str:
    """What `code` prints in a new interpreter of this environment (it must exit 0)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
