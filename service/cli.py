"""The composition root and the ``detainer-watch`` subcommands.

Everything with a lifetime (settings, engine, storage, HTTP clients, matcher, scheduler,
app) is built here, from the config, and passed down; nothing is created at import.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from service import __version__
from service.config import Config, load_config
from service.errors import ConfigError, DetainerWatchError
from service.heap import freeze_startup_heap, import_httpx_without_cli, limit_malloc_arenas
from service.wording import counted

log = logging.getLogger("service")

USER_AGENT = f"detainer-watch/{__version__} (+https://github.com/detainer-watch/detainer-watch)"

# Seconds between attempts to reach a database that does not answer yet (migrate --wait).
DATABASE_RETRY_S = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- composition


@dataclass
class Parts:
    """The service's collaborators, built once per command from the config."""

    config: Config
    storage: Any
    poller: Any = None
    sender: Any = None
    clients: tuple[Any, ...] = ()


def _open_storage(cfg: Config, migrate_schema: bool = True) -> Any:
    from service.storage import Storage, engine_for, migrate

    engine = engine_for(cfg)
    if migrate_schema:
        before, after = migrate(engine)
        if before != after:
            log.info("database schema upgraded %s -> %s", before or "empty", after)
    storage = Storage(engine)
    now = utc_now()
    storage.sync_config_feeds(cfg.feeds, now)
    storage.sync_config_webhooks(cfg.webhooks, now)
    return storage


def load_matcher(cfg: Config, rules: str | None = None) -> Any:
    from service.match import Matcher

    return Matcher.load(
        Path(rules) if rules else cfg.rules_path, threshold=float(cfg["matcher.threshold"])
    )


@contextmanager
def build(cfg: Config, *, pipeline: bool = True, pin: bool = False) -> Iterator[Parts]:
    """Build storage (migrated) and, when asked, the poller and webhook sender. The
    commands that poll pass ``pin``: with ``polling.pin_poller`` on, this process's threads
    are then kept on one CPU and its parse processes on all (``pin_poller``); they call
    this before starting any thread, which then inherits the pin."""
    storage = _open_storage(cfg)  # first: a database it cannot use leaves the process as it was
    parts = Parts(config=cfg, storage=storage)
    try:
        if pipeline:
            parse_cpus = pin_poller(cfg) if pin else None
            from service.alerts.sender import WebhookSender, build_webhook_client
            from service.fetch import Fetcher, build_client
            from service.parse_worker import DEFAULT_PARSE_PROCESSES, ParsePool
            from service.pipeline import CLAIM_ROUNDS, Poller, PollSettings
            from service.politeness import HostGate
            from service.stories import StoryPolicy

            ua = str(cfg["polling.user_agent"]) or USER_AGENT
            feed_client = build_client(
                ua,
                cfg["polling.connect_timeout"],
                cfg["polling.read_timeout"],
                cfg["polling.concurrency"],
            )
            hook_client = build_webhook_client(cfg["delivery.timeout"], ua)
            # Parse processes (one per core unless configured), running below the poller's
            # priority, so that storing, which only this process does, gets a core first.
            # Started by run and worker (start_parse_processes), else on first use.
            parse_pool = ParsePool(
                cfg["polling.parse_processes"] or DEFAULT_PARSE_PROCESSES,
                nice=cfg["polling.parse_nice"],
                cpus=parse_cpus,
            )
            parts.clients = (feed_client, hook_client, parse_pool)
            rng = random.Random()
            parts.poller = Poller(
                storage=storage,
                fetcher=Fetcher(
                    feed_client,
                    cfg["polling.max_bytes"],
                    cfg["polling.total_timeout"],
                    host_gate=HostGate(
                        cfg["polling.per_host_concurrency"], cfg["polling.per_host_delay"]
                    ),
                ),
                matcher=load_matcher(cfg),
                settings=PollSettings(
                    cfg["polling.interval"],
                    cfg["polling.min_interval"],
                    cfg["polling.max_interval"],
                    cfg["polling.concurrency"],
                    cfg["polling.disable_after"],
                    cfg["polling.disable_after_errors"],
                    stories=StoryPolicy(cfg["stories.threshold"], cfg["stories.window"]),
                    # A batch's feeds are fetched CLAIM_ROUNDS deep per thread, each within
                    # the total timeout; one more timeout covers parsing and storing.
                    lease_s=(CLAIM_ROUNDS + 1) * cfg["polling.total_timeout"],
                ),
                clock=utc_now,
                rng=rng,
                parse_pool=parse_pool,
            )
            parts.sender = WebhookSender(
                storage,
                hook_client,
                cfg["delivery.max_attempts"],
                utc_now,
                rng,
                retry_span_s=cfg["delivery.retry_span"],
                batch=cfg["delivery.batch"],
                attempt_timeout_s=cfg["delivery.timeout"],
            )
        yield parts
    finally:
        for client in parts.clients:
            client.close()
        storage.close()


