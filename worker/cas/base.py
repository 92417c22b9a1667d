"""The blob-store interface: what the Postmaster, the CAS tools and backup ask of the place the
CAS keeps its bytes. One documented base class, one subclass per backend (local disk today, in
`worker.cas.store`; an object store later), as huey's `BaseStorage` has.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, Protocol, Self

from worker.cas.errors import BlobNotFound, corrupt, disk_full_as_error
from worker.files import CHUNK_SIZE, atomic_file, fsync_dir, write_all

# A digest's first two hex digits: the partition every backend can list by (a fan-out
# directory on disk, a key prefix in an object store).
PREFIXES = tuple(f"{i:02x}" for i in range(256))

# What `replicate` did: the target had it, a copy-on-write clone, or the bytes copied.
Placement = Literal["present", "cloned", "copied"]


class BlobReader(Protocol):
    """What `open` returns: a binary stream (a file on disk; an HTTP body for an object store)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...


@dataclass(frozen=True)
class PutResult:
    digest: str
    size: int
    created: bool


@dataclass(frozen=True)
class BlobStat:
    """What gc and reconcile need to know of one stored blob: its size and when it was last
    written (a put of the same bytes again counts as a write: gc's grace starts anew)."""

    size: int
    modified: float


class ListedBlob(NamedTuple):
    """One blob of a listing. A NamedTuple rather than a dataclass: listings run to millions
    of blobs, and callers unpack `digest, size`."""

    digest: str
    size: int


