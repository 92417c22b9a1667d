"""The current metrics in Prometheus' text exposition format, and a small loopback server for
Prometheus to scrape (the task card recommends Prometheus and Grafana)."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Callable

from worker.alerts import alerting, outbox
from worker.fleet import consumers, control
from worker.memory import compaction
from worker.monitoring import metrics, rules
from worker.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Exactly: an integer in full (a 100 GiB quota is 107374182400, not 1.07374e+11), a float
    with every digit it has (repr is the shortest text that reads back the same)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            shown = f"{{{label_text}}}" if label_text else ""
            self.lines.append(f"{name}{shown} {_number(value)}")

    def one(self, name: str, kind: str, help: str, value: float) -> None:
        self.metric(name, kind, help, [({}, value)])


def render(runtime: Runtime, now: float | None = None) -> str:
    """Every figure from counters and indexes: cheap enough to scrape every few seconds."""
    now = time.time() if now is None else now
    ledger = runtime.ledger
    counts = metrics.counters(ledger)
    settings = runtime.settings
    out = _Text()
    out.one("seer_queue_depth", "gauge", "Parcels queued.", counts.get("parcels_queued", 0))
    out.one(
        "seer_queue_in_flight",
        "gauge",
        "Parcels being delivered.",
        counts.get("parcels_in_flight", 0),
    )
    age = metrics.oldest_queued_age(ledger, now)
    out.one("seer_queue_oldest_age_seconds", "gauge", "Age of the oldest queued parcel.", age or 0)
    out.one(
        "seer_queue_paused",
        "gauge",
        "1 while the postmaster queue is paused.",
        1 if control.is_paused(ledger) else 0,
    )
    out.metric(
        "seer_parcels",
        "gauge",
        "Parcels in the ledger by state.",
        [
            ({"state": s}, counts.get(f"parcels_{s}", 0))
            for s in ("queued", "in_flight", "delivered", "failed")
        ],
    )
    out.one(
        "seer_parcels_delivered_total",
        "counter",
        "Parcels delivered.",
        counts.get("delivered_total", 0),
    )
    out.one(
        "seer_parcels_failed_total",
        "counter",
        "Parcels that landed in the failed store.",
        counts.get("failed_total", 0),
    )
    out.one(
        "seer_parcels_failed_last_hour",
        "gauge",
        "Parcels failed in the last hour.",
        metrics.failed_since(ledger, now - 3600),
    )
    warning, critical = rules.cas_lines(settings)
    out.one("seer_cas_bytes", "gauge", "Bytes in the CAS.", counts.get("cas_bytes", 0))
    out.one("seer_cas_blobs", "gauge", "Blobs in the CAS.", counts.get("cas_blobs", 0))
    out.one("seer_cas_quota_bytes", "gauge", "ORCHESTRATION_CAS_MAX_SIZE.", settings.cas_max_size)
    out.one("seer_cas_warning_bytes", "gauge", "CAS warning line.", warning)
    out.one("seer_cas_critical_bytes", "gauge", "CAS critical line.", critical)
    growth = metrics.growth_per_day(ledger, now)
    out.one(
        "seer_cas_growth_bytes_per_day",
        "gauge",
        "CAS growth over the last day (NaN if too little history).",
        float("nan") if growth is None else growth,
    )
    live = consumers.consumers(ledger)
    out.metric(
        "seer_consumer_up",
        "gauge",
        "1 if a consumer of the queue is alive.",
        [
            ({"queue": q}, 1 if any(c.queue == q and consumers.is_up(c) for c in live) else 0)
            for q in (settings.postmaster_queue, settings.scheduler_queue)
        ],
    )
    out.one(
        "seer_compaction_failures_24h",
        "gauge",
        "Failed memory compactions in 24 hours.",
        compaction.failures_per_day(ledger, now),
    )
    levels = {s.rule: s.level for s in alerting.states(ledger).values()}
    out.metric(
        "seer_alert_level",
        "gauge",
        "Alert rule level: 0 ok, 1 warning, 2 critical.",
        [({"rule": r}, rules.LEVELS.index(levels.get(r, "ok"))) for r in rules.RULES],
    )
    out.one(
        "seer_alert_outbox_pending",
        "gauge",
        "Notifications waiting to be sent.",
        outbox.pending_count(ledger),
    )
    return "\n".join(out.lines) + "\n"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Prometheus scrapes every 15 s or so: a second-old answer is as good as a new one, and many
# scrapers at once cost one render.
CACHE_SECONDS = 1.0
# A request line and headers must arrive within this: an idle half-request holds no thread.
REQUEST_TIMEOUT = 5.0
# Connections served at once; more are closed at accept, so a flood cannot starve a scrape
# for long nor exhaust file descriptors.
MAX_CONNECTIONS = 16


class _Cached:
    """One rendering shared by every scrape within CACHE_SECONDS; `release` runs after each
    render in the rendering thread (the ledger's per-thread connection is closed there)."""

    def __init__(self, make: Callable[[], str], release: Callable[[], None] | None) -> None:
        self.make, self.release = make, release
        self.lock = threading.Lock()
        self.text: str | None = None
        self.at = 0.0

    def get(self) -> str:
        with self.lock:
            now = time.monotonic()
            if self.text is None or now - self.at >= CACHE_SECONDS:
                try:
                    self.text = self.make()
                finally:
                    if self.release is not None:
                        self.release()
                self.at = now
            return self.text


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # A burst of scrapers queues in the kernel rather than being refused.
    request_queue_size = 64

    def __init__(self, address, handler, max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the limit: closed at once
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(
    host: str,
    port: int,
    make_text: Callable[[], str],
    ready: threading.Event | None = None,
    release: Callable[[], None] | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> http.server.ThreadingHTTPServer:
    """Serves GET /metrics; returns the server (call serve_forever, or shutdown)."""
    cached = _Cached(make_text, release)

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served")
                return
            try:
                body = cached.get().encode("utf-8")
            except Exception as exc:  # the scrape fails, the exporter stays up
                self.send_error(503, f"cannot read the ledger: {type(exc).__name__}")
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass  # a scrape every 15 s would flood the terminal

    server = _Server((host, port), Handler, max_connections)
    if ready is not None:
        ready.set()
    return server
