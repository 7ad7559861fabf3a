"""Fleet sync of a 50,000-connection sandbox fleet into SQLite and PostgreSQL, against a bare httpx loop.

    .venv/bin/python bench/fleet_sync.py [--connections 50000] [--page-size 300] [--concurrency 4] [--latency-ms 0] [--rounds 3] [--pin]

Prints, per database: wall time of a first sync (all inserts) and of a re-sync (all updates), rows per second,
and the ratio to a bare httpx loop fetching the same pages at the same concurrency (target: at most 1.3×); then
the same database work timed alone (the sync's batches of parsed rows, nothing fetched alongside): its floor.
Each figure is the best of --rounds runs, each sync into a new database.
The sandbox runs pinned to core 0; this process (client and database writer) on the others.
PostgreSQL comes from TEST_DATABASE_URL (default: the local server); it is skipped with a note if unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import CORES, TEST_KEY, core_busy, cpu_seconds, shell, start_sandbox, table  # noqa: E402
from pica_core.client import AsyncPicaClient  # noqa: E402
from pica_core.config import Secret  # noqa: E402
from pica_core.store import Store  # noqa: E402
from pica_core.sync import _Writer, _fleet_operation, sync_fleet  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


async def bare_loop(url: str, page_size: int, concurrency: int) -> tuple[float, int]:
    """The floor: fetch every page (first, then the rest concurrently) and decode the JSON; nothing else."""
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers={"x-pica-secret": TEST_KEY}, timeout=60,
                                 limits=httpx.Limits(max_connections=max(10, concurrency * 2))) as client:
        async def page(n: int) -> dict:
            async with gate:
                response = await client.get("/v1/vault/connections", params={"limit": page_size, "page": n})
            return response.json()

        first = await page(1)
        rest = await asyncio.gather(*(page(n) for n in range(2, first["pages"] + 1)))
    rows = len(first["rows"]) + sum(len(p["rows"]) for p in rest)
    return time.perf_counter() - started, rows


async def timed_sync(url: str, store: Store, page_size: int, concurrency: int) -> tuple[float, int]:
    started = time.perf_counter()
    async with AsyncPicaClient(base_url=url, secret=Secret(TEST_KEY), page_size=page_size,
                               max_concurrency=concurrency) as client:
        report = await sync_fleet(client, store, environment="test", page_size=page_size)
    if report.status != "complete":
        raise SystemExit(f"sync did not complete: {report.summary()}")
    return time.perf_counter() - started, report.rows


async def fetch_rows(url: str, page_size: int, concurrency: int) -> list:
    """Every row of the fleet, parsed as the sync parses it (for timing the writes alone)."""
    async with AsyncPicaClient(base_url=url, secret=Secret(TEST_KEY), page_size=page_size,
                               max_concurrency=concurrency) as client:
        return await client._run(_fleet_operation(client, page_size))


def timed_writes(store: Store, fleet: list) -> tuple[float, int]:
    """The sync's database work alone: the same batches, no fetching alongside."""
    started = time.perf_counter()
    for start in range(0, len(fleet), _Writer.MAX_BATCH_ROWS):
        store.upsert_rows(fleet[start:start + _Writer.MAX_BATCH_ROWS], source="sync", sync_id=1)
    return time.perf_counter() - started, len(fleet)


def measured(sandbox_pid: int, work: Callable[..., tuple[float, int]], *args: Any) -> tuple[float, int, float, float]:
    """`work(*args)`'s (wall seconds, rows), with the CPU seconds it took of the whole machine (this process, the
    sandbox, PostgreSQL's server and any neighbour) and of the sandbox alone. Machine CPU near cores × wall: the run
    was bound by this machine's cores, not by waiting."""
    machine, served = sum(core_busy().values()), cpu_seconds(sandbox_pid)
    seconds, rows = work(*args)
    return seconds, rows, sum(core_busy().values()) - machine, cpu_seconds(sandbox_pid) - served


