"""The blob store on an S3-compatible object store (ORCHESTRATION_CAS_URL=s3://bucket/prefix):
the files' place when hosts share no disk. Tested against a real Ceph RGW (tests/rgw_server.py).

Each blob is one object, `<prefix>/ab/<sha256>`. What makes the store's promises hold:
- a PUT's payload is signed (`x-amz-content-sha256` is the blob's SHA-256, its address) and
  carries Content-MD5: a server that gets other bytes than were sent refuses them (400) and
  stores nothing, so no corrupted upload is ever acknowledged;
- `If-None-Match: *` makes a PUT create-only: a 412 means "already there", a dedupe that costs
  no read, and two hosts writing the same blob never replace each other's object;
- an acknowledged PUT is durable (the S3 contract); no object is ever visible half-written;
- every read is hashed by its caller (`read`, `check`, `copy_to`), as for files.

What the server does not do for us: it never checks that bytes at rest still match (Ceph's
scrub is the operator's business), so dedupe trusts an object the server verified on the way
in, and `seer cas verify` is what finds damage later. The endpoint and credentials are boto3's
standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION); nothing here prints them.

A store that cannot be reached (refused, timed out, 5xx after boto3's retries, credentials
refused, the bucket missing) raises StoreUnavailable: the Postmaster backs off as it does for
a full disk, and no parcel uses up a try.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from worker.cas.base import PREFIXES, BlobReader, BlobStat, BlobStore, ListedBlob, PutResult
from worker.cas.errors import BlobNotFound, CasError, DiskFull, StoreUnavailable, validate_digest
from worker.object_urls import ObjectUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("seer.cas")

_T = TypeVar("_T")
_R = TypeVar("_R")

_KEY_TAIL_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})$")

# Who wrote the blob last, on the ledger's clock (gc's grace compares with it): the server's
# Last-Modified is its own clock, and a create-only PUT that found the object does not move it.
WRITTEN = "seer-written"

# Codes that say "no space": a user or bucket quota, a full cluster.
_FULL_CODES = frozenset({"QuotaExceeded", "InsufficientCapacity", "InsufficientStorage"})
# Codes that no retry of ours mends but the operator can: credentials, the bucket.
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "AllAccessDisabled",
        "InvalidToken",
        "ExpiredToken",
        "RequestTimeTooSkewed",
    }
)
# What the server answers when the bytes it got are not the bytes that were signed.
_CORRUPT_UPLOAD_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"})
# Tries of one PUT whose bytes arrived damaged (a flaky link): the server stored nothing.
_CORRUPT_UPLOAD_TRIES = 3


class CorruptUpload(CasError):
    """The object store refused a PUT because the bytes it received did not match their
    Content-MD5 or signed SHA-256: nothing was stored."""


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def _session() -> Any:
    """One boto3 session a process: a new one parses the S3 service model again (~0.1-0.2 s
    a client here, paid by every `seer` command and test); what differs between clients (the
    endpoint, the keys) is passed to each client."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            import boto3

            _SESSION = boto3.session.Session()
        return _SESSION


def make_client(
    *,
    environ: Mapping[str, str] | None = None,
    concurrency: int = 8,
    connect_timeout: float = 3,
    read_timeout: float = 30,
    attempts: int = 4,
) -> S3Client:
    """An S3 client from boto3's standard configuration (the AWS_* variables, ~/.aws), set for
    what this store relies on: payloads signed, checksums only where the API requires one
    (boto3 1.36+ adds CRC checksums that RGW 16 ignores), path-style addressing (an endpoint
    on an address or a private name has no bucket subdomains), bounded timeouts and boto3's
    standard retries with exponential backoff and jitter. `environ`: the AWS_* values that
    win over boto3's own lookup, by default settings.object_store_environment() (the
    environment over the settings file)."""
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path", "payload_signing_enabled": True},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=concurrency + 2,
        tcp_keepalive=True,
    )
    if environ is None:
        from worker.settings import object_store_environment

        environ = object_store_environment()
    client = _session().client(
        "s3",
        config=config,
        endpoint_url=environ.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=environ.get("AWS_SESSION_TOKEN"),
        region_name=environ.get("AWS_DEFAULT_REGION"),
    )
    _sign_with_the_address(client)
    return client


# The signer name under which botocore finds _AddressedPayloadAuth, and the request context
# key that carries the payload's SHA-256 to it.
_SIGNER = "s3v4-seer-addressed"
_PAYLOAD_SHA256 = "seer_payload_sha256"