class BlobStore(ABC):
    """Blobs named by the SHA-256 of their bytes.

    What every backend promises:
    - a digest is checked (InvalidDigest) before it names anything, so no key or path ever
      comes from input;
    - no partial blob is ever visible, and a put is durable when it returns;
    - puts deduplicate: storing bytes already there creates nothing (`created` is False), and a
      stored blob found damaged is replaced with the good bytes;
    - `read` and `check` verify the hash; `open` gives the raw bytes to callers that hash them;
    - the accounting (bytes, counts, quota) is the ledger's, not the store's.
    Local files a store writes for its caller (`copy_to`, `move_out`) get `file_mode`.

    Subclasses implement the abstract methods; the others have generic versions written on
    them, which a backend overrides where it has a faster way.
    """

    file_mode: int = 0o660
    dir_mode: int = 0o770

    # -- writing -----------------------------------------------------------------------------

    @abstractmethod
    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        """Stores a batch behind one durability barrier (not one per blob).

        Results are in input order; within the batch only the first copy of a given content
        can report created=True. On error nothing partial is left; blobs already complete may
        stay (they are valid). Raises DiskFull when the backend is out of space.
        """

    def put(self, data: bytes) -> PutResult:
        return self.put_many([data])[0]

    def put_deferred(self, data: bytes) -> PutResult:
        """A put whose durability barrier is `sync()`, for a copy of many blobs (backup,
        restore); this generic version is an ordinary put."""
        return self.put(data)

    def put_file(self, src: Path) -> PutResult:
        """Stores a file's contents."""
        with open(src, "rb") as f:
            return self.put(f.read())

    def prepare(self) -> str | None:
        """Creates what the store needs before its first put (an object store's bucket), safe
        to call again; a line saying where the blobs go, or None for a store with nothing
        to prepare (`seer init` calls it)."""
        return None

    def location(self) -> str:
        """Where the blobs are, as this host names it: hosts that share one store report the
        same location (`seer status` compares them)."""
        return type(self).__name__

    # -- reading -----------------------------------------------------------------------------

    @abstractmethod
    def open(self, digest: str) -> BlobReader:
        """A stream of the blob's stored bytes, unverified: for callers that hash as they read.
        Raises BlobNotFound."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under `digest` (its bytes are not checked)."""

    def present(self, digests: Iterable[str]) -> set[str]:
        """Those of `digests` stored here (their bytes are not checked): `exists` for many,
        which a backend answers in fewer round trips where it can."""
        return {digest for digest in digests if self.exists(digest)}

    @abstractmethod
    def stat(self, digest: str) -> BlobStat | None:
        """Size and last write of the blob, or None if none is stored under `digest`."""

    def stats(self, digests: Iterable[str]) -> dict[str, BlobStat]:
        """digest -> BlobStat of those of `digests` stored here: `stat` for many, which a
        backend answers in fewer round trips (or at once) where it can. gc asks for a batch
        while it holds the ledger's lock."""
        found = {}
        for digest in digests:
            st = self.stat(digest)
            if st is not None:
                found[digest] = st
        return found

    def read(self, digest: str) -> bytes:
        """The blob's bytes, verified: raises BlobNotFound, or CorruptBlob if they no longer
        hash to `digest`."""
        with self.open(digest) as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise corrupt(digest)
        return data

    def check(self, digest: str, buffer: bytearray | None = None) -> bool | None:
        """True if the blob hashes to `digest`, False if it is damaged, None if there is none.

        Read in chunks through `buffer`: a verify pass gives one for the whole run, so memory
        stays at one chunk and no buffer is allocated per blob.
        """
        try:
            source = self.open(digest)
        except BlobNotFound:
            return None
        buffer = bytearray(CHUNK_SIZE) if buffer is None else buffer
        view = memoryview(buffer)
        hasher = hashlib.sha256()
        with source:
            while n := source.readinto(view):
                hasher.update(view[:n])
        return hasher.hexdigest() == digest

    def size_of(self, digest: str) -> int:
        found = self.stat(digest)
        if found is None:
            raise BlobNotFound(f"no blob {digest}")
        return found.size

    def copy_to(self, digest: str, dest: Path, mode: int | None = None) -> None:
        """Copies a blob to the local file `dest` atomically, verifying its hash on the way.

        A new file, renamed over `dest`: a symlink or FIFO there is replaced, never written
        through. `mode` defaults to the store's file mode.
        """
        mode = self.file_mode if mode is None else mode
        dest = Path(dest)
        # Opened first, so a missing blob fails before any temp file exists.
        source = self.open(digest)
        with source, disk_full_as_error(dest.parent):
            with atomic_file(dest, mode) as fd:
                hasher = hashlib.sha256()
                while chunk := source.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    write_all(fd, chunk)
                if hasher.hexdigest() != digest:
                    raise corrupt(digest)
            fsync_dir(dest.parent)

    # -- listing -----------------------------------------------------------------------------

    @abstractmethod
    def iter_blobs(self, prefix: str | None = None) -> Iterator[ListedBlob]:
        """The digest and size of every blob, or of those whose digest starts with `prefix`
        (one of PREFIXES), in digest order; anything else the backend holds is skipped."""

    def sizes(self, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
        """digest -> size of the blobs under `prefixes`: the listing reconcile, verify and gc
        compare with the ledger, so a backend makes it as fast as it can.

        A key may be a name that only looks like a digest (a stray file of the right length
        and suffix): checking every name would cost the walk more than the few the ledger does
        not know cost their caller, who checks those with `is_valid_digest`.
        """
        return {digest: size for prefix in prefixes for digest, size in self.iter_blobs(prefix)}

    # -- removal -----------------------------------------------------------------------------

    @abstractmethod
    def remove(self, digest: str) -> bool:
        """Removes the blob; True if there was one. Only gc (under the ledger's write lock)
        and repair remove blobs."""

    def remove_many(self, digests: Iterable[str]) -> int:
        """Removes these blobs; returns how many there were."""
        return sum(self.remove(digest) for digest in digests)

    def move_out(self, digest: str, dest: Path) -> bool:
        """Moves the stored bytes, unchecked, to the local file `dest` (a quarantine, kept for
        a post-mortem) and removes the blob; False if there is none."""
        try:
            source = self.open(digest)
        except BlobNotFound:
            return False
        dest = Path(dest)
        with source, atomic_file(dest, self.file_mode) as fd:
            while chunk := source.read(CHUNK_SIZE):
                write_all(fd, chunk)
        fsync_dir(dest.parent)
        self.remove(digest)
        return True

    def clean_temp(self, now: float | None = None, max_age: float = 3600) -> int:
        """Removes what writes that died left behind; returns how many. Nothing, for a backend
        whose writes leave nothing."""
        return 0

    # -- between stores ----------------------------------------------------------------------

    def replicate(self, digest: str, target: BlobStore) -> Placement:
        """Puts this store's blob into `target`, hash-checked, sharing nothing with the source
        (a byte flipped in one must not flip in the other); what backup and restore do.

        Raises BlobNotFound, or CorruptBlob if the source is damaged. This generic version
        reads and puts; a backend overrides it for targets it can fill faster (local disk:
        reflinks). Call `target.sync()` after the last one.
        """
        if target.exists(digest):
            return "present"
        target.put_deferred(self.read(digest))
        return "copied"

    def sync(self) -> None:
        """Makes durable what `replicate` put into this store. Puts are durable when they
        return; a backend whose fast path defers its barrier (local disk: the directory
        fsyncs) makes it here."""
        return None

    def close(self) -> None:
        """Releases what the store holds open; a later call opens it again."""
        return None

    # -- kinds -------------------------------------------------------------------------------

    # Whether a forked child may list this store from a copy of it (its __reduce__ rebuilds
    # it from configuration): the CLI's reconcile walks a large file store on two cores.
    forkable: bool = False

    def tiers(self) -> tuple[BlobStore, ...]:
        """The stores this one is made of (a store of two kinds lists both); itself if one."""
        return (self,)

    def receiver_for(self, size: int) -> BlobStore:
        """The store a blob of `size` bytes is written to: for a copy into this one."""
        return self
