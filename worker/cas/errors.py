"""The content store's errors and its one rule about names: a digest is 64 lowercase hex
characters, so no path ever comes from input. Shared by every blob-store backend."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from worker.files import UnsafeEntry, is_disk_full

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


class CasError(Exception):
    """Base class for content-store errors."""


class InvalidDigest(CasError, ValueError):
    """The string is not a lowercase hex SHA-256 digest."""


class BlobNotFound(CasError):
    """No blob is stored under this digest."""


class CorruptBlob(CasError):
    """The stored bytes no longer hash to their digest."""


class DiskFull(CasError):
    """A write failed with ENOSPC or EDQUOT; nothing partial was left behind."""


class StoreUnavailable(CasError):
    """The store cannot be reached or refuses every request (an object store down, its
    credentials refused, its bucket missing): nobody's parcel's fault, so the Postmaster backs
    off as for a full disk and no try is used up."""


class UnsafeStoreEntry(CasError, UnsafeEntry):
    """A symbolic link where the store keeps a directory (tmp/, a fan-out dir, the way to the
    root): refused with one line naming it, nothing written through it."""


def corrupt(digest: str) -> CorruptBlob:
    return CorruptBlob(f"blob {digest} is corrupt: its bytes no longer match their SHA-256")


def is_valid_digest(digest: str) -> bool:
    return isinstance(digest, str) and _DIGEST_RE.fullmatch(digest) is not None


def validate_digest(digest: str) -> str:
    """Return `digest` unchanged if it is 64 lowercase hex characters, else raise InvalidDigest."""
    # fullmatch, not match/`$`: `$` would accept a trailing newline.
    if not is_valid_digest(digest):
        shown = repr(digest)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise InvalidDigest(f"invalid digest {shown}: a digest is 64 lowercase hex characters")
    return digest


@contextlib.contextmanager
def disk_full_as_error(where: object) -> Iterator[None]:
    """Turns ENOSPC/EDQUOT inside the block into DiskFull naming `where`."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(
                f"content store at {where} is out of space: {exc.strerror or exc}"
            ) from exc
        raise