# ---------------------------------------------------------------- commands


def cmd_check_config(cfg: Config, _args: argparse.Namespace) -> int:
    matcher = load_matcher(cfg)
    print(
        f"{cfg.path}: OK — {counted(len(cfg.feeds), 'feed')}, "
        f"{counted(len(cfg.webhooks), 'webhook')}, "
        f"rules {cfg.rules_path} (version {matcher.version}), database {_safe_url(cfg)}"
    )
    return 0


def _safe_url(cfg: Config) -> str:
    from sqlalchemy.engine.url import make_url

    return make_url(cfg.database_url).render_as_string(hide_password=True)


def _wait_for_database(engine: Any, wait_s: float) -> None:
    """Try to reach the database for up to ``wait_s`` seconds (containers starting together:
    the database may not answer yet); then let the last error through."""
    import time

    from service.errors import StorageError
    from service.storage import current_revision

    deadline = time.monotonic() + wait_s
    while True:
        try:
            current_revision(engine)
            return
        except StorageError as e:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not answering yet, retrying: %s", str(e).splitlines()[0])
            time.sleep(DATABASE_RETRY_S)


def cmd_migrate(cfg: Config, args: argparse.Namespace) -> int:
    from service.storage import engine_for, migrate

    engine = engine_for(cfg)
    try:
        _wait_for_database(engine, args.wait)
        before, after = migrate(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"database {_safe_url(cfg)} is up to date (revision {after})")
    else:
        print(f"database {_safe_url(cfg)} upgraded from {before or 'empty'} to {after}")
    return 0


def start_parse_processes(parts: Parts) -> None:
    """Start the poller's parse processes before its first poll (``run`` and ``worker``; a
    one-shot ``poll`` starts them at its first changed document, or never when nothing
    changed). One that cannot start is said here; polling then tries again at each
    document."""
    pool = parts.poller.parse_pool
    started = pool.start()
    if started < pool.processes:
        log.warning(
            "%d of %d parse processes started (%s); polls will try to start the rest",
            started,
            pool.processes,
            sys.executable,
        )


def pin_poller(cfg: Config) -> frozenset[int] | None:
    """With ``polling.pin_poller`` on, keep this process's threads on one CPU (``cpus``) and
    return every CPU it may use, for its parse processes."""
    if not cfg["polling.pin_poller"]:
        return None
    from service.cpus import allowed_cpus, pin_to_one_cpu

    cpus = pin_to_one_cpu()
    if cpus is not None:
        log.debug("poller threads on CPUs %s, parse processes on %s", allowed_cpus(), cpus)
    return cpus


