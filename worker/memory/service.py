"""Agents' memory: durable keys that stay, ephemeral keys that expire after a TTL.

An expired key reads as absent at once; compaction (worker/memory/compaction.py) removes it later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker import jsondata
from worker.ledger import Ledger

PARTITIONS = ("durable", "ephemeral")
MAX_KEY_LENGTH = 512


class MemoryError_(ValueError):
    """A value or key that cannot be stored; the message is one line for the caller."""


@dataclass(frozen=True)
class Entry:
    agent_id: str
    key: str
    partition: str
    value: Any
    expires_at: float | None
    updated_at: float


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
        raise MemoryError_(f"{what} must be a non-empty string of at most {MAX_KEY_LENGTH} chars")
    if any(ord(c) < 32 for c in value):
        raise MemoryError_(f"{what} must not contain control characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise MemoryError_(f"{what} holds an unpaired surrogate (\\ud800-\\udfff): not text")


class MemoryService:
    def __init__(self, ledger: Ledger, ttl_hours: float = 24, max_value: int = 1024**2) -> None:
        self.ledger = ledger
        self.ttl = ttl_hours * 3600
        self.max_value = max_value

    def _encode(self, value: Any) -> str:
        try:
            jsondata.check(value)
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
            size = len(text.encode("utf-8"))
        except jsondata.JsonRefused as exc:
            raise MemoryError_(f"value is {exc}") from None
        except UnicodeEncodeError:
            raise MemoryError_(
                "value holds an unpaired surrogate (\\ud800-\\udfff): not text"
            ) from None
        except (TypeError, ValueError) as exc:
            raise MemoryError_(f"value is not JSON-serialisable: {exc}") from None
        if size > self.max_value:
            raise MemoryError_(
                f"value is {size} bytes as JSON, over the limit of {self.max_value} "
                "(ORCHESTRATION_MEMORY_MAX_VALUE_SIZE)"
            )
        return text

    def _set(
        self, agent: str, key: str, value: Any, partition: str, expires: float | None, now: float
    ) -> None:
        _check_name(agent, "agent id")
        _check_name(key, "key")
        text = self._encode(value)
        with self.ledger.write():
            self.ledger.execute(
                "INSERT INTO memory (agent_id, key, partition, value, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, key) DO UPDATE SET "
                "partition = excluded.partition, value = excluded.value, "
                "expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                (agent, key, partition, text, expires, now),
            )

    def set_durable(self, agent: str, key: str, value: Any, now: float | None = None) -> None:
        now = self.ledger.now() if now is None else now
        self._set(agent, key, value, "durable", None, now)

    def set_ephemeral(
        self,
        agent: str,
        key: str,
        value: Any,
        ttl: float | None = None,
        now: float | None = None,
    ) -> float:
        """Stores a key that expires after `ttl` seconds (default the configured TTL)."""
        now = self.ledger.now() if now is None else now
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            raise MemoryError_("a TTL must be more than 0 seconds")
        expires = now + ttl
        self._set(agent, key, value, "ephemeral", expires, now)
        return expires

    def entry(self, agent: str, key: str, now: float | None = None) -> Entry | None:
        now = self.ledger.now() if now is None else now
        row = self.ledger.row(
            "SELECT agent_id, key, partition, value, expires_at, updated_at FROM memory "
            "WHERE agent_id = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (agent, key, now),
        )
        if row is None:
            return None
        return Entry(**{**row, "value": json.loads(row["value"])})

    def get(self, agent: str, key: str, now: float | None = None) -> Any:
        """The value, or None when the key is absent or has expired."""
        found = self.entry(agent, key, now)
        return None if found is None else found.value

    def forget(self, agent: str, key: str) -> bool:
        with self.ledger.write():
            return (
                self.ledger.execute(
                    "DELETE FROM memory WHERE agent_id = ? AND key = ?", (agent, key)
                ).rowcount
                > 0
            )

    def keys(
        self, agent: str, partition: str | None = None, now: float | None = None
    ) -> list[Entry]:
        """The agent's live keys (expired ones are left out), in key order."""
        now = self.ledger.now() if now is None else now
        if partition is not None and partition not in PARTITIONS:
            raise MemoryError_("partition must be durable or ephemeral")
        where = "agent_id = ? AND (expires_at IS NULL OR expires_at > ?)"
        params: list[Any] = [agent, now]
        if partition:
            where += " AND partition = ?"
            params.append(partition)
        rows = self.ledger.rows(
            "SELECT agent_id, key, partition, value, expires_at, updated_at FROM memory "
            f"WHERE {where} ORDER BY key",
            params,
        )
        return [Entry(**{**r, "value": json.loads(r["value"])}) for r in rows]
