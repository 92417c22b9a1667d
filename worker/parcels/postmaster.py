"""The Postmaster: turns queued parcels into messages in agents' inboxes, exactly once.

A worker claims the oldest due parcels in the ledger (in flight, owned by it), stores their
attachments and manifests in the CAS, then records every delivery of the batch in one
transaction that only succeeds while it still owns them. A worker that dies leaves its parcels
in flight; `recover` (the reaper, on any host) gives them back to the queue, and isolates them
so that a parcel which kills its worker is caught alone and failed after POSTMASTER_MAX_CRASHES
deaths. A worker is dead when its pid is, or when its heartbeat is older than
SEER_HEARTBEAT_TIMEOUT; one taken for dead that wakes up (a pause, a partition) finds its
commit refused, since it no longer owns the parcels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from worker.cas.artifacts import artifact_uri
from worker.cas.base import BlobStore
from worker.cas.errors import DiskFull, StoreUnavailable
from worker.cas.tools import MIN_GRACE
from worker.fleet import consumers, control
from worker.identity import Owner, current_owner, is_alive
from worker.ledger import (
    ClaimedParcel,
    Ledger,
    LedgerBusy,
    LedgerDiskFull,
    LedgerError,
    LedgerUnavailable,
)
from worker.ledger.history import APPEND, event_line
from worker.parcels.intake import ParcelError, attachments_of, dumps, stored_bytes, validate
from worker.redaction import redact_key, redact_text, redact_value
from worker.settings import Settings

log = logging.getLogger("seer.postmaster")

MESSAGE_TYPE = "postmaster.delivery"
# A failed batch's give-back is tried again after this many seconds, doubling up to the
# second figure, while the ledger is out of reach.
GIVE_BACK_RETRY = (0.5, 5.0)
STORE_BACKOFF = (5.0, 300.0)


class PermanentFailure(Exception):
    """Retrying cannot help (quota, a parcel that no longer validates): fail at once."""


@dataclass(frozen=True)
class BatchResult:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    backing_off: bool = False  # a full disk or a store out of reach: retry at retry_at
    retry_at: float | None = None


class ArtifactRow(NamedTuple):
    """One row of the artifacts table, in its INSERT's column order (passed as is)."""

    parcel_id: str
    task_id: str
    kind: str
    name: str
    hash: str
    filename: str
    mime_type: str
    size: int
    uri: str
    created_at: float


class MessageRow(NamedTuple):
    """The inbox message a delivery creates, in its INSERT's column order (passed as is)."""

    parcel_id: str
    to_agent_id: str
    type: str
    stream: str
    headers: str
    envelope: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """A parcel made ready to commit: its blobs (attachments, then the manifest) with their
    digests in the same order, its artifact rows and its message."""

    parcel_id: str
    blobs: list[bytes]
    digests: list[str]
    artifacts: list[ArtifactRow]
    message: MessageRow


class Failure(NamedTuple):
    parcel: ClaimedParcel
    error: BaseException
    permanent: bool  # retrying cannot help: failed at once, whatever tries are left


@dataclass
class _Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # What the batch's put created, and when (monotonic): see _commit.
    created: set[str] = field(default_factory=set)
    created_at: float = 0.0


def _error_text(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:2000]