def cmd_run(cfg: Config, _args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app

    limit_malloc_arenas()  # before any thread: fetch threads, scheduler, server
    import_httpx_without_cli()  # before build() imports it
    with build(cfg, pin=True) as parts:
        # One registry: the scheduler counts polls and deliveries, the app's /metrics shows them.
        scheduler = _scheduler(cfg, parts)
        app = create_app(
            parts.storage,
            str(cfg["api.token"]),
            lambda: scheduler.alive,
            allow_private_addresses=bool(cfg["network.allow_private_addresses"]),
            clock=utc_now,
            metrics=scheduler.metrics,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=cfg["http.host"],
                port=cfg["http.port"],
                lifespan="off",
                log_level=str(cfg["logging.level"]).lower(),
                access_log=False,
            )
        )
        log.info(
            "detainer-watch %s: %s, %s, API on http://%s:%d",
            __version__,
            counted(len(parts.storage.enabled_feeds()), "feed"),
            counted(len(cfg.webhooks), "webhook"),
            cfg["http.host"],
            cfg["http.port"],
        )
        _on_sigterm(lambda: setattr(server, "should_exit", True))
        _reload_rules_on_sighup(cfg, parts.poller)
        start_parse_processes(parts)
        freeze_startup_heap()
        scheduler.start()
        try:
            server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; we stop cleanly below
        finally:
            log.info("stopping: waiting for the current poll and deliveries to finish")
            scheduler.shutdown()
    log.info("stopped")
    return 0


def _on_sigterm(action: Callable[[], None]) -> None:
    """Run ``action`` on SIGTERM (``docker stop``, systemd) instead of dying of the signal.

    uvicorn handles SIGINT and SIGTERM while it serves, and once it has stopped it raises
    the signal again under the handlers it found. Under SIGTERM's default handler the
    process died right there, exit 143: ``run`` before its stopping ran (the scheduler
    never shut down, polls and deliveries in flight cut off with their leases held, the
    parse processes left to notice on their own), and ``api`` with one process where
    ``--workers 2`` exited 0.
    ``run`` asks uvicorn to stop serving (``server.should_exit``: the re-raised signal is
    then a no-op, and one that comes before uvicorn has taken the signal over stops it as
    soon as it starts); ``api`` exits 0."""
    import signal

    signal.signal(signal.SIGTERM, lambda _signum, _frame: action())


def _scheduler(cfg: Config, parts: Parts) -> Any:
    """The scheduler of ``run`` and ``worker``, counting its polls and deliveries on its own
    ``ServiceMetrics`` (``scheduler.metrics``)."""
    from service.metrics import ServiceMetrics
    from service.scheduler import ServiceScheduler

    return ServiceScheduler(
        parts.poller,
        parts.sender,
        cfg["polling.tick"],
        cfg["delivery.tick"],
        utc_now(),
        metrics=ServiceMetrics(),
    )


def _serve_worker_metrics(cfg: Config, metrics: Any) -> Any:
    """Serve a worker's own counters (``http.worker_metrics_port``; None when 0): a worker
    has no API, and the API processes cannot see another process's counters."""
    port = int(cfg["http.worker_metrics_port"])
    if not port:
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(
            port, addr=str(cfg["http.host"]), registry=metrics.registry
        )
    except OSError as e:
        raise ConfigError(
            str(cfg.path),
            "http.worker_metrics_port",
            f"cannot listen on {cfg['http.host']}:{port}: {e.strerror or e}",
            "choose a free port (each worker on one machine needs its own), or 0 for none",
        ) from e
    log.info("worker metrics on http://%s:%d/metrics", cfg["http.host"], port)
    return server


