"""Libraries that import every optional driver they might use, used or not.

huey.storage imports redis and psycopg for its Redis and PostgreSQL storages, and peewee imports
psycopg for its PostgreSQL database: a quarter of a second of every start of `seer`, the
console and `seer worker` on a SQLite root, where neither is used. They are imported with those
drivers hidden; the storage that needs one binds it when it is built (worker.queue.queues).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Within: `import NAME` fails as if NAME were not installed, unless it is imported
    already (then the importer gets it, as without this)."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's own "absent"
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
