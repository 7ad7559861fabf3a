"""Fleet sync: every connection of the account (all identities) into the store.

Pages are fetched concurrently (bounded by the client) and each page is stored as soon as it
arrives, on one writer thread, so fetching never waits for the database and the database
sees one writer. A page that fails (after the client's retries) is recorded on the run and
skipped; what was stored stays stored, and `resume` fetches only the failed pages again.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Callable

from .client import AsyncPicaClient, Operation, PageResult
from .errors import PicaError
from .models import ConnectionRow
from .store import Store, utcnow

Progress = Callable[[int, int, int], None]  # (pages done, pages total, rows stored)


@dataclass
class SyncReport:
    run_id: int
    status: str
    pages_total: int
    rows: int
    failed_pages: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    new: int = 0
    transitions: int = 0

    def summary(self) -> str:
        text = f"sync #{self.run_id}: {self.status}, {self.rows} connections from {self.pages_total} pages"
        text += f" ({self.new} new, {self.transitions} state changes)"
        if self.failed_pages:
            text += f"; pages that failed: {', '.join(map(str, self.failed_pages))} (resume with --resume {self.run_id})"
        return text


class _Writer:
    """Stores pages on one thread. Pages that arrive while a write runs go together into the next one: fewer,
    larger transactions when fetching outpaces the database, one page at a time when it does not.

    When the database falls behind, fetching waits: at most MAX_PENDING_ROWS rows are fetched and not yet
    stored, so memory stays bounded whatever the size of the fleet.
    """

    MAX_BATCH_ROWS = 3000
    MAX_PENDING_ROWS = 2 * MAX_BATCH_ROWS

    def __init__(self, store: Store, run_id: int, report: SyncReport, progress: Progress | None,
                 pages_done: int = 0, rows: int = 0) -> None:
        self.store = store
        self.run_id = run_id
        self.report = report
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-writer")
        self.pending: list[tuple[PageResult, asyncio.Future]] = []
        self.flushing = False
        self.pages_done = pages_done
        self.rows = rows
        self.new = 0
        self.transitions = 0

    async def write(self, page: PageResult) -> None:
        """Queue a page and return once it is stored. The first caller to find no write running writes until
        the queue is empty; if that fails, every queued caller gets the error."""
        loop = asyncio.get_running_loop()
        stored = loop.create_future()
        self.pending.append((page, stored))
        if not self.flushing:
            self.flushing = True
            try:
                while self.pending:
                    batch, rows = [], []
                    while self.pending and (not rows or len(rows) + len(self.pending[0][0].rows) <= self.MAX_BATCH_ROWS):
                        batch.append(self.pending.pop(0))
                        rows += batch[-1][0].rows
                    try:
                        result = await loop.run_in_executor(self.pool, functools.partial(
                            self.store.upsert_rows, rows, source="sync", sync_id=self.run_id))
                    except BaseException as exc:
                        for _, waiting in [*batch, *self.pending]:
                            if waiting is stored or waiting.done():  # this caller gets it raised right here
                                continue
                            waiting.cancel() if isinstance(exc, asyncio.CancelledError) else waiting.set_exception(exc)
                        self.pending.clear()
                        raise
                    self.pages_done += len(batch)
                    self.rows += len(rows)
                    self.new += result.inserted
                    self.transitions += result.transitions
                    if self.progress:
                        self.progress(self.pages_done, self.report.pages_total, self.rows)
                    for _, waiting in batch:
                        waiting.set_result(None)
            finally:
                self.flushing = False
        await stored

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _fleet_operation(client: AsyncPicaClient, page_size: int) -> Operation:
    """Every connection of the account, pages parsed into the rows the store keeps."""
    return client.connections_operation(page_size=page_size, row_model=ConnectionRow)


async def _fetch_pages(client: AsyncPicaClient, pages: list[int], page_size: int, writer: _Writer,
                       report: SyncReport) -> None:
    op = _fleet_operation(client, page_size)

    room = asyncio.Semaphore(max(1, writer.MAX_PENDING_ROWS // page_size))  # pages fetched and not yet stored

    async def one(number: int) -> None:
        async with room:
            try:
                page = await client.fetch_page(op, number, page_size)
            except PicaError as exc:
                report.failed_pages.append(number)
                report.errors[number] = str(exc)
                return
            await writer.write(page)

    await asyncio.gather(*(one(n) for n in pages))


async def sync_fleet(client: AsyncPicaClient, store: Store, *, environment: str, page_size: int | None = None,
                     progress: Progress | None = None) -> SyncReport:
    page_size = page_size or client.page_size
    run = store.start_sync(environment, page_size)
    report = SyncReport(run.id, "running", 0, 0)
    writer = _Writer(store, run.id, report, progress)
    try:
        op = _fleet_operation(client, page_size)
        try:
            first = await client.fetch_page(op, 1, page_size)
        except PicaError as exc:
            store.update_sync(run.id, status="failed", error=str(exc), finished_at=utcnow(), failed_pages=[1])
            report.status, report.failed_pages, report.errors = "failed", [1], {1: str(exc)}
            return report
        report.pages_total = max(1, first.pages)
        store.update_sync(run.id, pages_total=report.pages_total)
        await writer.write(first)
        await _fetch_pages(client, list(range(2, report.pages_total + 1)), page_size, writer, report)
        return _finish(store, run.id, report, writer)
    finally:
        writer.close()


async def resume_sync(client: AsyncPicaClient, store: Store, run_id: int, *,
                      progress: Progress | None = None) -> SyncReport:
    """Fetch again only the pages that failed in run `run_id`; stored rows are not fetched twice."""
    run = store.sync_run(run_id)
    if run is None:
        raise ValueError(f"There is no sync #{run_id}.")
    if not run.failed_pages:
        return SyncReport(run.id, run.status, run.pages_total, run.rows_seen)
    if run.pages_total == 0:  # the first page never arrived: start over
        return await sync_fleet(client, store, environment=run.environment, page_size=run.page_size,
                                progress=progress)
    report = SyncReport(run.id, "running", run.pages_total, 0)
    writer = _Writer(store, run.id, report, progress, pages_done=run.pages_done, rows=run.rows_seen)
    try:
        await _fetch_pages(client, sorted(run.failed_pages), run.page_size, writer, report)
        return _finish(store, run.id, report, writer)
    finally:
        writer.close()


def _finish(store: Store, run_id: int, report: SyncReport, writer: _Writer) -> SyncReport:
    report.failed_pages.sort()
    report.rows = writer.rows
    report.new = writer.new
    report.transitions = writer.transitions
    report.status = "complete" if not report.failed_pages else "partial"
    error = "; ".join(f"page {p}: {report.errors[p]}" for p in report.failed_pages[:5]) or None
    store.update_sync(run_id, status=report.status, pages_done=writer.pages_done, rows_seen=writer.rows,
                      failed_pages=report.failed_pages, error=error, finished_at=utcnow())
    return report
