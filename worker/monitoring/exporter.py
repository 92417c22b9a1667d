"""The current metrics for Prometheus (the task card recommends Prometheus and Grafana): a
prometheus_client collector over the ledger's counters and one look at the queue's storage, and
a small loopback server to scrape it, in the classic text format or OpenMetrics, as the scraper
asks."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.registry import Collector, CollectorRegistry

from worker.alerts import alerting, outbox
from worker.doorbells import QueueProbe
from worker.fleet import consumers, control
from worker.memory import compaction
from worker.monitoring import metrics, rules, status
from worker.monitoring.wiring import WiredWithQueue


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=value)


def _gauges(name: str, help: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


# How each persistence keeps the doorbells over a restart of the storage: all of them (an
# append-only file, a database), or not all (snapshots only, nothing).
_KEEPS_EVERY_DOORBELL = {"aof": 1, "aof+rdb": 1, "disk": 1, "rdb": 0, "none": 0}


def queue_families(probe: QueueProbe) -> list[Metric]:
    """The queue's storage: up or not (labelled with its backend and its address, which is
    Settings.queue_address: never a password), and while it answers its round trip, both
    queues' doorbells and whether a restart keeps them. A figure the probe could not tell is
    left out rather than given as 0."""
    up = GaugeMetricFamily(
        "seer_queue_up",
        "1 if the queue's storage answers (while it does not, parcels wait in the ledger).",
        labels=["backend", "address"],
    )
    up.add_metric([probe.backend, probe.address], 1 if probe.reachable else 0)
    found: list[Metric] = [up]
    if probe.reachable and probe.latency is not None:
        found.append(
            _gauge(
                "seer_queue_latency_seconds",
                "One round trip to the queue's storage.",
                probe.latency,
            )
        )
    if probe.depths:
        found.append(
            _gauges(
                "seer_queue_doorbells",
                "Doorbells waiting in the queue's storage, by queue (the ledger is the record: "
                "seer_queue_depth counts the parcels).",
                "queue",
                dict(probe.depths),
            )
        )
    keeps = _KEEPS_EVERY_DOORBELL.get(probe.persistence or "")
    if keeps is not None:
        persistent = GaugeMetricFamily(
            "seer_queue_persistent",
            "1 if a restart of the queue's storage keeps every doorbell (0: lost doorbells "
            "delay delivery, never lose a parcel).",
            labels=["persistence"],
        )
        persistent.add_metric([str(probe.persistence)], keeps)
        found.append(persistent)
    return found


def host_families(fleet: tuple[consumers.HostConsumer, ...], since: float) -> list[Metric]:
    """Each host's consumers by queue and host: running or not, how long since it was heard
    from, the CPU and memory it measured of itself, its restarts (not on purpose) since
    `since` (SEER_RESTART_ALERT_WINDOW ago). One series per (queue, host): a host with two
    processes of a queue shows its busiest."""
    labels = ["queue", "host"]
    running = GaugeMetricFamily(
        "seer_host_consumer_running",
        "1 if a consumer of the queue runs on the host (0: stale, gone, or stopped on purpose).",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "seer_host_consumer_heartbeat_age_seconds",
        "Seconds since the host's consumer of the queue was last heard from.",
        labels=labels,
    )
    cpu = GaugeMetricFamily(
        "seer_host_consumer_cpu_percent",
        "CPU the consumer used between its last two heartbeats, as it measured itself.",
        labels=labels,
    )
    rss = GaugeMetricFamily(
        "seer_host_consumer_memory_bytes",
        "Resident memory of the consumer at its last heartbeat.",
        labels=labels,
    )
    recent = GaugeMetricFamily(
        "seer_host_consumer_restarts_recent",
        "Restarts not on purpose within SEER_RESTART_ALERT_WINDOW (consumer_restarts).",
        labels=labels,
    )
    best: dict[tuple[str, str], consumers.HostConsumer] = {}
    for c in fleet:
        key = (c.queue, c.host)
        if key not in best or (c.running, c.cpu_percent or 0.0) > (
            best[key].running,
            best[key].cpu_percent or 0.0,
        ):
            best[key] = c
    for (queue, host), c in sorted(best.items()):
        running.add_metric([queue, host], 1 if c.running else 0)
        if c.heartbeat_age is not None:
            age.add_metric([queue, host], round(c.heartbeat_age, 3))
        if c.running and c.cpu_percent is not None:
            cpu.add_metric([queue, host], c.cpu_percent)
        if c.running and c.rss is not None:
            rss.add_metric([queue, host], c.rss)
        recent.add_metric([queue, host], c.restarts_since(since))
    return [running, age, cpu, rss, recent]


def families(runtime: WiredWithQueue, now: float | None = None) -> list[Metric]:
    """Every figure from counters and indexes, and one look at the queue's storage (its
    depths counted: LLEN on Redis, a count on a database, once per scrape at most a second):
    cheap enough to scrape every few seconds. All is read before anything is returned, so a
    ledger that cannot be read fails the whole; a queue that does not answer is
    seer_queue_up 0."""
    now = runtime.ledger.now() if now is None else now
    ledger = runtime.ledger
    counts = metrics.counters(ledger)
    settings = runtime.settings
    warning, critical = rules.cas_lines(settings)
    growth = metrics.growth_per_day(ledger, now)
    live = consumers.consumers(
        ledger, host_id=settings.host_id, timeout=settings.heartbeat_timeout, now=now
    )
    levels = {s.rule: s.level for s in alerting.states(ledger).values()}
    fleet = consumers.fleet(
        ledger, host_id=settings.host_id, timeout=settings.heartbeat_timeout, now=now
    )
    probe = status.queue_probe(runtime, depths=True)
    return [
        _gauge("seer_queue_depth", "Parcels queued.", counts.get("parcels_queued", 0)),
        _gauge(
            "seer_queue_in_flight", "Parcels being delivered.", counts.get("parcels_in_flight", 0)
        ),
        _gauge(
            "seer_queue_oldest_age_seconds",
            "Age of the oldest queued parcel.",
            metrics.oldest_queued_age(ledger, now) or 0,
        ),
        _gauge(
            "seer_queue_paused",
            "1 while the postmaster queue is paused.",
            1 if control.is_paused(ledger) else 0,
        ),
        _gauges(
            "seer_parcels",
            "Parcels in the ledger by state.",
            "state",
            {
                s: counts.get(f"parcels_{s}", 0)
                for s in ("queued", "in_flight", "delivered", "failed")
            },
        ),
        # The family is named without `_total`: prometheus_client adds it to the sample (and,
        # in the classic format, to HELP and TYPE), so the exposed name is unchanged.
        CounterMetricFamily(
            "seer_parcels_delivered", "Parcels delivered.", value=counts.get("delivered_total", 0)
        ),
        CounterMetricFamily(
            "seer_parcels_failed",
            "Parcels that landed in the failed store.",
            value=counts.get("failed_total", 0),
        ),
        _gauge(
            "seer_parcels_failed_last_hour",
            "Parcels failed in the last hour.",
            metrics.failed_since(ledger, now - 3600),
        ),
        _gauge("seer_cas_bytes", "Bytes in the CAS.", counts.get("cas_bytes", 0)),
        _gauge("seer_cas_blobs", "Blobs in the CAS.", counts.get("cas_blobs", 0)),
        _gauge("seer_cas_quota_bytes", "ORCHESTRATION_CAS_MAX_SIZE.", settings.cas_max_size),
        _gauge("seer_cas_warning_bytes", "CAS warning line.", warning),
        _gauge("seer_cas_critical_bytes", "CAS critical line.", critical),
        _gauge(
            "seer_cas_growth_bytes_per_day",
            "CAS growth over the last day (NaN if too little history).",
            float("nan") if growth is None else growth,
        ),
        _gauges(
            "seer_consumer_up",
            "1 if a consumer of the queue is alive.",
            "queue",
            {
                q: 1 if any(c.queue == q and consumers.is_up(c) for c in live) else 0
                for q in (settings.postmaster_queue, settings.scheduler_queue)
            },
        ),
        *host_families(fleet, now - settings.restart_alert_window),
        _gauge(
            "seer_compaction_failures_24h",
            "Failed memory compactions in 24 hours.",
            compaction.failures_per_day(ledger, now),
        ),
        _gauges(
            "seer_alert_level",
            "Alert rule level: 0 ok, 1 warning, 2 critical.",
            "rule",
            {r: rules.LEVELS.index(levels.get(r, "ok")) for r in rules.RULES},
        ),
        _gauge(
            "seer_alert_outbox_pending",
            "Notifications waiting to be sent.",
            outbox.pending_count(ledger),
        ),
        *queue_families(probe),
    ]


class SeerCollector(Collector):
    """Seer's metrics as a prometheus_client collector, read afresh on every collect."""

    def __init__(self, runtime: WiredWithQueue, now: float | None = None) -> None:
        self.runtime, self.now = runtime, now

    def collect(self) -> Iterator[Metric]:
        yield from families(self.runtime, self.now)


