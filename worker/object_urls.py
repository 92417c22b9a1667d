"""An object store's address, `s3://bucket/prefix`, checked before it names anything: the
setting ORCHESTRATION_CAS_URL and `seer migrate-cas --to` parse it here, the object store
(worker/cas/objects.py) builds its keys from it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3's rules for a bucket name (the strict, DNS-compatible ones every implementation accepts).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ObjectUrl:
    """`s3://bucket/prefix`, checked: the bucket by S3's rules, the prefix as path segments of
    letters, digits, '.', '_' and '-' (no '..', no empty segment)."""

    bucket: str
    prefix: str  # "" or segments joined by "/", without leading or trailing "/"

    ALLOWED = (
        "an s3:// URL such as s3://seer-cas/prod: a bucket of 3-63 lowercase letters, digits, "
        "'.' and '-', then an optional prefix of path segments of letters, digits, '.', '_' "
        "and '-'"
    )

    @classmethod
    def parse(cls, raw: str) -> ObjectUrl:
        value = raw.strip()
        if not value.startswith("s3://"):
            raise ValueError(cls.ALLOWED)
        bucket, _, prefix = value[len("s3://") :].partition("/")
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(cls.ALLOWED + f" (the bucket {bucket!r} is not one)")
        prefix = prefix.strip("/")
        parts = prefix.split("/") if prefix else []
        if any(not _PREFIX_PART_RE.fullmatch(p) or p in (".", "..") for p in parts):
            raise ValueError(cls.ALLOWED + f" (the prefix {prefix!r} is not one)")
        if len(prefix) > 512:
            raise ValueError(cls.ALLOWED + " (the prefix is longer than 512 characters)")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, digest: str) -> str:
        tail = f"{digest[:2]}/{digest}"
        return f"{self.prefix}/{tail}" if self.prefix else tail

    def listing_prefix(self, fanout: str) -> str:
        return f"{self.prefix}/{fanout}/" if self.prefix else f"{fanout}/"
