"""Would a multipart upload meet issue 16's 64 MB goal? A trial, not the store's code.

    .venv/bin/python bench/s3_multipart.py [--rounds 4] [--size-mb 64] [--part-mb 8] [--threads 4]

`ObjectStore.put` of a 64 MB blob reaches 0.87-0.90 of boto3's plain `put_object` (goal 0.9):
it computes the Content-MD5 before the body can go (121 ms for 64 MB here, against the 52 ms
of the SHA-256 that both sides compute). A multipart upload could overlap each part's MD5 with
the transfer of the others. On a private Ceph RGW (tests/rgw_server.py), interleaved, for
distinct random blobs:

- baseline: boto3's `put_object` (signed payload, no checksum but what the API requires);
- ours: `ObjectStore.put` (signed with the address, Content-MD5, If-None-Match: *);
- multipart: the blob's SHA-256 (its key), CreateMultipartUpload, the parts `--threads` at
  a time, each with its Content-MD5 and a signed payload, CompleteMultipartUpload with
  If-None-Match: *.

Then it completes a second upload of an existing key with If-None-Match: * and says whether
RGW refused it: a create-only multipart put needs that.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--part-mb", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from tests.rgw_server import PrivateRgw
    from worker.cas.objects import ObjectStore, make_client

    tmp = Path(tempfile.mkdtemp(prefix="seer-bench-mp-"))
    try:
        with PrivateRgw(tmp) as server:
            os.environ.update(server.env())
            bucket = "seer-bench-multipart"
            plain = boto3.session.Session().client(
                "s3",
                config=Config(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    max_pool_connections=args.threads + 2,
                    s3={"addressing_style": "path"},
                ),
            )
            plain.create_bucket(Bucket=bucket)
            client = make_client(concurrency=args.threads)
            store = ObjectStore(f"s3://{bucket}/cas", client=client)
            pool = concurrent.futures.ThreadPoolExecutor(args.threads)
            part = args.part_mb * MB

            def multipart(data: bytes, prefix: str) -> bool:
                """True if the upload completed, False if the server refused the complete."""
                key = f"{prefix}/{hashlib.sha256(data).hexdigest()}"
                upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                view = memoryview(data)

                def send(i: int) -> dict:
                    chunk = bytes(view[i * part : (i + 1) * part])
                    md5 = hashlib.md5(chunk, usedforsecurity=False).digest()
                    done = client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload,
                        PartNumber=i + 1,
                        Body=chunk,
                        ContentMD5=base64.b64encode(md5).decode(),
                    )
                    return {"PartNumber": i + 1, "ETag": done["ETag"]}

                parts = list(pool.map(send, range(-(-len(data) // part))))
                try:
                    client.complete_multipart_upload(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                        IfNoneMatch="*",
                    )
                except ClientError:
                    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
                    return False
                return True

            print(
                f"multipart trial: {server.endpoint}, {args.size_mb} MB blobs, "
                f"{args.part_mb} MB parts, {args.threads} threads, boto3 {boto3.__version__}"
            )
            warm = os.urandom(args.part_mb * 2 * MB)
            plain.put_object(Bucket=bucket, Key="warm", Body=warm)
            store.put(warm)
            multipart(warm, "warm")
            spent = {"baseline": 0.0, "ours": 0.0, "multipart": 0.0}
            last = b""
            for i in range(args.rounds):
                data = os.urandom(args.size_mb * MB)
                for name, put in (
                    (
                        "baseline",
                        lambda d, i=i: plain.put_object(Bucket=bucket, Key=f"p{i}", Body=d),
                    ),
                    ("ours", store.put),
                    ("multipart", lambda d: multipart(d, "mp")),
                ):
                    # The same bytes for each, a new object for each: the last byte differs.
                    data = data[:-1] + bytes([data[-1] ^ 1])
                    t0 = time.perf_counter()
                    put(data)
                    spent[name] += time.perf_counter() - t0
                last = data
                print(
                    f"  round {i + 1}: "
                    + " | ".join(f"{name} {s:6.3f}s" for name, s in spent.items())
                    + " (totals)"
                )
            total = args.rounds * args.size_mb
            for name, seconds in spent.items():
                ratio = spent["baseline"] / seconds
                print(f"{name:>10}: {total / seconds:7.1f} MB/s  ratio to baseline {ratio:.2f}")
            refused = not multipart(last, "mp")
            print(
                "a second CompleteMultipartUpload of an existing key with If-None-Match: *: "
                + ("refused (create-only holds)" if refused else "ACCEPTED (not create-only)")
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
