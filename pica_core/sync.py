"""Fleet sync: every connection of the account (all identities) into the store.

Pages are fetched concurrently (bounded by the client) and each page is stored as soon as it
arrives, on one writer thread, so fetching never waits for the database and the database
sees one writer. Every batch also records, in its own transaction, which pages of the run are
not stored yet: a run that ends early however it ends (a page that failed after the client's
retries, Ctrl-C, a browser session that moved on, a killed process) keeps what it stored and
knows what it did not, and `resume_sync` fetches only those pages. One sync per database and
environment runs at a time (`Store.sync_lock`).

Pages are offsets into Pica's list. If the list changes while a run pages through it, a
connection can move onto a page already fetched and be missed: a run that sees the total
change ends partial, and its resume fetches every page again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from .client import AsyncPicaClient, Operation, PageResult
from .errors import AuthError, PicaError, RateLimitedError
from .models import ConnectionRow
from .store import HeldLock, Store, SyncBusy, SyncLockLost, SyncRun, failure_line, utcnow
from .text import count

__all__ = ["CannotResume", "SyncBusy", "SyncLockLost", "SyncReport", "pages_stored", "resume_sync", "sync_fleet"]

Progress = Callable[[int, int, int], None]  # (pages done, pages total, rows stored)


@dataclass
class SyncReport:
    run_id: int
    status: str  # complete | partial | failed | interrupted
    pages_total: int
    rows: int
    failed_pages: list[int] = field(default_factory=list)  # the pages a resume fetches
    errors: dict[int, str] = field(default_factory=dict)
    new: int = 0
    transitions: int = 0
    listing_changed: tuple[int, int] | None = None  # (connections when the run began, then)
    pages_done: int | None = None  # pages stored, when fewer than all
    resumed: bool = False  # new and transitions count what this resume stored, not the whole run
    not_asked_pages: list[int] = field(default_factory=list)  # left unasked once Pica refused the key or rate-limited
    key_refused: bool = False  # a page met a 401/403: no resume helps until the key is fixed
    refused_pages: list[int] = field(default_factory=list)  # those pages
    rate_limited: bool = False  # a page met a rate limit longer than the client's retry budget
    retry_at: datetime | None = None  # when the rate limit a page met lifts, if Pica said: a resume before meets it

    def met(self, page: int, exc: PicaError, *, doing: str = "") -> None:
        """Page `page` was not stored (or, `doing` says, not checked) because Pica answered `exc`."""
        self.errors[page] = f"{doing}: {exc.as_recorded()}" if doing else exc.as_recorded()
        if isinstance(exc, AuthError):
            self.key_refused = True
            self.refused_pages.append(page)
        if isinstance(exc, RateLimitedError):
            self.rate_limited = True
            if exc.retry_at is not None:
                self.retry_at = max(exc.retry_at, self.retry_at or exc.retry_at)

    @property
    def not_asked(self) -> int:
        return len(self.not_asked_pages)

    @property
    def stops_asking(self) -> bool:
        """Whether the pages left are better not asked for: each would meet the refusal or the limit again (and a
        limit is every caller's, end users' AuthKit tokens too)."""
        return self.key_refused or self.rate_limited

    def summary(self, resume: str | None = None) -> str:
        """What it did, and what is left; `resume` names how to resume it (the command's option by default)."""
        resume = resume or f"resume (--resume {self.run_id})"
        if self.status == "failed":  # nothing to count: its first page never arrived
            if self.key_refused:
                return (f"sync #{self.run_id}: failed, Pica refused the key, so nothing was stored; run a new "
                        "sync once what its answer says is resolved")
            return f"sync #{self.run_id}: failed before its first page arrived, so nothing was stored; run a new sync"
        pages = pages_stored(self.pages_total if self.pages_done is None else self.pages_done, self.pages_total)
        text = (f"sync #{self.run_id}: {self.status}, {count(self.rows, 'connection')} from {pages} "
                f"({self.new:,} new, {count(self.transitions, 'state change')}"
                f"{' in the pages it resumed' if self.resumed else ''})")
        if self.listing_changed:
            before, after = self.listing_changed
            text += (f"; Pica's list changed while it ran ({before:,} → {after:,} connections), so its pages shifted and a "
                     f"connection may have been missed: {resume} fetches every page again")
        elif self.failed_pages:
            refused = sorted(set(self.refused_pages) & set(self.failed_pages))
            # Pages never asked for did not fail: they are said below ("8" was in both)
            others = [p for p in self.failed_pages if p not in refused and p not in self.not_asked_pages]
            if refused:  # a resume with the same key would only be refused again
                pages = "page {} was" if len(refused) == 1 else "pages {} were"
                text += (f"; Pica refused the key, so {pages.format(page_list(refused))} not stored: once what its "
                         f"answer says is resolved, {resume} fetches {'it' if len(refused) == 1 else 'them'}")
            if others:
                text += f"; {'other ' if refused else ''}pages that failed: {page_list(others)} ({resume} fetches them again)"
            if self.not_asked:
                why = "Pica refused the key" if self.key_refused else "Pica's rate limit was reached (it is the whole account's)"
                text += (f"; {count(self.not_asked, 'page was', 'pages were')} not asked for once {why}"
                         + ("" if self.key_refused else f": {resume} fetches {'it' if self.not_asked == 1 else 'them'}"))
        return text


def pages_stored(done: int, total: int) -> str:
    """'3 pages', or '2 of 3 pages' when not all were stored."""
    return count(total, "page") if done >= total else f"{done:,} of {count(total, 'page')}"


def page_list(pages: list[int], most: int = 8) -> str:
    """'3, 7–9, 12' (runs of pages joined), the first `most` runs and how many pages in all."""
    runs: list[list[int]] = []
    for page in sorted(pages):
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs[:most])
    return text + (f", … ({count(len(pages), 'page')})" if len(runs) > most else "")