class Postmaster:
    def __init__(
        self, ledger: Ledger, store: BlobStore, settings: Settings, owner: Owner | None = None
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.settings = settings
        self.owner = owner or current_owner(settings.host_id)

    # -- claiming ----------------------------------------------------------------------------

    def _claim(self, now: float, limit: int) -> list[ClaimedParcel]:
        s = self.settings
        return self.ledger.claim_parcels(self.owner.token, now, limit, s.batch_bytes, s.lease)

    def _release_own(self) -> int:
        """Gives back parcels this very thread still holds (left by an error mid-batch)."""
        if not self.ledger.scalar(
            "SELECT 1 FROM parcels WHERE state = 'in_flight' AND owner = ? LIMIT 1",
            (self.owner.token,),
        ):
            return 0
        line = event_line("released", self.ledger.now(), self.owner.token)
        with self.ledger.write():
            return self.ledger.execute(
                "UPDATE parcels SET state = 'queued', owner = NULL, lease_until = NULL, "
                f"{APPEND} WHERE state = 'in_flight' AND owner = ?",
                (line, self.owner.token),
            ).rowcount

    def _give_back(self) -> None:
        """Gives back what this thread holds after a failed batch, and waits out a ledger out
        of reach (a server restarting, a partition) to do so: parcels left in flight by a
        consumer that lives on are nobody else's to take back, since its heartbeat goes on,
        and no doorbell may ever come to this thread again. A full disk, or any error that
        waiting cannot mend, is raised as before."""
        wait, said = GIVE_BACK_RETRY[0], False
        while True:
            try:
                self._release_own()
                return
            except (LedgerUnavailable, LedgerBusy) as exc:
                if isinstance(exc, LedgerDiskFull):
                    raise
                if not said:
                    log.warning("a failed batch's parcels not given back yet, retrying: %s", exc)
                    said = True
            time.sleep(wait)
            wait = min(GIVE_BACK_RETRY[1], wait * 2)

    # -- delivering --------------------------------------------------------------------------

    def deliver_waiting(self, now: float | None = None, limit: int | None = None) -> BatchResult:
        """Delivers up to `limit` due parcels (default POSTMASTER_BATCH_SIZE), oldest first."""
        limit = limit or self.settings.batch_size
        self._release_own()
        totals = BatchResult()
        while totals.claimed < limit:
            if totals.claimed and control.is_paused(self.ledger):
                # The consumer looks at the pause flag before each doorbell; a batch that keeps
                # claiming what arrives meanwhile would go on delivering for seconds after it.
                break
            started = self.ledger.now() if now is None else now
            rows = self._claim(started, limit - totals.claimed)
            if not rows:
                break
            try:
                result = self._deliver(rows, started, stamp=now)
            except BaseException:
                # Whatever went wrong (the ledger's disk, a signal), the parcels go back whole.
                self._give_back()
                raise
            totals = BatchResult(
                claimed=totals.claimed + result.claimed,
                delivered=totals.delivered + result.delivered,
                retried=totals.retried + result.retried,
                failed=totals.failed + result.failed,
                backing_off=result.backing_off,
                retry_at=min(
                    (t for t in (totals.retry_at, result.retry_at) if t is not None),
                    default=None,
                ),
            )
            if result.backing_off:
                break
        return totals

    def _deliver(
        self, rows: list[ClaimedParcel], now: float, stamp: float | None = None
    ) -> BatchResult:
        """Delivers claimed parcels; `stamp` is the time recorded (default: when it commits)."""
        outcome = _Outcome()
        prepared: list[tuple[ClaimedParcel, Delivery]] = []
        for i, claimed in enumerate(rows):
            try:
                delivery = self._prepare(claimed, now)
            except PermanentFailure as exc:
                outcome.failures.append(Failure(claimed, exc, True))
                continue
            except Exception as exc:
                outcome.failures.append(Failure(claimed, exc, False))
                continue
            # The batch's claims live until it commits: their payloads need not.
            rows[i] = claimed = claimed.without_payload()
            prepared.append((claimed, delivery))
        known = self._known_blobs({d for _, p in prepared for d in p.digests})
        in_use = self.ledger.counter("cas_bytes")
        for claimed, delivery in prepared:
            new = {
                d: len(b)
                for d, b in zip(delivery.digests, delivery.blobs, strict=True)
                if d not in known
            }
            needed = sum(new.values())
            if in_use + needed > self.settings.cas_max_size:
                outcome.failures.append(Failure(claimed, self._over_quota(needed, in_use), True))
                continue
            in_use += needed
            known.update(new)
            outcome.deliveries.append(delivery)
        try:
            put_at = time.monotonic()
            stored = self.store.put_many([b for d in outcome.deliveries for b in d.blobs])
            outcome.created = {r.digest for r in stored if r.created}
            outcome.created_at = put_at
        except (DiskFull, StoreUnavailable) as exc:
            return self._back_off(rows, exc, now)
        except LedgerError:
            # Small blobs are the ledger's rows: a ledger that fails them fails the commit
            # too, and the parcels go back whole as they would from there.
            raise
        except Exception as exc:
            # The store failed for the batch as a whole: a try used by each of its parcels.
            by_id = {r.id: r for r in rows}
            outcome.failures += [
                Failure(by_id[d.parcel_id], exc, False) for d in outcome.deliveries
            ]
            outcome.deliveries = []
        control.clear_backoff(self.ledger)
        try:
            return self._commit(rows, outcome, self.ledger.now() if stamp is None else stamp)
        except (DiskFull, StoreUnavailable) as exc:
            # The commit's re-put of what gc took met the store down: rolled back whole.
            return self._back_off(rows, exc, now)

    def _mark_delivered(self, parcel_ids: list[str], now: float) -> set[str]:
        """Marks delivered those of the parcels this consumer still owns; returns their ids."""
        owned: set[str] = set()
        line = event_line("delivered", now, self.owner.token)
        for start in range(0, len(parcel_ids), 500):
            chunk = parcel_ids[start : start + 500]
            owned.update(
                r[0]
                for r in self.ledger.execute(
                    "UPDATE parcels SET state = 'delivered', payload = NULL, owner = NULL, "
                    "lease_until = NULL, finished_at = ?, attempts = attempts + 1, "
                    f"error = NULL, traceback = NULL, {APPEND} "
                    f"WHERE id IN ({','.join('?' * len(chunk))}) "
                    "AND state = 'in_flight' AND owner = ? RETURNING id",
                    [now, line, *chunk, self.owner.token],
                ).fetchall()
            )
        return owned

    def _over_quota(self, needed: int, in_use: int) -> PermanentFailure:
        return PermanentFailure(
            f"CAS quota exceeded: this parcel needs {needed} more bytes, {in_use} of "
            f"{self.settings.cas_max_size} are in use (ORCHESTRATION_CAS_MAX_SIZE)"
        )

    def _hold_to_quota(self, rows: list[ClaimedParcel], outcome: _Outcome, known: set[str]) -> None:
        """The quota once more, inside the commit: the check before the store's put saw only
        what had committed then, and consumers on other hosts commit meanwhile. Those adding
        bytes take lock("cas.quota") in turn, so no two pass it on the same figure; a
        parcel that no longer fits fails as it would have before the put. `known`: the
        batch's digests the ledger records now (left unchanged)."""
        if not outcome.deliveries:
            return
        if all(d in known for delivery in outcome.deliveries for d in delivery.digests):
            return
        known = set(known)
        self.ledger.lock("cas.quota")
        in_use = self.ledger.counter("cas_bytes")
        by_id = {r.id: r for r in rows}
        kept = []
        for delivery in outcome.deliveries:
            new = {
                d: len(b)
                for d, b in zip(delivery.digests, delivery.blobs, strict=True)
                if d not in known
            }
            needed = sum(new.values())
            if in_use + needed > self.settings.cas_max_size:
                over = self._over_quota(needed, in_use)
                outcome.failures.append(Failure(by_id[delivery.parcel_id], over, True))
                continue
            in_use += needed
            known.update(new)
            kept.append(delivery)
        outcome.deliveries = kept

    def _known_blobs(self, digests: set[str]) -> set[str]:
        known: set[str] = set()
        ordered = sorted(digests)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(
                r[0]
                for r in self.ledger.execute(
                    f"SELECT hash FROM blobs WHERE hash IN ({marks})", chunk
                ).fetchall()
            )
        return known

    def _prepare(self, claimed: ClaimedParcel, now: float) -> Delivery:
        parcel_id = claimed.id
        try:
            parcel = validate(
                json.loads(claimed.payload or ""), self.settings.max_parcel_size, size=claimed.size
            )
        except (ParcelError, TypeError, ValueError) as exc:
            raise PermanentFailure(f"the stored parcel is not valid any more: {exc}") from None
        redact = self.settings.redact_secrets
        # Every string that is stored is redacted, ids, names and keys included: they reach
        # the inbox, the manifest blob, the artifacts table and backups.
        text = redact_text if redact else str
        task = text(parcel["task_id"])
        blobs: list[bytes] = []
        digests: list[str] = []
        artifacts: list[ArtifactRow] = []
        entries: dict[str, dict[str, Any]] = {}
        listed = []
        for attachment in attachments_of(parcel):
            data = stored_bytes(attachment, redact)
            digest = hashlib.sha256(data).hexdigest()
            filename = text(attachment.filename)
            name = cast(str, redact_key(attachment.name, entries)) if redact else attachment.name
            uri = artifact_uri(task, digest, filename)
            entry: dict[str, Any] = {
                "uri": uri,
                "hash": digest,
                "size": len(data),
                "filename": filename,
                "mime_type": text(attachment.mime_type),
            }
            entries[name] = entry
            listed.append({"name": name, **entry})
            blobs.append(data)
            digests.append(digest)
            artifacts.append(
                ArtifactRow(
                    parcel_id,
                    task,
                    "attachment",
                    name,
                    digest,
                    filename,
                    entry["mime_type"],
                    len(data),
                    uri,
                    now,
                )
            )
        manifest = dumps(
            {
                "parcel_id": parcel_id,
                "task_id": task,
                "to_agent_id": parcel["to_agent_id"],
                "artifacts": listed,
            }
        ).encode("utf-8")
        manifest_digest = hashlib.sha256(manifest).hexdigest()
        manifest_uri = artifact_uri(task, manifest_digest, "manifest.json")
        blobs.append(manifest)
        digests.append(manifest_digest)
        artifacts.append(
            ArtifactRow(
                parcel_id,
                task,
                "manifest",
                "manifest.json",
                manifest_digest,
                "manifest.json",
                "application/json",
                len(manifest),
                manifest_uri,
                now,
            )
        )
        envelope = cast(
            dict[str, Any],
            redact_value(parcel["envelope"]) if redact else dict(parcel["envelope"]),
        )
        envelope["attachments"] = entries
        headers = cast(
            dict[str, Any], redact_value(parcel["headers"]) if redact else dict(parcel["headers"])
        )
        headers.update(
            {
                "parcel_id": parcel_id,
                "task_id": task,
                "original_type": text(parcel["type"]),
                "artifact_count": len(entries),
                "manifest_uri": manifest_uri,
            }
        )
        message = MessageRow(
            parcel_id,
            parcel["to_agent_id"],
            MESSAGE_TYPE,
            text(parcel["stream"]),
            dumps(headers),
            dumps(envelope),
            now,
        )
        return Delivery(parcel_id, blobs, digests, artifacts, message)

    def _commit(self, rows: list[ClaimedParcel], outcome: _Outcome, now: float) -> BatchResult:
        token = self.owner.token
        delivered = retried = failed = 0
        taken_back: list[str] = []
        retry_at: float | None = None
        ledger = self.ledger
        with ledger.write():
            # gc removes blobs holding lock("cas") exclusively: held shared here, what the
            # loop below finds in the store stays there until these rows commit.
            ledger.lock("cas", shared=True)
            recorded = self._known_blobs({d for o in outcome.deliveries for d in o.digests})
            self._hold_to_quota(rows, outcome, recorded)
            # One statement per kind of row for the whole batch, not one per parcel: on a
            # database over the network each is a round trip, and the triggers count a
            # statement's rows at once.
            owned = self._mark_delivered([d.parcel_id for d in outcome.deliveries], now)
            done = [d for d in outcome.deliveries if d.parcel_id in owned]
            # Only those we still own: if we were taken for dead, someone else delivers.
            taken_back += [d.parcel_id for d in outcome.deliveries if d.parcel_id not in owned]
            # Blobs with no row yet: gc may have taken them, as orphans or as old unreferenced
            # blobs, between our deduplicating put and now. gc removes a blob holding the
            # "cas" lock, its row in the same transaction: with the lock held shared, a blob
            # the ledger records is there, and only the others need asking for (on an
            # object store, each is a request).
            # Of those, the ones our own put created just now are there too (gc removes only
            # blobs older than its grace, at least MIN_GRACE).
            fresh = (
                outcome.created if time.monotonic() - outcome.created_at < MIN_GRACE / 2 else set()
            )
            wanted = {
                h: b
                for d in done
                for h, b in zip(d.digests, d.blobs, strict=True)
                if h not in recorded and h not in fresh
            }
            there = self.store.present(wanted)
            gone = [data for digest, data in wanted.items() if digest not in there]
            if gone:
                self.store.put_many(gone)
            if done:
                ledger.executemany(
                    "INSERT INTO messages (parcel_id, to_agent_id, type, stream, headers, "
                    "envelope, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [d.message for d in done],
                )
                ledger.executemany(
                    "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (hash) DO NOTHING",
                    list(
                        {
                            h: (h, len(b), now)
                            for d in done
                            for h, b in zip(d.digests, d.blobs, strict=True)
                        }.values()
                    ),
                )
                ledger.executemany(
                    "INSERT INTO artifacts (parcel_id, task_id, kind, name, hash, "
                    "filename, mime_type, size, uri, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (parcel_id, kind, name) DO NOTHING",
                    [a for d in done for a in d.artifacts],
                )
            delivered = len(done)
            for claimed, exc, permanent in outcome.failures:
                attempts = claimed.attempts + 1
                error = _error_text(exc)
                trace = redact_text("".join(traceback.format_exception(exc)))[:20000]
                if permanent or attempts >= self.settings.tries:
                    line = event_line("failed", now, token, attempt=attempts, error=error)
                    changed = ledger.execute(
                        "UPDATE parcels SET state = 'failed', owner = NULL, lease_until = NULL, "
                        f"attempts = ?, finished_at = ?, error = ?, traceback = ?, {APPEND} "
                        "WHERE id = ? AND state = 'in_flight' AND owner = ?",
                        (attempts, now, error, trace, line, claimed.id, token),
                    ).rowcount
                    failed += changed
                    if not changed:
                        taken_back.append(claimed.id)
                    else:
                        log.warning(
                            "parcel %s failed after %d tries: %s", claimed.id, attempts, error
                        )
                else:
                    due = now + self.settings.retry_delay * 2 ** (attempts - 1)
                    line = event_line(
                        "try_failed", now, token, attempt=attempts, error=error, retry_at=due
                    )
                    changed = ledger.execute(
                        "UPDATE parcels SET state = 'queued', owner = NULL, lease_until = NULL, "
                        f"attempts = ?, not_before = ?, error = ?, traceback = ?, {APPEND} "
                        "WHERE id = ? AND state = 'in_flight' AND owner = ?",
                        (attempts, due, error, trace, line, claimed.id, token),
                    ).rowcount
                    retried += changed
                    if not changed:
                        taken_back.append(claimed.id)
                    else:
                        retry_at = due if retry_at is None else min(retry_at, due)
                        log.info(
                            "parcel %s try %d failed, retry at %.0f: %s",
                            claimed.id,
                            attempts,
                            due,
                            error,
                        )
        if taken_back:
            self._say_taken_back(taken_back)
        if delivered:
            if len(done) == 1:
                log.info(
                    "delivered parcel %s to %s",
                    done[0].parcel_id,
                    redact_text(done[0].message.to_agent_id),
                )
            else:
                log.info(
                    "delivered %d parcels (%s … %s)",
                    delivered,
                    done[0].parcel_id,
                    done[-1].parcel_id,
                )
        return BatchResult(len(rows), delivered, retried, failed, False, retry_at)

    def _say_taken_back(self, ids: list[str]) -> None:
        """One line a batch: the commit found parcels it no longer owns. The reaper gave them
        back while this consumer was thought dead (its heartbeat stopped: a pause, a partition,
        a ledger out of reach); another consumer delivers them, so this one did not."""
        which = ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]}"
        log.warning(
            "%d parcel%s (%s) taken back while this consumer was thought dead (no heartbeat "
            "for SEER_HEARTBEAT_TIMEOUT=%gs): not delivered again by this consumer (host %s, "
            "pid %d)",
            len(ids),
            "" if len(ids) == 1 else "s",
            which,
            self.settings.heartbeat_timeout,
            self.owner.host,
            self.owner.pid,
        )

    def _back_off(
        self, rows: list[ClaimedParcel], exc: DiskFull | StoreUnavailable, now: float
    ) -> BatchResult:
        # A full disk or a store out of reach is nobody's parcel's fault: give them back
        # without using up a try, and wait longer each time it happens again.
        self._release_own()
        what = "CAS disk full" if isinstance(exc, DiskFull) else "CAS store unavailable"
        previous = control.backoff_state(self.ledger)
        wait = STORE_BACKOFF[0]
        if previous:
            wait = min(STORE_BACKOFF[1], max(wait, 2 * (previous.until - previous.since)))
        until = now + wait
        control.set_backoff(self.ledger, f"{what}: {exc}", until, now)
        log.error(
            "%s (%s): %d parcels back in the queue, next try in %.0fs",
            what,
            exc,
            len(rows),
            wait,
        )
        return BatchResult(claimed=len(rows), backing_off=True, retry_at=until)