def _sign_with_the_address(client: S3Client) -> None:
    """Makes a PutObject of a blob sign the blob's address as its payload hash: the key ends
    with the SHA-256 the store computed to name the blob, and botocore would otherwise hash
    the whole body once more to sign it (a third pass over 64 MB, after the digest and the
    MD5). The server still hashes what it receives: bytes that do not match are refused."""
    from botocore import auth

    class _AddressedPayloadAuth(auth.S3SigV4Auth):
        def payload(self, request: Any) -> str:
            known = request.context.get(_PAYLOAD_SHA256)
            if known and self._should_sha256_sign_payload(request):  # type: ignore[attr-defined]
                return str(known)
            return str(super().payload(request))

    auth.AUTH_TYPE_MAPS.setdefault(_SIGNER, _AddressedPayloadAuth)

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        match = _KEY_TAIL_RE.search(str(params.get("Key", "")))
        # The store's own PUTs only (create-only, with their MD5): a PUT of other bytes under
        # a blob's key (a test damaging one) is signed as botocore signs it.
        if match and params.get("IfNoneMatch") == "*" and params.get("ContentMD5"):
            context[_PAYLOAD_SHA256] = match[2]

    def choose(signature_version: Any, context: dict[str, Any], **_: Any) -> str | None:
        if signature_version in ("s3v4", "v4") and context.get(_PAYLOAD_SHA256):
            return _SIGNER
        return None

    events = client.meta.events
    events.register("before-parameter-build.s3.PutObject", remember)
    events.register_first("choose-signer.s3.PutObject", choose)  # type: ignore[arg-type]


def _code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)


def _is_not_found(exc: BaseException) -> bool:
    code, status = _code(exc)
    return status == 404 or code in ("NoSuchKey", "404", "NotFound")


# From this size on, the MD5 is computed on a thread of its own while the SHA-256 is (hashlib
# releases the GIL): the two passes over a 64 MB blob overlap instead of adding up.
_HASH_APART = 1024 * 1024


def _digests(data: bytes, digest: str | None) -> tuple[str, str]:
    """(SHA-256 hex, Content-MD5) of data; `digest` when the caller has it already."""
    found: list[bytes] = []
    helper = None
    if len(data) >= _HASH_APART and digest is None:
        helper = threading.Thread(
            target=lambda: found.append(hashlib.md5(data, usedforsecurity=False).digest())
        )
        helper.start()
    if digest is None:
        digest = hashlib.sha256(data).hexdigest()
    if helper is not None:
        helper.join()
    else:
        found.append(hashlib.md5(data, usedforsecurity=False).digest())
    return digest, base64.b64encode(found[0]).decode()


