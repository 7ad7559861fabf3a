"""Command line: `python -m pica_core sync [--resume RUN_ID] [--page-size N]`.

Runs the fleet sync against Pica (or, with no key set, a sandbox at PICA_API_URL) into the
configured database. Exit status: 0 complete, 1 partial, failed or interrupted (Ctrl-C, SIGTERM, the
database failing part-way), 2 bad configuration (a key Pica refuses, a database that cannot be opened)
or a run that cannot be resumed, 3 another sync of the environment is running (nothing done).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC

from sqlalchemy.exc import SQLAlchemyError

from .client import AsyncPicaClient
from .config import MAX_PAGE_SIZE, load_settings
from .errors import ConfigError
from .store import Store, failure_line, unopenable, utcnow
from .sync import CannotResume, SyncBusy, SyncLockLost, page_list, resume_sync, sync_fleet


def _progress(done: int, total: int, rows: int) -> None:
    """One line redrawn on a terminal; in a log (cron, systemd), a line at each tenth of the pages and the last: a
    redrawn line was one line thousands of characters long there."""
    if sys.stderr.isatty():
        print(f"\r  {done}/{total} pages, {rows} connections", end="", file=sys.stderr, flush=True)
    elif done == total or done * 10 // max(total, 1) != (done - 1) * 10 // max(total, 1):
        print(f"  {done}/{total} pages, {rows} connections", file=sys.stderr, flush=True)


async def _sync(args: argparse.Namespace) -> int:
    # How cron, systemd and Kubernetes stop a job: stop as Ctrl-C does (the sync, cancelled, records what it
    # stored), instead of dying with the run still marked running. Not through SIGINT, whose disposition is the
    # caller's (ignored under `sync &` in a script, so that a Ctrl-C to the script leaves the job be).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    settings = load_settings()
    for note in settings.ignored:
        print(f"Warning: {note}", file=sys.stderr)
    if not settings.api_url:
        raise ConfigError("No Pica to sync from: set PICA_SECRET_KEY (live), or PICA_API_URL to a running sandbox "
                          "(python -m pica_core.sandbox --port 8600 → PICA_API_URL=http://127.0.0.1:8600).")
    try:
        store = Store.from_url(settings.database_url)
    except SQLAlchemyError as exc:
        raise ConfigError(f"{unopenable(settings.database_url, exc)}.") from None
    if args.resume is not None and (run := store.sync_run(args.resume)) is not None and run.retry_at is not None \
            and run.retry_at > utcnow():  # said, not refused: Pica may have lifted it, and a schedule runs on anyway
        print(f"Warning: the rate limit sync #{run.id} met lifts at {run.retry_at.astimezone(UTC):%H:%M:%S} UTC: "
              "a resume before then is likely to meet it again.", file=sys.stderr)
    async with AsyncPicaClient.from_settings(settings) as client:
        if args.resume is not None:
            report = await resume_sync(client, store, args.resume, environment=settings.environment,
                                       page_size=args.page_size, progress=_progress)
        else:
            report = await sync_fleet(client, store, environment=settings.environment, page_size=args.page_size,
                                      progress=_progress)
    _end_progress()
    print(report.summary())
    for page, error in sorted(report.errors.items()):
        print(f"  page {page}: {error}", file=sys.stderr)
    if report.key_refused:
        return 2
    return 0 if report.status == "complete" else 1


def _end_progress() -> None:
    """End the redrawn progress line, so that what follows starts a line of its own."""
    if sys.stderr.isatty():
        print(file=sys.stderr)


def _interrupted() -> None:
    """After Ctrl-C: what the run stored and how to resume it, from its row (the sync marked it on the way out)."""
    try:
        settings = load_settings()
        run = Store.from_url(settings.database_url).last_sync(settings.environment)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the database may be why the sync hung (a second Ctrl-C)
        run = None
    if run is not None and run.status == "interrupted" and not run.pages_total:
        print(f"sync #{run.id}: interrupted before Pica's first page arrived, so nothing was stored; run a new sync")
    elif run is not None and run.status == "interrupted":
        print(f"sync #{run.id}: interrupted, {run.rows_seen:,} connections stored; pages left: "
              f"{page_list(run.failed_pages)} (--resume {run.id} fetches them)")
    else:
        print("sync interrupted: what it stored is kept; `--resume RUN_ID` with the latest run's id fetches the rest")


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PAGE_SIZE:,}, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pica_core")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="sync every connection of the account into the database")
    sync.add_argument("--resume", type=int, metavar="RUN_ID",
                      help="fetch the pages the latest run did not store (every page if Pica's list changed since)")
    sync.add_argument("--page-size", type=_page_size, default=None,
                      help="rows per page (default PICA_PAGE_SIZE); a resume keeps its run's, unless it starts over")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_sync(args))
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    except CannotResume as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (see _sync)
        _end_progress()
        _interrupted()
        return 1
    except SyncBusy as exc:  # a schedule overlapping itself: not a failure of this run, which did nothing
        print(str(exc), file=sys.stderr)
        return 3
    except SyncLockLost as exc:
        _end_progress()
        print(str(exc), file=sys.stderr)
        _interrupted()
        return 1
    except SQLAlchemyError as exc:  # part-way: each batch recorded with what it stored, so the run's row is exact
        _end_progress()
        print(f"The database failed during the sync: {failure_line(exc)}", file=sys.stderr)
        _interrupted()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
