"""Scenario 8: the event outbox (issue 16): how fast the dispatcher delivers, and what writing
events adds to a registration.

Throughput: N events already in the outbox of a real database (written with `Outbox.add` in
a few transactions, spread over 100 packs so that per-pack order matters), one signed webhook
sink pointed at a receiver on 127.0.0.1 (a ThreadingHTTPServer with HTTP/1.1 keep-alive, in a
process of its own, answering 200 to every POST); `Dispatcher.drain` until every delivery is
`delivered`. The floor, in the same run against the same receiver: the same encoded bodies
POSTed by a bare `httpx.Client` loop. Rounds alternate which goes first; the receiver notes
each request's arrival, so the gaps between arrivals give a per-event p50 and p95 for both.
SQLite always; PostgreSQL when ATTUNED_TEST_POSTGRES_URL is set (a throwaway database with
Attune's schema, as scenario 7 makes it, dropped afterwards).

Cost per registration: M synthetic packs of 20 files registered (skip_tests) into two fresh
SQLite databases, pack by pack, the order alternating: once with the real outbox and three
sinks configured (webhook, exec, attune: three delivery rows per event), once with an outbox
that writes nothing. The difference, over the events a registration wrote (counted in the
outbox), is the cost of one event.

    python bench/notify.py [--quick]
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from common import Result, main, quiet_logging, scratch, summary, target, write_pack
from sqlmodel import Session

from attuned.notify import events
from attuned.notify.dispatcher import Dispatcher
from attuned.notify.events import encode
from attuned.notify.sinks import AnySinkConfig
from attuned.registry import Registry
from attuned.report.log import Event
from attuned.settings.notify import AttuneSinkConfig, ExecSinkConfig, WebhookSinkConfig
from attuned.store import delivery_queue, outbox
from attuned.store.database import Database
from attuned.store.models import utcnow
from attuned.store.outbox import EventRecord, Outbox
from attuned.store.packstore import PackStore

TRANSACTIONS = 10  # the events are written in this many transactions
DRAIN_TIMEOUT = 600.0
VARIANTS = ("none", "outbox")  # the registration baseline first, then the real outbox


# -- the receiver ------------------------------------------------------------------------------


def receive() -> None:
    """The receiver process: 200 to every POST, each arrival noted (time.monotonic, the
    parent's clock too); GET /arrivals hands the arrivals over and starts afresh."""
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            arrivals.append(time.monotonic())
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            taken = arrivals[:]
            del arrivals[: len(taken)]
            body = json.dumps(taken).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@dataclass
class Receiver:
    url: str

    def arrivals(self) -> list[float]:
        """When each request since the last call arrived (time.monotonic)."""
        return [float(t) for t in httpx.get(f"{self.url}/arrivals", timeout=30).json()]


@contextmanager
def receiver() -> Iterator[Receiver]:
    """The receiver in a process of its own (so it takes no GIL from the measured one)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield Receiver(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- dispatcher throughput ---------------------------------------------------------------------


def event_for(k: int, packs: int) -> EventRecord:
    """The k-th event: packs take turns; each pack's events alternate pack.test.finished and
    pack.registered (an upgrade each time), so each subject has an order to keep."""
    index, step = k % packs, k // packs
    ref, version = f"pack{index:05d}", f"1.{step // 2}.0"
    facts: dict[str, Any] = {
        "pack": ref,
        "version": version,
        "digest": hashlib.sha256(f"{ref}@{version}".encode()).hexdigest(),
        "source": "local",
        "revision": None,
    }
    trigger = "register" if step < 2 else "upgrade"
    if step % 2 == 0:
        tests = {
            "test_run_id": k + 1,
            "status": "passed",
            "total": 1,
            "passed": 1,
            "failed": 0,
            "skipped": 0,
            "pass_rate": 1.0,
            "duration_ms": 12,
            "gate_passed": True,
            "gate_reason": "all tests passed",
            "failed_cases": [],
            "failed_cases_omitted": 0,
        }
        fields = {**facts, "trigger": trigger, "outcome": "registered", "tests": tests}
        return events.record(Event.PACK_TEST_FINISHED, fields)
    fields = {
        **facts,
        "pack_id": index + 1,
        "previous_version": f"1.{step // 2 - 1}.0" if step > 1 else None,
        "trigger": trigger,
        "outcome": "registered",
        "tests": "passed",
        "test_run_id": k,
        "runtime_names": [],
    }
    return events.record(Event.PACK_REGISTERED, fields)


def write_events(database: Database, box: Outbox, n: int, packs: int) -> float:
    """N events in TRANSACTIONS transactions; returns the seconds it took."""
    per = -(-n // TRANSACTIONS)
    began = time.perf_counter()
    for start in range(0, n, per):
        with database.write() as session:
            for k in range(start, min(n, start + per)):
                box.add(session, event_for(k, packs))
    return time.perf_counter() - began


@contextmanager
def timed_sessions(database: Database) -> Iterator[dict[str, list[float]]]:
    """The dispatcher's reads (its queue) and writes (its verdicts), each session timed from
    its opening to its commit; the work itself unchanged."""
    spent: dict[str, list[float]] = {"read": [], "write": []}
    originals = {"read": database.read, "write": database.write}

    def timed(kind: str) -> Any:
        @contextmanager
        def session() -> Iterator[Session]:
            began = time.perf_counter()
            try:
                with originals[kind]() as opened:
                    yield opened
            finally:
                spent[kind].append(time.perf_counter() - began)

        return session

    database.read, database.write = timed("read"), timed("write")  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        database.read, database.write = originals["read"], originals["write"]  # type: ignore[method-assign]


def post_floor(url: str, bodies: list[bytes]) -> float:
    """The floor: the same bodies POSTed one after the other by a bare client; seconds."""
    began = time.monotonic()
    with httpx.Client() as client:
        for body in bodies:
            response = client.post(url, content=body, headers={"content-type": "application/json"})
            if response.status_code != 200:
                raise RuntimeError(f"the receiver answered {response.status_code}")
    return time.monotonic() - began


def drain(database: Database, sink: WebhookSinkConfig, n: int) -> dict[str, Any]:
    """`Dispatcher.drain` until every delivery is delivered; seconds and the batches' cost."""
    dispatcher = Dispatcher(database, [sink])
    with timed_sessions(database) as spent:
        began = time.monotonic()
        finished = dispatcher.drain(DRAIN_TIMEOUT)
        wall = time.monotonic() - began
    with database.read() as session:
        counts = outbox.counts(session).get(sink.name, outbox.SinkCounts())
    if not finished or (counts.delivered, counts.pending, counts.dead) != (n, 0, 0):
        raise RuntimeError(
            f"drain {'finished' if finished else 'timed out'} with {counts.delivered} of {n} "
            f"delivered, {counts.pending} pending, {counts.dead} dead: {counts.last_error}"
        )
    batches = len(spent["write"])
    return {
        "seconds": wall,
        "batches": batches,
        "db_s": sum(spent["read"]) + sum(spent["write"]),
        "read_ms": [s * 1000 for s in spent["read"]],
        "write_ms": [s * 1000 for s in spent["write"]],
    }


def gaps_ms(arrivals: list[float]) -> list[float]:
    ordered = sorted(arrivals)
    return [(b - a) * 1000 for a, b in itertools.pairwise(ordered)]


def throughput(
    backend: str,
    database: Database,
    sink: WebhookSinkConfig,
    target_url: str,
    receiver: Receiver,
    *,
    n: int,
    packs: int,
    rounds: int,
) -> dict[str, Any]:
    """`rounds` rounds on `database`: N events written, then the floor and the dispatcher
    (which goes first alternates), then the delivered events pruned."""
    box = Outbox(events.routes([sink]), node="bench")
    floor_s: list[float] = []
    drains: list[dict[str, Any]] = []
    floor_gaps: list[float] = []
    drain_gaps: list[float] = []
    write_s: list[float] = []
    body_bytes = 0
    for r in range(rounds):
        write_s.append(write_events(database, box, n, packs))
        with database.read() as session:
            queued = delivery_queue.queue(session, sink.name, utcnow(), limit=n)
        if len(queued) != n:
            raise RuntimeError(f"{len(queued)} of {n} events queued")
        bodies = [encode(item.event) for item in queued]
        body_bytes = sum(map(len, bodies))
        receiver.arrivals()  # start afresh
        for which in ("floor", "dispatcher") if r % 2 == 0 else ("dispatcher", "floor"):
            if which == "floor":
                floor_s.append(post_floor(target_url, bodies))
                seen, gaps = receiver.arrivals(), floor_gaps
            else:
                drains.append(drain(database, sink, n))
                seen, gaps = receiver.arrivals(), drain_gaps
            if len(seen) != n:
                raise RuntimeError(f"{which}: the receiver saw {len(seen)} POSTs, not {n}")
            gaps += gaps_ms(seen)
        with database.write() as session:
            outbox.prune(session, utcnow())
    drain_s = [d["seconds"] for d in drains]
    ratios = [d / f for d, f in zip(drain_s, floor_s, strict=True)]
    return {
        "backend": backend,
        "n": n,
        "packs": packs,
        "rounds": rounds,
        "write_s": statistics.median(write_s),
        "body_bytes_mean": body_bytes / n,
        "floor_s": floor_s,
        "drain_s": drain_s,
        "floor_eps": n / statistics.median(floor_s),
        "drain_eps": n / statistics.median(drain_s),
        "ratio": statistics.median(ratios),
        "floor_gap_ms": summary(floor_gaps),
        "drain_gap_ms": summary(drain_gaps),
        "batches": statistics.median(d["batches"] for d in drains),
        "db_ms_per_batch": statistics.median(
            d["db_s"] * 1000 / d["batches"] for d in drains if d["batches"]
        ),
        "db_share": statistics.median(d["db_s"] / d["seconds"] for d in drains),
        "read_ms": summary([ms for d in drains for ms in d["read_ms"]]),
        "write_ms": summary([ms for d in drains for ms in d["write_ms"]]),
    }


def sqlite_throughput(root: Path, receiver: Receiver, size: dict[str, int]) -> dict[str, Any]:
    database = Database(f"sqlite:///{root / 'throughput.db'}")
    database.migrate()
    try:
        sink, url = webhook(root, receiver)
        return throughput("SQLite", database, sink, url, receiver, **size)
    finally:
        database.dispose()


def postgres_throughput(
    root: Path, receiver: Receiver, size: dict[str, int]
) -> dict[str, Any] | str:
    """The same on PostgreSQL, or why not."""
    from attune_tables import postgres, postgres_database

    server, schema, skipped = postgres()
    if server is None:
        return skipped or "PostgreSQL skipped"
    name = f"attuned_bench_notify_{os.getpid()}"
    with postgres_database(server, name, schema) as url:
        database = Database(url, create_attune_tables=schema is None)
        database.migrate()
        try:
            sink, url = webhook(root, receiver)
            return throughput("PostgreSQL", database, sink, url, receiver, **size)
        finally:
            database.dispose()


def webhook(root: Path, receiver: Receiver) -> tuple[WebhookSinkConfig, str]:
    """A signed webhook sink to the receiver (its key in a file, as operators give it)."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "webhook.key"
    key.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    url = f"{receiver.url}/hook"
    return WebhookSinkConfig(name="hook", url=url, secret_file=key), url


# -- cost per registration ---------------------------------------------------------------------


@dataclass
class TimedOutbox(Outbox):
    """The real outbox, each `add` timed (in the registration's transaction)."""

    durations: list[float] = field(default_factory=list)

    def add(self, session: Session, record: EventRecord) -> bool:
        began = time.perf_counter()
        try:
            return super().add(session, record)
        finally:
            self.durations.append(time.perf_counter() - began)


class NoOutbox(Outbox):
    """The baseline: an outbox that writes nothing (the events are still made)."""

    def add(self, session: Session, record: EventRecord) -> bool:
        return False


SINKS: list[AnySinkConfig] = [
    WebhookSinkConfig(name="hook", url="http://127.0.0.1:9/hook", sign=False),
    ExecSinkConfig(name="script", command=["/bin/true"]),
    AttuneSinkConfig(name="attune"),
]


def registration_cost(root: Path, m: int, warmup: int) -> dict[str, Any]:
    folder = root / "packs.d"
    paths = [write_pack(folder / f"pack{i:05d}", f"pack{i:05d}") for i in range(warmup + m)]
    timed = TimedOutbox(events.routes(SINKS), node="bench")
    boxes: dict[str, Outbox] = {"none": NoOutbox(), "outbox": timed}
    registries: dict[str, Registry] = {}
    for variant, box in boxes.items():
        database = Database(f"sqlite:///{root / variant / 'attuned.db'}")
        database.migrate()
        registries[variant] = Registry(database, PackStore(root / variant / "packs"), outbox=box)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for i, path in enumerate(paths):
            if i == warmup:
                timed.durations.clear()
            for variant in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
                began = time.perf_counter()
                registries[variant].register(path, skip_tests=True)
                took = time.perf_counter() - began
                if i >= warmup:
                    times[variant].append(took)
        written = {}
        for variant, registry in registries.items():
            with registry.db.read() as session:
                ids = outbox.event_ids(session)
                counts = outbox.counts(session)
            deliveries = sum(c.pending + c.delivered + c.dead for c in counts.values())
            written[variant] = (len(ids), deliveries)
    finally:
        for registry in registries.values():
            registry.close()
    if written["none"] != (0, 0):
        raise RuntimeError(f"the baseline's outbox holds {written['none']} events, deliveries")
    registered = warmup + m
    events_per = written["outbox"][0] / registered
    if not events_per:
        raise RuntimeError("the real outbox holds no event")
    paired = [o - b for o, b in zip(times["outbox"], times["none"], strict=True)]
    return {
        "m": m,
        "warmup": warmup,
        "register_ms": {v: summary([t * 1000 for t in times[v]]) for v in VARIANTS},
        "register_mean_ms": {v: statistics.mean(times[v]) * 1000 for v in VARIANTS},
        "events_per_registration": events_per,
        "deliveries_per_registration": written["outbox"][1] / registered,
        "paired_ms": summary([d * 1000 for d in paired]),
        "paired_mean_ms": statistics.mean(paired) * 1000,
        "add_ms": summary([d * 1000 for d in timed.durations]),
    }


# -- the scenario ------------------------------------------------------------------------------


def run(quick: bool) -> Result:
    n, packs, rounds = (50, 10, 2) if quick else (2000, 100, 5)
    m, warmup = (20, 2) if quick else (300, 5)
    size = {"n": n, "packs": packs, "rounds": rounds}
    skipped: list[str] = []
    with scratch("notify") as root:
        quiet_logging(root / "attuned.log")
        with receiver() as rx:
            flows = [sqlite_throughput(root / "sqlite", rx, size)]
            pg = postgres_throughput(root / "postgres", rx, size)
        if isinstance(pg, str):
            skipped.append(pg)
        else:
            flows.append(pg)
        cost = registration_cost(root / "register", m, warmup)
    throughput_rows: list[list[Any]] = []
    metrics: dict[str, float] = {}
    for f in flows:
        fg, dg = f["floor_gap_ms"], f["drain_gap_ms"]
        throughput_rows += [
            [
                f["backend"],
                "httpx loop (floor)",
                n,
                f"{f['floor_eps']:.0f}",
                f"{1000 / f['floor_eps']:.2f}",
                f"{fg['median']:.2f}",
                f"{fg['p95']:.2f}",
                "1.00x",
                "-",
                "-",
                "-",
            ],
            [
                f["backend"],
                "Dispatcher.drain",
                n,
                f"{f['drain_eps']:.0f}",
                f"{1000 / f['drain_eps']:.2f}",
                f"{dg['median']:.2f}",
                f"{dg['p95']:.2f}",
                f"{f['ratio']:.2f}x",
                f"{f['batches']:.0f}",
                f"{f['db_ms_per_batch']:.1f}",
                f"{f['db_share'] * 100:.0f}%",
            ],
        ]
        key = f["backend"].lower()
        metrics |= {
            f"{key}_floor_events_per_s": f["floor_eps"],
            f"{key}_dispatcher_events_per_s": f["drain_eps"],
            f"{key}_dispatcher_over_floor": f["ratio"],
            f"{key}_floor_gap_ms_p50": fg["median"],
            f"{key}_floor_gap_ms_p95": fg["p95"],
            f"{key}_dispatcher_gap_ms_p50": dg["median"],
            f"{key}_dispatcher_gap_ms_p95": dg["p95"],
            f"{key}_batches": f["batches"],
            f"{key}_db_ms_per_batch": f["db_ms_per_batch"],
            f"{key}_db_share": f["db_share"],
            f"{key}_write_events_s": f["write_s"],
        }
    reg, per = cost["register_ms"], cost["events_per_registration"]
    added = cost["paired_ms"]["median"] / per
    cost_rows = [
        [
            "none (writes nothing)",
            m,
            0,
            0,
            f"{reg['none']['median']:.2f}",
            f"{reg['none']['p95']:.2f}",
            f"{cost['register_mean_ms']['none']:.2f}",
        ],
        [
            f"real, {len(SINKS)} sinks",
            m,
            f"{per:g}",
            f"{cost['deliveries_per_registration']:g}",
            f"{reg['outbox']['median']:.2f}",
            f"{reg['outbox']['p95']:.2f}",
            f"{cost['register_mean_ms']['outbox']:.2f}",
        ],
        [
            "**added** (paired, real - none)",
            m,
            "",
            "",
            f"{cost['paired_ms']['median']:.2f}",
            f"{cost['paired_ms']['p95']:.2f}",
            f"{cost['paired_mean_ms']:.2f}",
        ],
    ]
    metrics |= {
        "register_ms_p50_none": reg["none"]["median"],
        "register_ms_p95_none": reg["none"]["p95"],
        "register_ms_p50_outbox": reg["outbox"]["median"],
        "register_ms_p95_outbox": reg["outbox"]["p95"],
        "events_per_registration": per,
        "deliveries_per_registration": cost["deliveries_per_registration"],
        "added_ms_per_registration_p50": cost["paired_ms"]["median"],
        "added_ms_per_registration_mean": cost["paired_mean_ms"],
        "added_ms_per_event": added,
        "outbox_add_ms_p50": cost["add_ms"]["median"],
        "outbox_add_ms_p95": cost["add_ms"]["p95"],
    }
    sqlite = flows[0]
    notes = [
        f"throughput: {n} events over {packs} packs (each pack's alternate pack.test.finished "
        f"and pack.registered, {sqlite['body_bytes_mean']:.0f} bytes of JSON on average), "
        f"already in the outbox (written in {TRANSACTIONS} transactions: "
        f"{sqlite['write_s'] * 1000 / n:.2f} ms per event on SQLite); {rounds} rounds, "
        "events/s from the median round; which of the two goes first alternates",
        "floor: a bare `httpx.Client` POSTing the same encoded bodies one after the other "
        "(content-type only, no signature); dispatcher: `Dispatcher.drain` with one signed "
        "webhook sink, until every delivery is `delivered` (checked in the outbox); both to the "
        "same ThreadingHTTPServer (HTTP/1.1 keep-alive, its own process) on 127.0.0.1",
        "gap: time between two requests' arrivals at the receiver, all rounds pooled; "
        "dispatcher/floor: the median round's ratio of the two times; batches: per round; "
        "db: the dispatcher's read (queue) and write (verdicts) sessions, opening to commit, "
        f"per batch and as a share of its time (queue p50 {sqlite['read_ms']['median']:.1f} ms, "
        f"verdicts p50 {sqlite['write_ms']['median']:.1f} ms on SQLite)",
        f"registration: {m} synthetic 20-file packs (after {warmup} not counted) registered "
        "with skip_tests into two fresh SQLite databases, pack by pack in alternating order: "
        f"the real outbox with {len(SINKS)} sinks (webhook, exec, attune: one delivery row "
        "each), and an outbox whose add() writes nothing (the events are still made, the "
        "runtime names read); events and deliveries counted in the outbox",
        f"added: real - none for the same pack, registered back to back; per event: its "
        f"median / {per:g} event(s) per registration = {added:.3f} ms; `Outbox.add` alone, "
        f"timed inside the transaction (without the commit's extra pages): p50 "
        f"{cost['add_ms']['median']:.3f} ms, p95 {cost['add_ms']['p95']:.3f} ms",
        *skipped,
    ]
    return {
        "name": "notify",
        "title": "8. Event outbox: dispatcher throughput and cost per registration",
        "params": {
            "events": n,
            "packs": packs,
            "rounds": rounds,
            "registrations": m,
            "databases": "+".join(f["backend"] for f in flows),
        },
        "tables": [
            {
                "caption": "Dispatcher throughput, one webhook sink, against bare HTTP:",
                "columns": [
                    "backend",
                    "sender",
                    "events",
                    "events/s",
                    "ms/event",
                    "gap ms p50",
                    "gap ms p95",
                    "dispatcher/floor",
                    "batches",
                    "db ms/batch",
                    "db share",
                ],
                "rows": throughput_rows,
            },
            {
                "caption": "Registration (skip_tests, SQLite) with and without the outbox:",
                "columns": [
                    "outbox",
                    "registrations",
                    "events/reg",
                    "deliveries/reg",
                    "register ms p50",
                    "p95",
                    "mean",
                ],
                "rows": cost_rows,
            },
        ],
        "metrics": metrics,
        "targets": [target("added ms per event, SQLite", added, 1.0)],
        "notes": notes,
        "raw": {"throughput": flows, "registration": cost},
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--receiver"]:
        receive()
    else:
        main(run, __doc__)