def cmd_worker(cfg: Config, _args: argparse.Namespace) -> int:
    """The scheduler half of ``run``: polls and deliveries, no API. Any number may run
    against one PostgreSQL database; they share the work through leases in the database."""
    import signal
    import threading

    limit_malloc_arenas()  # before any thread: fetch threads, scheduler, metrics server
    import_httpx_without_cli()  # before build() imports it
    with build(cfg, pin=True) as parts:
        scheduler = _scheduler(cfg, parts)
        metrics_server = _serve_worker_metrics(cfg, scheduler.metrics)
        log.info(
            "detainer-watch %s worker %s: %s, %s, database %s",
            __version__,
            parts.poller.worker_id,
            counted(len(parts.storage.enabled_feeds()), "feed"),
            counted(len(cfg.webhooks), "webhook"),
            _safe_url(cfg),
        )
        stop = threading.Event()

        def request_stop(_signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        _reload_rules_on_sighup(cfg, parts.poller)
        start_parse_processes(parts)
        freeze_startup_heap()
        scheduler.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            log.info("stopping: waiting for the current poll and deliveries to finish")
            scheduler.shutdown()
            if metrics_server is not None:
                metrics_server.shutdown()
    log.info("stopped")
    return 0


def cmd_api(cfg: Config, args: argparse.Namespace) -> int:
    """The API half of ``run``: uvicorn with ``--workers N`` processes, each building the app
    from the config (``service.api.factory``). It does not migrate; it refuses a schema newer
    than it knows."""
    import os

    import uvicorn

    from service.storage import check_schema, engine_for

    engine = engine_for(cfg)
    try:
        check_schema(engine)
    finally:
        engine.dispose()
    # uvicorn's worker processes inherit the environment: they read the same config.
    os.environ["DW_CONFIG"] = str(Path(cfg.path).resolve())
    log.info(
        "detainer-watch %s API on http://%s:%d (%d process%s)",
        __version__,
        cfg["http.host"],
        cfg["http.port"],
        args.workers,
        "" if args.workers == 1 else "es",
    )
    _on_sigterm(lambda: sys.exit(0))
    uvicorn.run(
        "service.api.factory:create_app_from_env",
        factory=True,
        host=cfg["http.host"],
        port=cfg["http.port"],
        workers=args.workers,
        lifespan="off",
        log_level=str(cfg["logging.level"]).lower(),
        access_log=False,
    )
    return 0


def _reload_rules_on_sighup(cfg: Config, poller: Any) -> None:
    """``kill -HUP PID`` reloads the rules file; a broken file keeps the old rules."""
    import signal

    if not hasattr(signal, "SIGHUP"):
        return

    def reload(_signum: int, _frame: object) -> None:
        try:
            matcher = load_matcher(cfg)
        except DetainerWatchError as e:
            log.error(
                "SIGHUP: rules not reloaded, keeping version %s: %s", poller.matcher.version, e
            )
            return
        old, poller.matcher = poller.matcher.version, matcher
        log.info("SIGHUP: rules reloaded, version %s -> %s", old, matcher.version)

    signal.signal(signal.SIGHUP, reload)


def cmd_poll(cfg: Config, args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # before the fetch threads
    import_httpx_without_cli()  # before build() imports it
    with build(cfg, pin=True) as parts:
        storage = parts.storage
        if args.feed:
            feed = storage.get_feed(args.feed)
            if feed is None:
                print(
                    f"error: no feed {args.feed}; add it with: detainer-watch feeds add "
                    f"{args.feed}",
                    file=sys.stderr,
                )
                return 1
            feeds = [feed]
        elif args.all:
            feeds = storage.enabled_feeds()
        else:
            feeds = None
        stopped_by = _stop_on_signals(parts)
        reports = parts.poller.poll(feeds)
        while feeds is None and not stopped_by and (batch := parts.poller.poll()):
            reports += batch  # due feeds come in batches
        delivered = None
        if not args.no_deliver and not stopped_by:
            delivered = parts.sender.tick(limit=1000)
        # Read once: a signal after this point finds the work done and changes nothing.
        stopped = stopped_by[0] if stopped_by else None
        not_polled = 0
        if stopped is not None:
            from service.scheduler import release_leases

            given_back = release_leases(parts.poller, parts.sender)
            # Feeds named on the command line were never leased: those not polled are the
            # ones without a report.
            not_polled = given_back if feeds is None else len(feeds) - len(reports)
    for r in reports:
        status = f"{r.status.value} {r.http_status or ''}".strip()
        line = f"{status:<18} new={r.new_items:<4} hits={r.hits:<3} {r.feed_url}"
        if r.error:
            line += f"  error: {r.error}"
        print(line)
    errors = sum(1 for r in reports if r.error)
    print(
        f"{len(reports)} feeds polled, {sum(r.new_items for r in reports)} new items, "
        f"{sum(r.hits for r in reports)} hits, {errors} errors"
        + (
            f"; webhooks: {delivered.delivered} delivered, {delivered.retried} to retry, "
            f"{delivered.failed} failed"
            if delivered
            else ""
        )
    )
    if stopped is not None:
        print(
            f"stopped by {signal_name(stopped)} before the end: {counted(not_polled, 'feed')} "
            "not polled (still due); webhooks not sent now are sent by the next poll or worker",
            file=sys.stderr,
        )
        return 128 + stopped
    return 0


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _stop_on_signals(parts: Parts) -> list[int]:
    """Make SIGINT and SIGTERM stop a one-shot poll as they stop a worker: the fetches under
    way finish and are stored, those waiting for their host's turn are not sent, and the
    caller gives the leases back. Returns the list the signal's number is put in (empty
    until one comes). A second signal acts as it would have without this (Ctrl-C twice
    quits at once)."""
    import signal

    stopped_by: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stopped_by.append(signum)
        log.info(
            "stopping: %s; the fetches under way finish, the rest are given back",
            signal_name(signum),
        )
        parts.poller.stopping.set()
        parts.sender.stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return stopped_by


def cmd_classify(cfg: Config | None, args: argparse.Namespace) -> int:
    from service.match import Matcher
    from service.normalize import text_of_field

    if cfg is not None:
        matcher = load_matcher(cfg, args.rules)
    else:
        matcher = Matcher.load(Path(args.rules))
    out = sys.stdout
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            print(
                f"error: stdin line {n}: {e}; each line must be a JSON object with "
                f"id, title, summary",
                file=sys.stderr,
            )
            return 1
        # Feed items' HTML (tags, entities such as &#8217;) is read as the poller reads it.
        result = matcher.classify(
            *(text_of_field(str(item.get(k) or "")) for k in ("title", "summary", "text"))
        )
        doc = {"id": item.get("id"), **result.as_dict()}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def cmd_eval(cfg: Config | None, args: argparse.Namespace) -> int:
    from service.match import Matcher
    from service.match.evaluate import evaluate, format_report

    matcher = load_matcher(cfg, args.rules) if cfg is not None else Matcher.load(Path(args.rules))
    items = []
    with open(args.corpus, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as e:
                    print(f"error: {args.corpus}:{n}: {e}", file=sys.stderr)
                    return 1
    print(format_report(evaluate(matcher, items)))
    return 0


def cmd_hits(cfg: Config, args: argparse.Namespace) -> int:
    from service.cli_hits import print_hits

    with build(cfg, pipeline=False) as parts:
        return print_hits(parts.storage, args, sys.stdout)


def cmd_stats(cfg: Config, args: argparse.Namespace) -> int:
    from service.cli_hits import print_stats

    with build(cfg, pipeline=False) as parts:
        return print_stats(parts.storage, args, sys.stdout)


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    for row in [list(header), *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def cmd_feeds(cfg: Config, args: argparse.Namespace) -> int:
    from service import cli_feeds

    with build(cfg, pipeline=False) as parts:
        storage = parts.storage
        if args.feeds_cmd == "list":
            return cli_feeds.list_feeds(storage, args.format, _table)
        if args.feeds_cmd == "add":
            ua = str(cfg["polling.user_agent"]) or USER_AGENT
            return cli_feeds.add_feed(cfg, storage, args, utc_now(), ua)
        if args.feeds_cmd == "import":
            return cli_feeds.import_opml(cfg, storage, args.file, utc_now())
        if args.feeds_cmd == "export":
            return cli_feeds.export_opml(storage, utc_now(), sys.stdout)
        if args.feeds_cmd == "remove":
            removed = storage.remove_feed(args.url)
            if removed is None:
                print(f"error: no feed {args.url}", file=sys.stderr)
                return 1
            print(f"removed: feed {removed.id} {removed.url}")
            if any(f.url == removed.url for f in cfg.feeds):
                print(
                    f"note: it is listed in {cfg.path}; remove it there too or it comes back "
                    "at the next start",
                    file=sys.stderr,
                )
            return 0
    raise AssertionError(args.feeds_cmd)


def cmd_rematch(cfg: Config, args: argparse.Namespace) -> int:
    from service.cli_hits import parse_when
    from service.rematch import rematch

    since = parse_when("--since", args.since)  # a bad date: "error: --since: ...", exit 1
    matcher = load_matcher(cfg, args.rules)
    with build(cfg, pipeline=False) as parts:
        report = rematch(parts.storage, matcher, utc_now, since, deliver=args.deliver)
    for line in report.lines(matcher.version):
        print(line)
    if report.new_hits and not args.deliver:
        print("the new hits were not sent to webhooks (use --deliver to send them)")
    return 0


def cmd_deliveries(cfg: Config, args: argparse.Namespace) -> int:
    from service.api.webhooks import delivery_payload
    from service.cli_hits import row_limit

    if args.deliveries_cmd == "list":
        row_limit(args.limit)  # SQLite reads LIMIT -1 as no limit at all
    with build(cfg, pipeline=False) as parts:
        storage = parts.storage
        if args.deliveries_cmd == "retry":
            d = storage.retry_delivery(args.id, utc_now())
            if d is None:
                print(f"error: no delivery {args.id}", file=sys.stderr)
                return 1
            print(
                f"delivery {d.id} ({d.webhook_id}) is {d.status}; the service sends it at its "
                "next delivery tick"
            )
            return 0
        rows = storage.list_deliveries(args.status, args.limit)
    if args.format == "json":
        for d in rows:
            print(json.dumps(delivery_payload(d)))
        return 0
    _table(
        sys.stdout,
        ["id", "hit", "webhook-id", "status", "tries", "next attempt", "last error"],
        [
            [
                str(d.id),
                str(d.hit_id or d.digest_period),
                d.webhook_id,
                d.status,
                str(d.attempts),
                d.next_attempt_at.isoformat(timespec="seconds")
                if d.next_attempt_at and d.status == "pending"
                else "-",
                (d.last_error or "")[:50],
            ]
            for d in rows
        ],
    )
    return 0


def cmd_webhooks(cfg: Config, args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    with build(cfg, pipeline=False) as parts:
        subs = parts.storage.list_subscriptions()
    _table(
        sys.stdout,
        ["id", "state", "format", "origin", "digest", "receiver"],
        [
            [
                str(s.id),
                "enabled" if s.enabled else f"disabled: {s.disabled_reason}",
                s.format,
                s.origin,
                s.digest or "-",
                urlsplit(s.url).netloc,
            ]
            for s in subs
        ],
    )
    return 0


# ---------------------------------------------------------------- argument parsing


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default config/detainer-watch.toml, env DW_CONFIG)",
    )
    p = argparse.ArgumentParser(
        prog="detainer-watch",
        parents=[common],
        description="News monitor for immigration detainers and sanctuary policy.",
    )
    p.add_argument("--version", action="version", version=f"detainer-watch {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="scheduler + API (embedded default)")
    sub.add_parser(
        "worker", parents=[common], help="scheduler only: polls and deliveries (scale-out)"
    )
    api = sub.add_parser("api", parents=[common], help="HTTP API only (scale-out)")
    api.add_argument("--workers", type=int, default=1, metavar="N", help="uvicorn worker processes")
    poll = sub.add_parser("poll", parents=[common], help="one pass over due feeds, then exit")
    poll.add_argument("--all", action="store_true", help="poll every feed, due or not")
    poll.add_argument("--feed", metavar="URL", help="poll just this feed (URL or id)")
    poll.add_argument("--no-deliver", action="store_true", help="do not send webhooks")

    cl = sub.add_parser("classify", parents=[common], help="JSONL on stdin -> JSONL on stdout")
    cl.add_argument("--rules", metavar="PATH", help="rules file (default: from config)")
    ev = sub.add_parser("eval", parents=[common], help="precision/recall on a labeled corpus")
    ev.add_argument("corpus", metavar="CORPUS.jsonl")
    ev.add_argument("--rules", metavar="PATH", help="rules file (default: from config)")

    from service.cli_hits import add_hit_filters

    hits = sub.add_parser("hits", parents=[common], help="query stored hits")
    add_hit_filters(hits)
    hits.add_argument("--sort", choices=("newest", "score"), default="newest")
    hits.add_argument(
        "--limit", type=int, help="rows (default: 50 for table/json, all for csv/jsonl)"
    )
    hits.add_argument(
        "--format",
        choices=("table", "json", "jsonl", "csv"),
        default="table",
        help="csv and jsonl stream every matching hit",
    )
    stats = sub.add_parser("stats", parents=[common], help="hit counts by week, topic, place")
    add_hit_filters(stats)
    stats.add_argument("--format", choices=("table", "json"), default="table")

    feeds = sub.add_parser("feeds", parents=[common], help="manage feeds")
    fsub = feeds.add_subparsers(dest="feeds_cmd", required=True, metavar="ACTION")
    fl = fsub.add_parser("list", parents=[common], help="feeds with their health")
    fl.add_argument("--format", choices=("table", "json"), default="table")
    fa = fsub.add_parser(
        "add", parents=[common], help="add a feed URL, or a site URL whose page names its feed"
    )
    fa.add_argument("url")
    fa.add_argument("--name")
    fa.add_argument("--interval", help='e.g. "10m"')
    fa.add_argument(
        "--no-discover", action="store_true", help="add the URL as given, without fetching it"
    )
    fi = fsub.add_parser("import", parents=[common], help="add the feeds of an OPML file")
    fi.add_argument("file", metavar="FILE.opml")
    fsub.add_parser("export", parents=[common], help="write the feeds as OPML 2.0 to stdout")
    fr = fsub.add_parser("remove", parents=[common], help="stop polling a feed (URL or id)")
    fr.add_argument("url")

    rm = sub.add_parser(
        "rematch", parents=[common], help="re-run the current rules over stored stories"
    )
    rm.add_argument("--since", metavar="DATE", help="only stories first seen since (ISO, UTC)")
    rm.add_argument("--rules", metavar="PATH", help="rules file (default: from config)")
    rm.add_argument(
        "--deliver", action="store_true", help="send the new hits to webhook subscriptions too"
    )
    dl = sub.add_parser("deliveries", parents=[common], help="webhook deliveries")
    dsub = dl.add_subparsers(dest="deliveries_cmd", required=True, metavar="ACTION")
    dls = dsub.add_parser("list", parents=[common], help="deliveries, newest first")
    dls.add_argument("--status", choices=("pending", "delivered", "failed", "skipped"))
    dls.add_argument("--limit", type=int, default=50)
    dls.add_argument("--format", choices=("table", "json"), default="table")
    drt = dsub.add_parser("retry", parents=[common], help="queue a failed delivery again")
    drt.add_argument("id", type=int)
    wh = sub.add_parser("webhooks", parents=[common], help="webhook subscriptions")
    whsub = wh.add_subparsers(dest="webhooks_cmd", required=True, metavar="ACTION")
    whsub.add_parser("list", parents=[common], help="subscriptions and their state")

    mg = sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    mg.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep trying to reach the database this long first (containers starting)",
    )
    sub.add_parser("check-config", parents=[common], help="validate the config; exit 0 or 1")
    return p


COMMANDS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "run": cmd_run,
    "worker": cmd_worker,
    "api": cmd_api,
    "poll": cmd_poll,
    "classify": cmd_classify,
    "eval": cmd_eval,
    "hits": cmd_hits,
    "stats": cmd_stats,
    "feeds": cmd_feeds,
    "migrate": cmd_migrate,
    "check-config": cmd_check_config,
    "deliveries": cmd_deliveries,
    "rematch": cmd_rematch,
    "webhooks": cmd_webhooks,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config_path = getattr(args, "config", None)
    try:
        try:
            cfg: Config | None = load_config(config_path)
        except ConfigError:
            # classify/eval with --rules work without a config file.
            if args.command in ("classify", "eval") and args.rules:
                cfg = None
            else:
                raise
        level = str(cfg["logging.level"]).upper() if cfg else "WARNING"
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # Each poll and delivery is logged once by our own modules; the libraries' per-request
        # and per-job lines would double every line.
        for noisy in ("httpx", "alembic"):
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
        # "skipped: maximum number of running instances" is how coalescing looks, not a fault.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        return COMMANDS[args.command](cfg, args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    except DetainerWatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
