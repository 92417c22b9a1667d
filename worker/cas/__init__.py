"""The content-addressed store: the BlobStore interface (`base`), its local-disk implementation
(`store`), the one on an S3-compatible object store (`objects`), small blobs in the ledger
(`ledger_blobs`), the small and the large as one (`tiered`), the errors, the operator tools
and artifact addresses.

`open_store` is the one place that picks the backend for a storage root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.cas.base import BlobStore
from worker.cas.ledger_blobs import LedgerBlobStore
from worker.cas.store import ContentStore
from worker.cas.tiered import TieredStore

if TYPE_CHECKING:
    from worker.layout import Layout
    from worker.ledger import Ledger
    from worker.settings import Settings


def open_large_store(layout: Layout, ledger: Ledger, settings: Settings) -> BlobStore:
    """Where the blobs above the ledger's threshold go: the object store of
    ORCHESTRATION_CAS_URL, or files under `orchestration/cas`."""
    if settings.cas_url:
        from worker.cas.objects import ObjectStore
        from worker.settings import object_store_environment

        return ObjectStore(
            settings.cas_url,
            concurrency=settings.cas_concurrency,
            clock=ledger.now,
            environ=object_store_environment(),
            file_mode=layout.file_mode,
            dir_mode=layout.dir_mode,
        )
    return ContentStore(
        layout.cas, file_mode=layout.file_mode, dir_mode=layout.dir_mode, base=layout.root
    )


def open_store(layout: Layout, ledger: Ledger, settings: Settings) -> BlobStore:
    """The blob store of a storage root: blobs up to ORCHESTRATION_CAS_SMALL_BLOB_SIZE in the
    ledger, the others in `open_large_store`."""
    files = open_large_store(layout, ledger, settings)
    if not ledger.has_table("small_blobs"):
        # A ledger behind the schema (restored from an old backup, about to be migrated):
        # the runtime refuses it, and what still reads or writes its blobs uses the files.
        return files
    small = LedgerBlobStore(ledger, file_mode=layout.file_mode, dir_mode=layout.dir_mode)
    return TieredStore(small, files, settings.cas_small_blob_size)
