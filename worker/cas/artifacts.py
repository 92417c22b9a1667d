"""Artifact addresses (`fe://artifacts/by-task/{task}/{hash}/{filename}`) and looking them up."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from typing import Any, cast
from urllib.parse import quote

from worker.cas.errors import validate_digest
from worker.ledger import Ledger
from worker.redaction import redact_value

SCHEME = "fe://artifacts/by-task/"
_URI = re.compile(r"fe://artifacts/by-task/([^/]+)/([^/]+)/([^/]+)")


class ArtifactError(ValueError):
    """An artifact address or hash that cannot be resolved; one line for the operator."""


def artifact_uri(task_id: str, digest: str, filename: str) -> str:
    # Task ids and file names come from producers: quoted so they never add path segments.
    return f"{SCHEME}{_quoted(task_id)}/{digest}/{_quoted(filename)}"


@functools.lru_cache(maxsize=4096)
def _quoted(part: str) -> str:
    # Cached: a batch repeats its task ids and file names (they are redacted already).
    return quote(part, safe="")


def digest_of(uri_or_hash: str) -> str:
    """The validated hash named by an artifact URI or given as a bare hash."""
    value = uri_or_hash.strip()
    match = _URI.fullmatch(value)
    if match:
        value = match.group(2)
    elif value.startswith("fe://"):
        raise ArtifactError(
            f"not an artifact address: expected {SCHEME}TASK/HASH/FILENAME or a 64-hex hash"
        )
    try:
        return validate_digest(value)
    except ValueError:
        raise ArtifactError(
            "not an artifact: give an fe://artifacts/by-task/TASK/HASH/FILENAME address or a "
            "hash of 64 lowercase hex characters"
        ) from None


@dataclass(frozen=True)
class Artifact:
    """An artifact of a parcel as shown to an operator (names and URIs redacted)."""

    kind: str
    name: str
    hash: str
    filename: str
    mime_type: str
    size: int
    uri: str

    def as_dict(self) -> dict[str, Any]:
        # The fields' order is the JSON's key order, which tests and docs compare.
        return asdict(self)


def artifacts_of_parcel(ledger: Ledger, parcel_id: str) -> list[Artifact]:
    """The parcel's artifacts as shown to an operator (names and URIs redacted)."""
    rows = ledger.rows(
        "SELECT kind, name, hash, filename, mime_type, size, uri FROM artifacts "
        "WHERE parcel_id = ? ORDER BY id",
        (parcel_id,),
    )
    # A dict stays a dict with its strings redacted, so its keys still name the fields.
    return [Artifact(**cast(dict[str, Any], redact_value(row))) for row in rows]
