"""The content-addressed store: the BlobStore interface (`base`), its local-disk implementation
(`store`), the errors, the operator tools and artifact addresses.

`open_store` is the one place that picks the backend for a storage root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.cas.base import BlobStore
from worker.cas.store import ContentStore

if TYPE_CHECKING:
    from worker.layout import Layout


def open_store(layout: Layout) -> BlobStore:
    """The blob store of a storage root: local disk under `orchestration/cas` (an object store
    chosen by configuration is for a later issue)."""
    return ContentStore(
        layout.cas, file_mode=layout.file_mode, dir_mode=layout.dir_mode, base=layout.root
    )