class _Writer:
    """Stores pages on one thread, and with each batch the run's progress. Pages that arrive while a write runs go
    together into the next one: fewer, larger transactions when fetching outpaces the database, one page at a time
    when it does not.

    When the database falls behind, fetching waits: at most MAX_PENDING_ROWS rows are fetched and not yet
    stored, so memory stays bounded whatever the size of the fleet.
    """

    MAX_BATCH_ROWS = 3000
    MAX_PENDING_ROWS = 2 * MAX_BATCH_ROWS

    def __init__(self, store: Store, run: SyncRun, report: SyncReport, progress: Progress | None,
                 lock: HeldLock) -> None:
        self.store = store
        self.run_id = run.id
        self.lock = lock  # every batch is written under it, and stops the run once it is lost
        self.page_size = run.page_size
        self.report = report
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-writer")
        self.queue: list[tuple[PageResult, int, asyncio.Future]] = []
        self.flushing = False
        self.unstored: set[int] = set(run.failed_pages)  # what a resume of this run would fetch
        self.rows_total = run.rows_total
        self.pages_done = run.pages_done
        self.rows = run.rows_seen
        self.new = 0
        self.transitions = 0
        self.began = utcnow()  # this pass's start: the state_since of what it sees for the first time

    def plan(self, first: PageResult, *, since: datetime | None = None) -> None:
        """A pass over every page, as many as page 1 says. A resume's new pass gives `since`, when it began: the
        run's start then moves there, since the fleet is what a complete run saw from its start on."""
        self.report.pages_total = first.page_count(self.page_size)
        self.rows_total = first.total
        self.unstored = set(range(1, self.report.pages_total + 1))
        self.pages_done = self.rows = 0
        self.store.update_sync(self.run_id, pages_total=self.report.pages_total, rows_total=first.total,
                               pages_done=0, rows_seen=0, failed_pages=sorted(self.unstored),
                               **({"started_at": since} if since else {}))

    def _to_resume(self, unstored: set[int]) -> list[int]:
        """What a resume must fetch: the pages not stored, or every page once Pica's list changed under the run."""
        return list(range(1, self.report.pages_total + 1)) if self.report.listing_changed else sorted(unstored)

    async def write(self, page: PageResult, number: int) -> None:
        """Queue page `number` and return once it is stored. The first caller to find no write running writes
        until the queue is empty; if that fails, every queued caller gets the error."""
        if page.total != self.rows_total and self.report.listing_changed is None:
            self.report.listing_changed = (self.rows_total, page.total)
        loop = asyncio.get_running_loop()
        stored = loop.create_future()
        self.queue.append((page, number, stored))
        if not self.flushing:
            self.flushing = True
            try:
                while self.queue:
                    batch, rows = [], []
                    while self.queue and (not rows or len(rows) + len(self.queue[0][0].rows) <= self.MAX_BATCH_ROWS):
                        batch.append(self.queue.pop(0))
                        rows += batch[-1][0].rows
                    first_time = {number: len(page.rows) for page, number, _ in batch if number in self.unstored}
                    unstored = self.unstored - first_time.keys()
                    done, seen = self.pages_done + len(first_time), self.rows + sum(first_time.values())
                    try:
                        # Seen when Pica answered, not when written: a lookup stored in between is newer news. The
                        # batch's first answer dates it all: a statement per page, to date each by its own, doubled
                        # a first sync's time on PostgreSQL (bench/fleet_sync.py).
                        result = await loop.run_in_executor(self.pool, functools.partial(
                            self.store.upsert_rows, rows, source="sync", sync_id=self.run_id,
                            seen_at=min(page.received_at for page, _, _ in batch),
                            first_seen_since=self.began, locked=self.lock, sync_progress={
                                "pages_done": done, "rows_seen": seen, "failed_pages": self._to_resume(unstored)}))
                    except BaseException as exc:
                        for _, _, waiting in [*batch, *self.queue]:
                            if waiting is stored or waiting.done():  # this caller gets it raised right here
                                continue
                            waiting.cancel() if isinstance(exc, asyncio.CancelledError) else waiting.set_exception(exc)
                        self.queue.clear()
                        raise
                    self.unstored, self.pages_done, self.rows = unstored, done, seen
                    self.new += result.inserted
                    self.transitions += result.transitions
                    if self.progress:
                        self.progress(self.pages_done, self.report.pages_total, self.rows)
                    for _, _, waiting in batch:
                        waiting.set_result(None)
            finally:
                self.flushing = False
        await stored

    def finish(self) -> SyncReport:
        report = self.report
        report.failed_pages = self._to_resume(self.unstored)
        report.rows, report.new, report.transitions = self.rows, self.new, self.transitions
        report.pages_done = self.pages_done
        report.status = "complete" if not report.failed_pages else "partial"
        if report.listing_changed:
            error = "Pica's list changed while the sync ran ({} → {} connections); resume fetches every page".format(
                *report.listing_changed)
        else:
            error = "; ".join(f"page {p}: {e}" for p, e in sorted(report.errors.items())[:5]) or None
        self.store.update_sync(self.run_id, status=report.status, pages_done=self.pages_done, rows_seen=self.rows,
                               retry_at=report.retry_at if report.rate_limited else None,
                               failed_pages=report.failed_pages, error=error, finished_at=utcnow())
        return report

    def stopped(self, exc: BaseException) -> None:
        """The run ends early: what it stored stays, and what a resume must fetch is on its row, written with
        each batch. A write under way ends first (a cancelled caller does not stop the thread's commit), so the
        row, not this object, is exact. Stopped once every page was stored, it is complete."""
        self.pool.shutdown(wait=True)
        report = self.report
        report.status, report.failed_pages = "interrupted", self._to_resume(self.unstored)
        why = f": {type(exc).__name__}: {failure_line(exc)}" if isinstance(exc, Exception) else ""
        try:
            row = self.store.sync_run(self.run_id)
            report.failed_pages, report.rows = list(row.failed_pages), row.rows_seen
            if row.pages_total and not row.failed_pages:
                report.status = "complete"
                self.store.update_sync(self.run_id, status="complete", error=None, finished_at=utcnow())
            else:
                self.store.update_sync(self.run_id, status="interrupted", error=f"stopped before it finished{why}",
                                       finished_at=utcnow())
        except Exception:  # noqa: BLE001 - the database may be what failed; the next sync's lock marks the run
            pass

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _fleet_operation(client: AsyncPicaClient, page_size: int) -> Operation:
    """Every connection of the account, pages parsed into the rows the store keeps."""
    return client.connections_operation(page_size=page_size, row_model=ConnectionRow)


