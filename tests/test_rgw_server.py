"""The private Ceph RGW of tests/rgw_server.py: it answers signed S3 requests as RGW does (a
conditional PUT, a Content-MD5 that does not match), keeps what it acknowledged across a crash
of radosgw or of the OSD, and leaves no daemon behind, even when its start fails.

One cluster serves the module (a start takes ~5 s); the crash tests leave it running again."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.rgw_server import PrivateRgw


def daemons_of(rgw: PrivateRgw) -> list[int]:
    """The processes started with this cluster's config, from /proc: not `kill -0`, which a
    SIGKILLed daemon still answers for a while here."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(rgw.conf).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRgw]:
    with PrivateRgw(tmp_path_factory.mktemp("rgw")) as rgw:
        yield rgw
    assert daemons_of(rgw) == [], "a daemon outlived stop()"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_a_signed_put_and_get_and_the_standard_variables(
    server: PrivateRgw, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.endpoint == f"http://127.0.0.1:{server.rgw_port}"
    bucket = server.make_bucket()
    server.client().put_object(Bucket=bucket, Key="a/b", Body=b"hello")
    # A client of boto3's own, from the variables alone (as the CAS makes one).
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    s3 = boto3.session.Session().client("s3", config=Config(s3={"addressing_style": "path"}))
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"hello"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_second_put_if_none_match_is_refused(server: PrivateRgw) -> None:
    s3, bucket = server.client(), server.make_bucket()
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_of(refused) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_a_wrong_content_md5_is_refused(server: PrivateRgw) -> None:
    s3, bucket = server.client(), server.make_bucket()
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentMD5=wrong)
    assert error_of(refused) == (400, "BadDigest")
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(missing)[0] == 404


def test_a_crash_of_radosgw_keeps_the_objects_and_the_port(server: PrivateRgw) -> None:
    s3, bucket = server.client(), server.make_bucket()
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    endpoint = server.endpoint
    server.kill_radosgw()
    with pytest.raises(EndpointConnectionError):
        server.client(max_attempts=1).list_buckets()
    server.start_radosgw()
    assert server.endpoint == endpoint
    # The client made before the crash works again: same port.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


def test_a_crash_of_the_osd_keeps_what_it_acknowledged(server: PrivateRgw) -> None:
    s3, bucket = server.client(), server.make_bucket()
    big = os.urandom(5 * 1024 * 1024 + 1)  # more than one RADOS object of radosgw's
    s3.put_object(Bucket=bucket, Key="small", Body=b"kept")
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    server.kill_osd()
    server.start_osd()
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"kept"
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    s3.put_object(Bucket=bucket, Key="after", Body=b"new")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"new"


def test_a_failed_start_says_why_and_leaves_no_daemon(tmp_path: Path) -> None:
    rgw = PrivateRgw(tmp_path)
    with socket.socket() as taken:
        # Someone else listens on the port radosgw was to have.
        taken.bind(("127.0.0.1", rgw.rgw_port))
        taken.listen()
        with pytest.raises(RuntimeError) as failed:
            rgw.start()
    assert "radosgw" in str(failed.value)
    assert "client.rgw.log" in str(failed.value)  # the end of its log
    assert daemons_of(rgw) == []


def test_without_the_binaries_it_fails_and_never_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AssertionError, match=r"ceph-mon.*Debian packages"):
        PrivateRgw(tmp_path)