def registry(collector: Collector) -> CollectorRegistry:
    """A registry of this collector alone: not prometheus_client's global one, so neither its
    process and platform collectors nor anything an imported library registers is exposed."""
    found = CollectorRegistry(auto_describe=False)
    found.register(collector)
    return found


def exact_integers(text: str) -> str:
    """prometheus_client writes every value as a Python float, 7 as "7.0" and a 100 GiB quota
    as "1.073741824e+11". Both read back the same, but people and raw dashboard views read the
    integer, as this exporter always wrote it: integral values go back to integer form."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")  # no timestamps: the value is the last field
        number = float(value)
        if number.is_integer():
            lines[i] = f"{head} {int(number)}"
    return "\n".join(lines)


def encode(collector: Collector, accept: str = "") -> tuple[bytes, str]:
    """The exposition the Accept header asks for (OpenMetrics or the classic text format, as
    prometheus_client chooses), and its content type."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry(collector))
    if content_type.startswith(OPENMETRICS.split(";")[0]):
        return body, content_type
    return exact_integers(body.decode("utf-8")).encode("utf-8"), content_type


def render(runtime: WiredWithQueue, now: float | None = None) -> str:
    """`seer metrics`: the classic text format."""
    return exact_integers(generate_latest(registry(SeerCollector(runtime, now))).decode("utf-8"))


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