async def _fetch_pages(client: AsyncPicaClient, pages: list[int], page_size: int, writer: _Writer) -> None:
    op = _fleet_operation(client, page_size)

    room = asyncio.Semaphore(max(1, writer.MAX_PENDING_ROWS // page_size))  # pages fetched and not yet stored
    # The client's own bound, taken here too: a page waiting for a slot must see a rate limit met meanwhile.
    asking = asyncio.Semaphore(client.max_concurrency)

    async def one(number: int) -> None:
        async with room:
            async with asking:
                if writer.report.stops_asking:  # asking on would only meet the refusal or the limit again
                    writer.report.not_asked_pages.append(number)
                    return
                try:
                    page = await client.fetch_page(op, number, page_size)
                except PicaError as exc:  # it stays unstored: the run ends partial and a resume fetches it
                    # (a rate limit: the client waited out every one its retry budget allowed, this one lasts longer)
                    writer.report.met(number, exc)
                    return
            await writer.write(page, number)

    tasks = [asyncio.ensure_future(one(n)) for n in pages]
    try:
        await asyncio.gather(*tasks)
    finally:  # if one failed (or the run was stopped), the others must not go on fetching and storing
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _recorded(writer: _Writer, work: Callable[[], Awaitable[SyncReport]]) -> SyncReport:
    try:
        return await work()
    except BaseException as exc:
        writer.stopped(exc)
        raise
    finally:
        writer.close()


async def sync_fleet(client: AsyncPicaClient, store: Store, *, environment: str, page_size: int | None = None,
                     progress: Progress | None = None) -> SyncReport:
    """A new run over every page. Raises `SyncBusy` if another sync of this environment is running."""
    with store.sync_lock(environment) as lock:
        return await _new_run(client, store, lock, page_size or client.page_size, progress)


async def _new_run(client: AsyncPicaClient, store: Store, lock: HeldLock, page_size: int,
                   progress: Progress | None, resumed_from: int | None = None) -> SyncReport:
    run = store.start_sync(lock.environment, page_size, resumed_from=resumed_from)
    report = SyncReport(run.id, "running", 0, 0)
    writer = _Writer(store, run, report, progress, lock)

    async def work() -> SyncReport:
        try:
            first = await client.fetch_page(_fleet_operation(client, page_size), 1, page_size)
        except PicaError as exc:  # nothing to page through: a resume starts over
            store.update_sync(run.id, status="failed", error=exc.as_recorded(), finished_at=utcnow(), failed_pages=[1])
            report.status, report.failed_pages = "failed", [1]
            report.met(1, exc)
            return report
        writer.plan(first)
        await writer.write(first, 1)
        await _fetch_pages(client, list(range(2, report.pages_total + 1)), page_size, writer)
        return writer.finish()

    return await _recorded(writer, work)


def _second_look(number: int, run: SyncRun) -> int | None:
    """The stored page `_list_moved` looks at again when page `number` is the first left: page 1, where Pica lists
    a new connection; with page 1 itself left, the first stored after it, onto which a new one pushes the last of
    the page before. None when no page was stored in this pass."""
    if number != 1:
        return 1
    return next((p for p in range(2, run.pages_total + 1) if p not in run.failed_pages), None)


async def _list_moved(client: AsyncPicaClient, op: Operation, store: Store, run: SyncRun, page: PageResult,
                      look: int | None) -> tuple[bool, PageResult | None]:
    """Whether Pica's list moved under stored run `run`, with its total unchanged, as far as two looks can tell:
    `page` (not stored) holds a connection the run's pass already stored on another page, or page `look` (stored,
    `_second_look`) holds one the pass did not store. With page 1, when it was fetched for the second look."""
    if store.seen_in_run([row["key"] for row in page.rows], run):
        return True, None
    if look is None:  # nothing stored to compare with
        return False, None
    second = await client.fetch_page(op, look, run.page_size)
    keys = [row["key"] for row in second.rows]
    moved = second.total != run.rows_total or len(store.seen_in_run(keys, run)) != len(set(keys))
    return moved, second if look == 1 else None


class CannotResume(Exception):
    """The run named cannot be resumed (the message says why and what to do instead)."""


async def resume_sync(client: AsyncPicaClient, store: Store, run_id: int, *, environment: str,
                      page_size: int | None = None, progress: Progress | None = None) -> SyncReport:
    """Fetch the pages run `run_id` did not store (every page if Pica's list changed since), in pages of the run's
    size (`page_size`, or the client's, only when it starts over: the stored pages are offsets). Only the latest run
    of its environment can resume, and only with a key of that environment (`environment`, the client's): a
    newer run has fetched everything since, and another environment's connections would complete it."""
    run = store.sync_run(run_id)
    if run is None:
        raise CannotResume(f"There is no sync #{run_id}.")
    if run.environment != environment:
        raise CannotResume(f"Sync #{run_id} is of the {run.environment} environment and the key is a {environment} "
                           f"key: resume it with a {run.environment} key, or run a new sync.")
    with store.sync_lock(run.environment) as lock:
        run = store.sync_run(run_id)  # the lock marked it interrupted if its process had ended
        latest = store.last_sync(run.environment)
        if latest is not None and latest.id != run.id:
            raise CannotResume(f"Sync #{run.id} is not the latest of the {run.environment} environment (#{latest.id} "
                             "is): run a new sync, or resume the latest.")
        if run.pages_total == 0:  # the first page never arrived: start over, with today's page size (the run's
            # may be what Pica refused)
            return await _new_run(client, store, lock, page_size or client.page_size, progress, resumed_from=run.id)
        if not run.failed_pages:  # every page stored (by a process that ended before it could say so)
            if run.status != "complete":
                store.update_sync(run.id, status="complete", error=None, finished_at=run.finished_at or utcnow())
            return SyncReport(run.id, "complete", run.pages_total, run.rows_seen)
        report = SyncReport(run.id, "running", run.pages_total, run.rows_seen, resumed=True)
        writer = _Writer(store, run, report, progress, lock)
        store.update_sync(run.id, status="running", error=None, finished_at=None, retry_at=None)

        async def work() -> SyncReport:
            number = min(run.failed_pages)  # first alone: it says how many connections Pica lists now
            began = utcnow()
            op = _fleet_operation(client, run.page_size)
            try:
                first = await client.fetch_page(op, number, run.page_size)
            except PicaError as exc:  # a key rotated or revoked since the run, a limit not lifted yet, …
                report.met(number, exc)
                return writer.finish()
            # Pages are offsets into a list: if it changed, since the run began or under it, every page may differ. A
            # total that changed says so; one a new and a deleted connection left as it was does not.
            moved, page_1 = first.total != run.rows_total or len(run.failed_pages) >= run.pages_total, None
            if not moved:
                look = _second_look(number, run)
                try:
                    moved, page_1 = await _list_moved(client, op, store, run, first, look)
                except PicaError as exc:  # unchecked, the pages left could be the wrong ones: none is fetched
                    report.met(look, exc, doing="looked at again to check that Pica's list had not moved")
                    return writer.finish()
            if moved:
                writer.plan(first, since=began)
            await writer.write(first, number)
            if moved and page_1 is not None:  # already fetched: page 1 of the list as it is now
                await writer.write(page_1, 1)
            await _fetch_pages(client, sorted(writer.unstored - {number}), run.page_size, writer)
            return writer.finish()

        return await _recorded(writer, work)