def postgres_url() -> tuple[str | None, str]:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - report and skip
        return None, f"PostgreSQL unreachable at {url} ({type(exc).__name__}): skipped"
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each measure, each sync into a new database; the best of each is printed "
                             "(this machine's neighbours make single runs vary by 20-30 %%)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="answer every page this much later (the sandbox's latency fault): 0 is the worst case "
                             "for the ratio; Pica over a network is tens of ms away")
    parser.add_argument("--pin", action="store_true",
                        help="keep this process (client and writer) off the sandbox's core; by default it may use any "
                             "core, as the dashboard does in production where Pica is another machine")
    args = parser.parse_args()
    if args.pin and CORES > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(1, CORES)))  # the sandbox has core 0

    print(f"command: {shell([sys.executable, *sys.argv])}")
    with start_sandbox("--connections", str(args.connections), "--live-connections", "0", core=0) as sandbox:
        if args.latency_ms:
            httpx.post(f"{sandbox.url}/control/faults", headers={"x-pica-secret": TEST_KEY}, timeout=10, json={
                "kind": "latency", "seconds": args.latency_ms / 1000, "count": 1_000_000, "path": "/v1/vault"})
        bare = min((measured(sandbox.pid, asyncio.run, bare_loop(sandbox.url, args.page_size, args.concurrency))
                    for _ in range(args.rounds)), key=lambda r: r[0])
        print(f"sandbox: {args.connections} connections, pages of {args.page_size}, concurrency {args.concurrency}, "
              f"sandbox pinned to core 0 of {CORES}; this process {'pinned off it' if args.pin else 'on any core'}; "
              f"added latency per page {args.latency_ms:g} ms")
        rows = [["bare httpx loop (fetch + decode)", *figures(bare, bare[0])]]
        fleet = asyncio.run(fetch_rows(sandbox.url, args.page_size, args.concurrency))
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("SQLite", "PostgreSQL"):
                for kind in ("sync", "writes alone"):
                    best: dict[str, tuple[float, int, float, float]] = {}
                    for round_ in range(args.rounds):  # each round into a new database: a first sync, then a re-sync
                        if name == "SQLite":
                            url, note = f"sqlite:///{Path(tmp) / kind.replace(' ', '-')}-{round_}.db", ""
                        else:
                            url, note = postgres_url()
                        if url is None:
                            break
                        store = Store.from_url(url)
                        for label in ("first sync (inserts)", "re-sync (updates)"):
                            if kind == "sync":
                                timed = measured(sandbox.pid, asyncio.run,
                                                 timed_sync(sandbox.url, store, args.page_size, args.concurrency))
                            else:
                                timed = measured(sandbox.pid, timed_writes, store, fleet)
                                label = f"its writes alone, {label.split()[0]}"
                            best[label] = min(best.get(label, timed), timed, key=lambda r: r[0])
                        store.engine.dispose()
                        if name == "PostgreSQL":
                            drop_schema(note)
                    if url is None:
                        print(note)
                        break
                    for label, run in best.items():
                        rows.append([f"{name}: {label}", *figures(run, bare[0])])
    print(table(["run", "wall s", "rows/s", "× bare loop", "CPU s (machine)", "CPU s (sandbox)"], rows))
    print(f"target: each sync at most 1.3× the bare loop. 'its writes alone': the same batches into a new database with "
          f"nothing fetched alongside, the floor under a sync whatever the fetching costs. CPU: busy seconds of all "
          f"{CORES} cores over the run (this process, the sandbox, PostgreSQL, neighbours); a sync within 1.3× the bare "
          f"loop has at most {CORES} × 1.3 × {bare[0]:.2f} = {CORES * 1.3 * bare[0]:.2f} s of it")


def figures(run: tuple[float, int, float, float], bare_seconds: float) -> list[str]:
    seconds, count, machine, sandbox = run
    return [f"{seconds:.2f}", f"{count / seconds:,.0f}", f"{seconds / bare_seconds:.2f}", f"{machine:.2f}", f"{sandbox:.2f}"]


if __name__ == "__main__":
    main()