class ObjectStore(BlobStore):
    """Blobs as objects of `url` (an ObjectUrl) on the S3 endpoint `client` talks to.

    `concurrency` requests at once for a batch (a put of many blobs, `present`, a listing of
    the 256 fan-outs): one round trip each would otherwise be paid in turn. `clock` is the
    ledger's (written times are on it); default time.time.
    """

    def __init__(
        self,
        url: ObjectUrl | str,
        *,
        client: S3Client | None = None,
        concurrency: int = 8,
        clock: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
        file_mode: int = 0o660,
        dir_mode: int = 0o770,
    ) -> None:
        import time

        self.url = url if isinstance(url, ObjectUrl) else ObjectUrl.parse(url)
        self.concurrency = max(1, concurrency)
        self._client = client
        self._environ = dict(environ or {})
        self.clock = clock or time.time
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> S3Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(environ=self._environ, concurrency=self.concurrency)
        return self._client

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def location(self) -> str:
        return f"{self.url} at {self.endpoint}"

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """fn over items, `concurrency` at a time, results in order; the first error raised."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.concurrency, thread_name_prefix="seer-cas-s3"
                    )
        return list(self._pool.map(fn, items))

    def _failed(self, exc: BaseException, doing: str) -> Exception:
        """The CAS error for a botocore failure while `doing` (a digest never names a secret;
        boto3's messages carry no credential)."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"object store {self.url}"
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            if code in _FULL_CODES or status == 507:
                return DiskFull(f"{where} is out of space ({code or status}) while {doing}")
            if code == "NoSuchBucket":
                return StoreUnavailable(
                    f"{where}: the bucket {self.url.bucket} does not exist (seer init creates it)"
                )
            if code in _REFUSED_CODES or status in (401, 403):
                return StoreUnavailable(
                    f"{where} refused the request ({code or status}) while {doing}: check "
                    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy"
                )
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
                return StoreUnavailable(f"{where} failed ({code or status}) while {doing}")
            return CasError(f"{where} answered {code or status} while {doing}")
        if isinstance(exc, BotoCoreError):
            return StoreUnavailable(f"{where} cannot be reached while {doing}: {exc}")
        if isinstance(exc, OSError):
            return StoreUnavailable(f"{where} cannot be reached while {doing}: {exc}")
        return CasError(f"{where}: {exc} while {doing}")

    # -- the bucket ----------------------------------------------------------------------------

    def ensure_bucket(self) -> bool:
        """Creates the bucket if it is missing; True if it did (what `seer init` calls)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.url.bucket)
            return False
        except ClientError as exc:
            if not _is_not_found(exc):
                raise self._failed(exc, "looking for the bucket") from None
        except BotoCoreError as exc:
            raise self._failed(exc, "looking for the bucket") from None
        region = self.client.meta.region_name
        try:
            if region and region != "us-east-1":
                self.client.create_bucket(
                    Bucket=self.url.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
            else:
                self.client.create_bucket(Bucket=self.url.bucket)
        except ClientError as exc:
            if _code(exc)[0] in ("BucketAlreadyOwnedByYou",):
                return False
            raise self._failed(exc, "creating the bucket") from None
        except BotoCoreError as exc:
            raise self._failed(exc, "creating the bucket") from None
        return True

    def prepare(self) -> str | None:
        made = self.ensure_bucket()
        return f"{self.location()} ({'bucket created' if made else 'bucket found'})"

    # -- writing -----------------------------------------------------------------------------

    def _put_object(self, digest: str, data: bytes, md5: str) -> bool:
        """One create-only PUT; True if it created the object, False if one was there. The
        server checks `md5` (Content-MD5) and the signed SHA-256 against what it received."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.url.bucket,
                Key=self.url.key(digest),
                Body=data,
                ContentMD5=md5,
                ContentLength=len(data),
                IfNoneMatch="*",
                Metadata={WRITTEN: repr(self.clock())},
            )
        except ClientError as exc:
            code, status = _code(exc)
            if status == 412 or code == "PreconditionFailed":
                return False
            if code in _CORRUPT_UPLOAD_CODES:
                raise CorruptUpload(
                    f"object store {self.url} refused blob {digest}: the bytes it received did "
                    f"not match their checksum ({code}); nothing was stored"
                ) from None
            raise
        return True

    def _put_one(self, data: bytes, digest: str | None = None) -> PutResult:
        digest, md5 = _digests(data, digest)
        for attempt in range(_CORRUPT_UPLOAD_TRIES):
            try:
                created = self._put_object(digest, data, md5)
                return PutResult(digest, len(data), created)
            except CorruptUpload:
                if attempt + 1 == _CORRUPT_UPLOAD_TRIES:
                    raise
                log.warning("blob %s arrived damaged at the object store: sent again", digest)
            except CasError:
                raise
            except Exception as exc:
                raise self._failed(exc, f"storing blob {digest}") from None
        raise AssertionError("unreachable")

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        # Each blob hashed on the thread that sends it (hashlib lets go of the GIL): the
        # digests of a batch of large blobs are computed side by side, not all before the
        # first request. Copies within the batch are told apart by their bytes.
        unique = list(dict.fromkeys(items))
        done = dict(zip(unique, self._map(self._put_one, unique), strict=True))
        results: list[PutResult] = []
        reported: set[bytes] = set()
        for data in items:
            result = done[data]
            if data in reported:  # a later copy in the batch: only the first created it
                result = PutResult(result.digest, result.size, created=False)
            reported.add(data)
            results.append(result)
        return results

    def put(self, data: bytes) -> PutResult:
        return self._put_one(data)

    # -- reading -----------------------------------------------------------------------------

    def open(self, digest: str) -> BlobReader:
        from botocore.exceptions import ClientError

        validate_digest(digest)
        try:
            found = self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(digest))
        except ClientError as exc:
            if _is_not_found(exc):
                raise BlobNotFound(f"no blob {digest}") from None
            raise self._failed(exc, f"reading blob {digest}") from None
        except Exception as exc:
            raise self._failed(exc, f"reading blob {digest}") from None
        return _Body(found["Body"], self, digest)

    def _head(self, digest: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        validate_digest(digest)
        try:
            return dict(self.client.head_object(Bucket=self.url.bucket, Key=self.url.key(digest)))
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise self._failed(exc, f"looking for blob {digest}") from None
        except Exception as exc:
            raise self._failed(exc, f"looking for blob {digest}") from None

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def present(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        found = self._map(self._head, wanted)
        return {d for d, head in zip(wanted, found, strict=True) if head is not None}

    def stats(self, digests: Iterable[str]) -> dict[str, BlobStat]:
        wanted = sorted(set(digests))
        found = self._map(self.stat, wanted)
        return {d: st for d, st in zip(wanted, found, strict=True) if st is not None}

    def stat(self, digest: str) -> BlobStat | None:
        head = self._head(digest)
        if head is None:
            return None
        written = (head.get("Metadata") or {}).get(WRITTEN)
        try:
            modified = float(written) if written else head["LastModified"].timestamp()
        except ValueError:
            modified = head["LastModified"].timestamp()
        return BlobStat(int(head["ContentLength"]), modified)

    # -- listing -----------------------------------------------------------------------------

    def _list(self, fanout: str) -> list[ListedBlob]:
        listing = self.url.listing_prefix(fanout)
        skip = len(listing) - 3  # keep "ab/" + digest
        found: list[ListedBlob] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.url.bucket, Prefix=listing
            )
            for page in pages:
                for entry in page.get("Contents", ()):
                    match = _KEY_TAIL_RE.fullmatch(entry["Key"][skip:])
                    if match and match[2].startswith(match[1]):
                        found.append(ListedBlob(match[2], int(entry["Size"])))
        except CasError:
            raise
        except Exception as exc:
            raise self._failed(exc, f"listing {listing}") from None
        return found  # S3 lists keys in order: digest order within a fan-out

    def _list_all_at_once(self) -> list[ListedBlob] | None:
        """Every blob from one LIST of the whole prefix, if a page holds them all (a store
        of up to 1,000 blobs: one request, not 256); None for a larger one."""
        listing = f"{self.url.prefix}/" if self.url.prefix else ""
        try:
            page = self.client.list_objects_v2(Bucket=self.url.bucket, Prefix=listing, MaxKeys=1000)
        except Exception as exc:
            raise self._failed(exc, f"listing {listing or '/'}") from None
        if page.get("IsTruncated"):
            return None
        found = []
        for entry in page.get("Contents", ()):
            match = _KEY_TAIL_RE.fullmatch(entry["Key"][len(listing) :])
            if match and match[2].startswith(match[1]):
                found.append(ListedBlob(match[2], int(entry["Size"])))
        return found  # in key order: digest order

    def iter_blobs(self, prefix: str | None = None) -> Iterator[ListedBlob]:
        if prefix is None:
            small = self._list_all_at_once()
            if small is not None:
                yield from small
                return
        for fanout in PREFIXES if prefix is None else (prefix,):
            yield from self._list(fanout)

    def sizes(self, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
        prefixes = list(prefixes)
        if len(prefixes) > 1:
            small = self._list_all_at_once()
            if small is not None:
                wanted = set(prefixes)
                return {d: size for d, size in small if d[:2] in wanted}
        found: dict[str, int] = {}
        for listed in self._map(self._list, prefixes):
            found.update(listed)
        return found

    # -- removal -----------------------------------------------------------------------------

    def remove(self, digest: str) -> bool:
        # S3's DELETE answers 204 whether or not there was an object: asked first.
        if self._head(digest) is None:
            return False
        try:
            self.client.delete_object(Bucket=self.url.bucket, Key=self.url.key(digest))
        except Exception as exc:
            raise self._failed(exc, f"removing blob {digest}") from None
        return True

    def remove_many(self, digests: Iterable[str]) -> int:
        return sum(self._map(self.remove, sorted(set(digests))))

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class _Body:
    """A GET's body as a BlobReader; a connection lost mid-read is StoreUnavailable."""

    def __init__(self, body: Any, store: ObjectStore, digest: str) -> None:
        self._body = body
        self._store = store
        self._digest = digest

    def read(self, size: int = -1, /) -> bytes:
        try:
            return bytes(self._body.read(None if size < 0 else size))
        except Exception as exc:
            raise self._store._failed(exc, f"reading blob {self._digest}") from None

    def readinto(self, buffer: memoryview, /) -> int | None:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None:
        self.close()