@dataclass(frozen=True)
class Recovery:
    requeued: int
    failed: int


def owner_alive(
    owner: Owner, host: str | None, heartbeats: dict[str, float], now: float, timeout: float
) -> bool | None:
    """Whether the holder of parcels lives: False when its pid is dead (on this host, `host`
    its SEER_HOST_ID) or its consumer's heartbeat is older than `timeout` (on any host, on the
    ledger's clock: a stopped process whose pid lives is dead too); None for a holder on
    another host that never registered a heartbeat: only its lease tells."""
    by_pid = is_alive(owner, host)
    if by_pid is False:
        return False
    last = heartbeats.get(owner.process_token)
    if last is not None:
        return now - last <= timeout
    return by_pid  # not a registered consumer (a `seer` command delivering, a test)


def recover(
    ledger: Ledger, settings: Settings, now: float | None = None, host: str | None = None
) -> Recovery:
    """Gives parcels held by dead workers back to the queue (isolated), or fails repeat killers.
    `host`: this host's id (default SEER_HOST_ID, else the machine's name)."""
    now = ledger.now() if now is None else now
    host = settings.host_id if host is None else host
    rows = ledger.rows(
        "SELECT id, owner, claim_size, crashes, lease_until FROM parcels WHERE state = 'in_flight'"
    )
    if not rows:
        return Recovery(0, 0)
    heartbeats = consumers.last_heartbeats(ledger)
    alive: dict[str, bool | None] = {}
    stale = []
    for row in rows:
        owner = Owner.parse(row["owner"] or "")
        if owner is None:
            stale.append(row)
            continue
        key = owner.process_token
        if key not in alive:
            alive[key] = owner_alive(owner, host, heartbeats, now, settings.heartbeat_timeout)
        state = alive[key]
        if state is False or (state is None and (row["lease_until"] or 0) < now):
            stale.append(row)
    requeued = failed = 0
    if not stale:
        return Recovery(0, 0)
    with ledger.write():
        for row in stale:
            # A death is blamed on a parcel only when it was the only one in flight on that worker.
            crashes = row["crashes"] + (1 if row["claim_size"] == 1 else 0)
            # The holder's token goes into the line: the take-back says whose death it was.
            if crashes >= settings.max_crashes:
                error = (
                    f"WorkerDied: the worker died {crashes} times while delivering this "
                    "parcel alone (POSTMASTER_MAX_CRASHES)"
                )
                failed += ledger.execute(
                    "UPDATE parcels SET state = 'failed', owner = NULL, lease_until = NULL, "
                    f"crashes = ?, finished_at = ?, error = ?, traceback = NULL, {APPEND} "
                    "WHERE id = ? AND state = 'in_flight' AND owner IS NOT DISTINCT FROM ?",
                    (
                        crashes,
                        now,
                        error,
                        event_line("failed", now, row["owner"], error=error, crashes=crashes),
                        row["id"],
                        row["owner"],
                    ),
                ).rowcount
            else:
                requeued += ledger.execute(
                    "UPDATE parcels SET state = 'queued', owner = NULL, lease_until = NULL, "
                    f"crashes = ?, isolate = 1, {APPEND} WHERE id = ? AND state = 'in_flight' "
                    "AND owner IS NOT DISTINCT FROM ?",
                    (
                        crashes,
                        event_line("taken_back", now, row["owner"], crashes=crashes),
                        row["id"],
                        row["owner"],
                    ),
                ).rowcount
    if requeued or failed:
        log.warning(
            "recovered parcels of dead workers: %d back in the queue, %d failed", requeued, failed
        )
    return Recovery(requeued, failed)


def due_parcel(ledger: Ledger, now: float | None = None) -> str | None:
    """The oldest parcel that could be delivered now, if any (what a doorbell rings for)."""
    now = ledger.now() if now is None else now
    return ledger.scalar(
        "SELECT id FROM parcels WHERE state = 'queued' AND not_before <= ? ORDER BY seq LIMIT 1",
        (now,),
    )