class _Cached(Collector):
    """A collector read at most once per CACHE_SECONDS, whatever the number of scrapes; `release`
    runs after each read in the reading thread (the ledger's per-thread connection is closed
    there)."""

    def __init__(self, source: Collector, release: Callable[[], None] | None) -> None:
        self.source, self.release = source, release
        self.lock = threading.Lock()
        self.families: list[Metric] | None = None
        self.at = 0.0

    def collect(self) -> list[Metric]:
        with self.lock:
            now = time.monotonic()
            if self.families is None or now - self.at >= CACHE_SECONDS:
                try:
                    self.families = list(self.source.collect())
                finally:
                    if self.release is not None:
                        self.release()
                self.at = now
            return self.families


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
    collector: Collector,
    ready: threading.Event | None = None,
    release: Callable[[], None] | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> http.server.ThreadingHTTPServer:
    """Serves GET /metrics; returns the server (call serve_forever, or shutdown)."""
    cached = _Cached(collector, release)

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served")
                return
            try:
                body, content_type = encode(cached, self.headers.get("Accept", ""))
            except Exception as exc:  # the scrape fails, the exporter stays up
                self.send_error(503, f"cannot read the ledger: {type(exc).__name__}")
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every 15 s would flood the terminal

    server = _Server((host, port), Handler, max_connections)
    if ready is not None:
        ready.set()
    return server
