"""`seer migrate-cas --to s3://bucket/prefix`: the CAS's files copied into an S3-compatible
object store, so that hosts need no shared CAS directory (docs/SCALING.md walks it).

What is copied: every blob file under orchestration/cas, fan-out by fan-out. Small blobs in
the ledger stay there (every host reaches the ledger). Each blob is read back and hashed
before it is sent; the store's PUT carries its SHA-256 and MD5, so the server refuses bytes
damaged on the way, and is create-only, so a blob already there is not sent twice.

Safe to interrupt and to run again: a run lists what the target holds and sends only what is
missing; the last step lists both sides again and compares every blob and size. It refuses
while any consumer runs (what they wrote meanwhile would be missed), and on a root already on
an object store. The files stay where they are: the operator removes them once every host runs
with ORCHESTRATION_CAS_URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.cas.base import PREFIXES
from worker.cas.errors import CasError, is_valid_digest
from worker.cas.objects import ObjectStore
from worker.cas.store import ContentStore
from worker.layout import Layout
from worker.ledger import open_ledger
from worker.object_urls import ObjectUrl
from worker.ops.operations import running_consumers
from worker.settings import Settings, object_store_environment

# Blobs sent in one concurrent batch, and at most this many bytes held in memory for it.
BATCH = 256
BATCH_BYTES = 64 * 1024 * 1024


class MigrationRefused(Exception):
    """Nothing was copied: the root or the target is not one to copy (one line says why)."""


@dataclass(frozen=True)
class CasMigrationReport:
    target: str  # s3://bucket/prefix at ENDPOINT
    source_blobs: int
    source_bytes: int
    copied: int
    copied_bytes: int
    already_there: int
    bucket_created: bool
    seconds: float
    mismatches: tuple[str, ...] = field(default=())

    @property
    def verified(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["mismatches"] = list(self.mismatches)
        found["verified"] = self.verified
        return found


def parse_target(url: str) -> ObjectUrl:
    try:
        return ObjectUrl.parse(url)
    except ValueError as exc:
        raise MigrationRefused(f"--to {url!r} is not allowed: expected {exc}") from None


def _batches(digests: Sequence[str], sizes: dict[str, int]) -> Iterator[list[str]]:
    batch: list[str] = []
    held = 0
    for digest in digests:
        if batch and (len(batch) >= BATCH or held + sizes[digest] > BATCH_BYTES):
            yield batch
            batch, held = [], 0
        batch.append(digest)
        held += sizes[digest]
    if batch:
        yield batch


def migrate_cas(
    settings: Settings,
    to_url: str,
    *,
    target: ObjectStore | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> CasMigrationReport:
    """Copies the root's blob files into the object store at `to_url` and verifies the copy.

    `target` overrides the store built from `to_url` (tests hand in one with a client of
    their own). `progress(fanout, copied, total_copied)` after each fan-out. Raises
    MigrationRefused before copying anything; CasError (StoreUnavailable, CorruptBlob, ...)
    when a blob cannot be read or sent, after which a rerun completes the copy.
    """
    started = time.monotonic()
    url = parse_target(to_url)
    if settings.cas_url:
        raise MigrationRefused(
            f"the CAS is already on an object store (ORCHESTRATION_CAS_URL={settings.cas_url}): "
            "migrate-cas copies a root's CAS files; unset it to name them"
        )
    layout = Layout.from_settings(settings)
    layout.require_initialised()
    layout.check_no_links()
    ledger = open_ledger(layout, settings)
    try:
        running = running_consumers(ledger, layout)
        if running:
            raise MigrationRefused(
                f"refusing to copy the CAS while {', '.join(running)} "
                f"{'runs' if len(running) == 1 else 'run'}: stop the workers first (`seer down`); "
                "blobs they wrote meanwhile would not be copied"
            )
        source = ContentStore(layout.cas, base=layout.root)
        store = target or ObjectStore(
            url,
            concurrency=settings.cas_concurrency,
            clock=ledger.now,
            environ=object_store_environment(),
        )
        try:
            created = store.ensure_bucket()
            report = _copy(source, store, progress)
        finally:
            source.close()
            if target is None:
                store.close()
    finally:
        ledger.close()
    return CasMigrationReport(
        target=store.location(),
        bucket_created=created,
        seconds=round(time.monotonic() - started, 3),
        **report,
    )


def _copy(
    source: ContentStore,
    target: ObjectStore,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    copied = copied_bytes = already = total_blobs = total_bytes = 0
    mismatches: list[str] = []
    # What the target holds, listed once (concurrently, or in one request when it is small).
    held: dict[str, dict[str, int]] = {}
    for digest, size in target.sizes().items():
        held.setdefault(digest[:2], {})[digest] = size
    for fanout in PREFIXES:
        have = {d: s for d, s in source.iter_blobs(fanout) if is_valid_digest(d)}
        there = held.get(fanout, {})
        total_blobs += len(have)
        total_bytes += sum(have.values())
        missing = sorted(d for d in have if d not in there)
        already += len(have) - len(missing)
        for batch in _batches(missing, have):
            # read() hashes what it read: a damaged file stops the copy, named, not sent.
            results = target.put_many([source.read(digest) for digest in batch])
            copied += len(results)
            copied_bytes += sum(r.size for r in results)
        if progress is not None:
            progress(fanout, len(missing), copied)
    # Verified by listing both sides again: every file is an object of the same size.
    there = target.sizes()
    for fanout in PREFIXES:
        for digest, size in source.iter_blobs(fanout):
            if not is_valid_digest(digest):
                continue
            if digest not in there:
                mismatches.append(f"blob {digest} is not in the object store")
            elif there[digest] != size:
                mismatches.append(
                    f"blob {digest} is {there[digest]} bytes in the object store, {size} here"
                )
    return {
        "source_blobs": total_blobs,
        "source_bytes": total_bytes,
        "copied": copied,
        "copied_bytes": copied_bytes,
        "already_there": already,
        "mismatches": tuple(mismatches),
    }


__all__ = ["CasError", "CasMigrationReport", "MigrationRefused", "migrate_cas", "parse_target"]
