"""`seer monitor-storage`, `seer alerts` and `seer metrics`: storage monitoring and alerting."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    AddCommand,
    ExitCode,
    Failure,
    Parser,
    UserError,
    large_blobs_place,
    open_runtime,
    positive_int,
    warn,
)
from worker.monitoring.status import Health


def cmd_monitor_storage(args: argparse.Namespace) -> int:
    from worker.alerts import outbox
    from worker.monitoring import monitor

    runtime = open_runtime()
    report = monitor.storage_report(runtime)
    if args.json:
        result: dict[str, Any] = {"report": report.as_dict()}
    else:
        growth = output.rate(report.growth_per_day)
        print(f"storage    {runtime.store.location()}")
        blobs = output.counted(report.cas_blobs, "blob")
        print(f"size       {output.size(report.cas_bytes)} in {blobs}")
        print(
            f"where      {output.size(report.ledger_bytes)} in "
            f"{output.counted(report.ledger_blobs, 'blob')} "
            f"in the ledger (up to {output.size(runtime.settings.cas_small_blob_size)} each), "
            f"the rest in {large_blobs_place(runtime.settings)}"
        )
        print(
            f"quota      {output.size(report.quota)}: {report.percent:.1f}% used "
            f"(warning above {output.size(report.warning_bytes)}, critical above "
            f"{output.size(report.critical_bytes)})"
        )
        full = (
            f", quota reached {output.quota_eta(report.days_to_quota * 86400)}"
            if report.days_to_quota is not None
            else ""
        )
        print(f"growth     {growth}{full}")
        print(f"level      {report.level.upper()}: {report.summary}")
    if args.simulate_high_usage:
        if args.dry_run:
            note = None
            line = "simulated high usage: a critical alert WOULD be sent (dry run: nothing sent)"
        else:
            # A drill is a manual run too: the real report goes to the log like any other.
            monitor.log_storage_report(runtime, report)
            note = monitor.simulate_high_usage(runtime)
            delivered = monitor.deliver(runtime)
            line = (
                f"simulated high usage: critical alert queued for "
                f"{', '.join(monitor.channel_names(runtime))}; sent {delivered.sent}, "
                f"retrying {delivered.retried}, failed {delivered.failed}"
            )
        if args.json:
            result["simulated"] = note.to_json() if note else None
        else:
            print(line)
    elif args.dry_run:
        if not args.json:
            print("dry run: the rule was evaluated; no state changed, nothing sent")
    else:
        monitor.log_storage_report(runtime, report)
        _, sent = monitor.evaluate(runtime, only=("cas_size",))
        if sent:
            delivered = monitor.deliver(runtime)
            if not args.json:
                print(
                    f"alert: {sent[0].title}; sent {delivered.sent}, retrying "
                    f"{delivered.retried}, failed {delivered.failed}"
                )
        elif not args.json:
            print("no change in the CAS alert: nothing sent")
    if args.json:
        result["pending_notifications"] = outbox.pending_count(runtime.ledger)
        output.emit_json(result)
    # The real level, drill or not: the codes of `seer status`, for cron and monitoring.
    return Health.of(report.level)


def cmd_alerts(args: argparse.Namespace) -> int:
    from worker.alerts import alerting, outbox
    from worker.monitoring import monitor

    runtime = open_runtime()
    if args.alerts_command == "test":
        from worker.ops import operations

        try:
            report = operations.send_test_alert(runtime, args.channel)
        except LookupError as exc:
            raise UserError(str(exc)) from None
        for outcome in report.channels:
            name, _, rest = outcome.describe().partition(" ")
            print(f"{name:<6} {rest}")
        if not report.ok:
            print(
                "not every channel took it: `seer alerts list` shows the retries", file=sys.stderr
            )
            return ExitCode.FAILED
        return ExitCode.OK
    active = alerting.active(runtime.ledger)
    deliveries = outbox.recent(runtime.ledger, args.limit)
    now = runtime.ledger.now()  # the ages are of the ledger's times
    if args.json:
        output.emit_json(
            {
                "active": [a.__dict__ for a in active],
                "deliveries": [d.__dict__ for d in deliveries],
                "channels": monitor.channel_names(runtime),
            }
        )
        return ExitCode.OK
    print(f"channels: {', '.join(monitor.channel_names(runtime))}")
    if not active:
        print("no active alerts")
    else:
        output.table(
            [(a.level.upper(), a.rule, output.when(a.since, now), a.summary) for a in active],
            ("LEVEL", "RULE", "SINCE", "NOW"),
        )
    print()
    output.table(
        [
            (
                d.id,
                d.channel,
                d.level,
                output.one_line(d.title, 40),
                d.status,
                d.attempts,
                output.when(d.sent_at, now) if d.sent_at else output.when(d.next_attempt_at, now),
                output.one_line(d.last_error or "", 40),
            )
            for d in deliveries
        ],
        ("ID", "CHANNEL", "LEVEL", "ALERT", "STATUS", "TRIES", "SENT / NEXT TRY", "LAST ERROR"),
    )
    return ExitCode.OK


def _bind(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"--serve {text!r}: expected [HOST:]PORT, e.g. 9464 or 127.0.0.1:9464")
    return host, int(port)


def cmd_metrics(args: argparse.Namespace) -> int:
    from worker.monitoring import exporter

    runtime = open_runtime()
    if not args.serve:
        sys.stdout.write(exporter.render(runtime))
        return ExitCode.OK
    host, port = _bind(args.serve)
    if not exporter.is_loopback(host):
        warn(f"serving metrics on {host}, not loopback: anyone who can reach it can read them")
    try:
        server = exporter.serve(
            host, port, exporter.SeerCollector(runtime), release=runtime.ledger.close
        )
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"serving http://{shown}:{server.server_address[1]}/metrics (ctrl-c stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    p = add(
        "monitor-storage",
        cmd_monitor_storage,
        "CAS size, files, growth and level; evaluates the CAS alert (daily by the scheduler); "
        "exits 0 ok, 1 warning, 2 critical, as `seer status`",
    )
    p.add_argument("--dry-run", action="store_true", help="evaluate and print; send nothing")
    p.add_argument(
        "--simulate-high-usage",
        action="store_true",
        help="send a critical CAS alert through every channel, as a drill",
    )
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="accepted for old scripts: the exit code is always 0 ok, 1 warning, 2 critical",
    )
    p.add_argument("--json", action="store_true")

    alerts = add("alerts", cmd_alerts, "active alerts and notification deliveries; test alerts")
    asub = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=Parser)
    asub.required = True
    p = asub.add_parser("test", help="send a test alert through every channel (or one)")
    p.add_argument("--channel", choices=("slack", "email", "log"))
    p = asub.add_parser("list", help="active alerts and recent deliveries")
    p.add_argument("--limit", type=positive_int, default=20)
    p.add_argument("--json", action="store_true")

    p = add("metrics", cmd_metrics, "current metrics in Prometheus text format; --serve to scrape")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="serve /metrics (loopback by default)")
