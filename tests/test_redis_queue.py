"""The queue on Redis: every REDIS_URL form reaches a real server, the keys are the queues'
names exactly (deployments share one Redis), and bad settings or a foreign key are one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.redis_server import PrivateRedis
from worker.queue import QueueError
from worker.runtime import Runtime
from worker.settings import SettingsError, load_settings

pytestmark = pytest.mark.backends("redis")


def open_on(monkeypatch: pytest.MonkeyPatch, cli, url: str, **extra: str) -> Runtime:
    monkeypatch.setenv("QUEUE_CONNECTION", "redis")
    monkeypatch.setenv("REDIS_URL", url)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    result = cli("init")
    assert result.code == 0, result.err
    return Runtime.open()


def ring_and_count(runtime: Runtime) -> tuple[int, int]:
    runtime.queues.ring(["p1", "p2", "p3"])
    return runtime.queues.pending_count(), runtime.queues.scheduler_pending_count()


def test_a_password_url_rings_into_keys_named_after_the_queue(env, cli, monkeypatch, tmp_path):
    with PrivateRedis(tmp_path, extra=("--requirepass", "s3cret-pw")) as server:
        url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/2"
        runtime = open_on(monkeypatch, cli, url, POSTMASTER_QUEUE="seer-a.prod")
        assert ring_and_count(runtime) == (3, 0)
        admin = server.client(db=2, password="s3cret-pw")
        # The name as configured: Huey alone would strip '-' and '.' ("seeraprod").
        assert admin.llen("huey.redis.seer-a.prod") == 3
        probe = runtime.queues.probe()
        assert probe.reachable and probe.backend == "redis"
        assert probe.address == f"redis://127.0.0.1:{server.port}"
        assert probe.depths == {"seer-a.prod": 3, "scheduler": 0}
        assert probe.persistence == "none" and "persists nothing" in probe.warnings[0]
        assert "s3cret-pw" not in repr(probe)
        runtime.close()
        # A wrong password: unreachable, in one line that shows neither password.
        monkeypatch.setenv("REDIS_URL", f"redis://:wrong-pw@127.0.0.1:{server.port}/2")
        refused = Runtime.open()
        probe = refused.queues.probe()
        assert not probe.reachable and "refused the password of REDIS_URL" in (probe.error or "")
        assert "wrong-pw" not in repr(probe) and "s3cret-pw" not in repr(probe)
        refused.close()


def test_two_deployments_share_one_redis_by_their_queue_names(env, cli, monkeypatch, tmp_path):
    with PrivateRedis(tmp_path) as server:
        first = open_on(monkeypatch, cli, server.url(), POSTMASTER_QUEUE="seer-a")
        first.queues.ring(["x"])
        monkeypatch.setenv("SEER_STORAGE_PATH", str(tmp_path / "other"))
        second = open_on(
            monkeypatch, cli, server.url(), POSTMASTER_QUEUE="seera", SEER_SCHEDULER_QUEUE="sch2"
        )
        second.queues.ring(["y", "z"])
        assert first.queues.pending_count() == 1
        assert second.queues.pending_count() == 2
        first.close()
        second.close()


def test_a_unix_socket_url_reaches_the_server(env, cli, monkeypatch, tmp_path):
    socket = tmp_path / "redis.sock"
    with PrivateRedis(tmp_path, extra=("--unixsocket", str(socket), "--unixsocketperm", "700")):
        runtime = open_on(monkeypatch, cli, f"unix://{socket}?db=3")
        assert ring_and_count(runtime) == (3, 0)
        assert runtime.queues.probe().address == f"unix://{socket}"
        runtime.close()


def make_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl, as an operator
    would)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the TLS test's certificates"
    names = ("ca.key", "ca.crt", "r.key", "r.csr", "r.crt")
    ca_key, ca, key, csr, cert = (where / name for name in names)
    ext = where / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run(
        *["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca"],
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run(
        *["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"],
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        *["-CAcreateserial", "-days", "2"],
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def test_a_rediss_url_speaks_tls_and_checks_the_certificate(env, cli, monkeypatch, tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    plain = PrivateRedis(tmp_path)  # only for a free port and its directory
    tls_port = plain.port
    tls = (
        *("--port", "0", "--tls-port", str(tls_port)),
        *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"),
    )
    server = PrivateRedis(tmp_path, extra=tls)
    server.port = tls_port
    # PrivateRedis waits for a plain-text PING, which a TLS-only server does not answer.
    server.client = lambda db=0, timeout=5.0: _tls_client(tls_port, ca, db, timeout)  # type: ignore[method-assign]
    with server:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        runtime = open_on(monkeypatch, cli, url)
        assert ring_and_count(runtime) == (3, 0)
        assert runtime.queues.probe().address == f"rediss://127.0.0.1:{tls_port}"
        runtime.close()
        # Without the CA the server's certificate is refused: unreachable, said in one line.
        monkeypatch.setenv("REDIS_URL", f"rediss://127.0.0.1:{tls_port}/0")
        untrusted = Runtime.open()
        probe = untrusted.queues.probe()
        assert not probe.reachable and "certificate" in (probe.error or "")
        untrusted.close()


def _tls_client(port: int, ca: Path, db: int, timeout: float):
    import redis

    return redis.Redis(
        host="127.0.0.1",
        port=port,
        db=db,
        ssl=True,
        ssl_ca_certs=str(ca),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:6379/zero",
        "unix://relative.sock",
        "redis://:hunter22@127.0.0.1:99999/0",
    ],
)
def test_a_bad_redis_url_is_one_line_that_hides_it(url, env):
    with pytest.raises(SettingsError) as refused:
        load_settings({"QUEUE_CONNECTION": "redis", "REDIS_URL": url})
    text = str(refused.value)
    assert text.startswith("REDIS_URL=(hidden) is not allowed: expected a redis://")
    assert "\n" not in text and "hunter22" not in text


def test_redis_without_a_url_is_refused_and_the_cli_says_so(env, cli, monkeypatch):
    monkeypatch.setenv("QUEUE_CONNECTION", "redis")
    monkeypatch.delenv("REDIS_URL")
    result = cli("status")
    assert result.code != 0 and "Traceback" not in result.err
    assert "QUEUE_CONNECTION='redis' is not allowed without REDIS_URL" in result.err


def test_a_key_of_another_type_is_a_queue_error_not_a_traceback(env, cli, monkeypatch, tmp_path):
    with PrivateRedis(tmp_path) as server:
        runtime = open_on(monkeypatch, cli, server.url())
        # What PriorityRedisHuey would have left: the queue's key as a sorted set.
        server.client().zadd("huey.redis.postmaster", {"x": 1})
        with pytest.raises(QueueError) as refused:
            runtime.queues.pending_count()
        assert "refused a command: WRONGTYPE" in str(refused.value)
        probe = runtime.queues.probe()
        assert not probe.reachable and "WRONGTYPE" in (probe.error or "")
        sent = cli("send-test-parcel")
        assert sent.code == 0 and "WRONGTYPE" in sent.err and "Traceback" not in sent.err
        runtime.close()
