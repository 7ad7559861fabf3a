"""Fleet sync against the sandbox: counts, transitions, failures part-way and resume; the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest

from pica_core.client import AsyncPicaClient, PicaClient, RetryPolicy
from pica_core.config import SANDBOX_LIVE_KEY, SANDBOX_TEST_KEY, Secret
from pica_core.models import Connection
from pica_core.store import ConnectionTransition, Store, UserConnection, utcnow
from pica_core.sync import CannotResume, SyncBusy, SyncReport, page_list, resume_sync, sync_fleet
from tests.conftest import ROOT, free_port

FAST_RETRY = RetryPolicy(max_retries=1, deadline_seconds=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def store(database_url):
    s = Store.from_url(database_url)
    yield s
    s.engine.dispose()


def run(sandbox, store, resume: int | None = None, page_size: int = 100, progress=None, environment: str = "test"):
    async def go():
        key = SANDBOX_LIVE_KEY if environment == "live" else SANDBOX_TEST_KEY
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(key), page_size=page_size,
                                   retry=FAST_RETRY, max_concurrency=3) as client:
            if resume is not None:
                return await resume_sync(client, store, resume, environment=environment, progress=progress)
            return await sync_fleet(client, store, environment=environment, page_size=page_size, progress=progress)

    return asyncio.run(go())


def test_sync_stores_every_connection_with_exact_request_count(sandbox, store):
    sandbox.control("DELETE", "stats")
    report = run(sandbox, store)
    assert (report.status, report.rows, report.pages_total, report.new) == ("complete", 720, 8, 720)
    assert sandbox.count("vault/connections") == 8
    assert store.count(UserConnection) == 720
    assert store.sync_run(report.run_id).status == "complete"


def test_fetching_waits_for_a_slow_database(sandbox, store, monkeypatch):
    """Pages fetched but not yet written stay bounded (memory on a big fleet), and nothing is lost."""
    import time

    from pica_core import sync

    monkeypatch.setattr(sync._Writer, "MAX_PENDING_ROWS", 100)
    fetched_ahead: list[int] = []
    written = 0
    slow_upsert = store.upsert_rows

    def upsert_rows(rows, **kwargs):
        nonlocal written
        time.sleep(0.05)
        fetched_ahead.append(sandbox.count("vault/connections") * 50 - written)
        result = slow_upsert(rows, **kwargs)
        written += len(rows)
        return result

    monkeypatch.setattr(store, "upsert_rows", upsert_rows)
    sandbox.control("DELETE", "stats")
    report = run(sandbox, store, page_size=50)
    assert (report.status, report.rows) == ("complete", 720) and store.count(UserConnection) == 720
    assert max(fetched_ahead) <= 100, fetched_ahead  # fetched and not yet stored: the limit, never more
    assert len(fetched_ahead) > 720 // 100  # so the writes came in many batches, not one at the end


def test_a_database_failure_mid_sync_is_raised_not_hung(sandbox, store, monkeypatch):
    calls = []
    upsert = store.upsert_rows

    def failing(rows, **kwargs):
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return upsert(rows, **kwargs)

    monkeypatch.setattr(store, "upsert_rows", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run(sandbox, store, page_size=50)
    assert 0 < store.count(UserConnection) < 720  # what was stored before the failure stays
    stopped = store.last_sync("test")
    assert stopped.status == "interrupted" and "disk full" in stopped.error
    assert stopped.rows_seen == store.count(UserConnection) and len(stopped.failed_pages) == 15 - stopped.pages_done
    monkeypatch.undo()
    resumed = run(sandbox, store, resume=stopped.id, page_size=50)
    assert (resumed.status, resumed.rows) == ("complete", 720) and store.count(UserConnection) == 720


def test_a_database_failure_is_recorded_as_the_driver_s_line_without_the_statement_or_its_rows(sandbox, store,
                                                                                                monkeypatch):
    """The run's row, shown on Fleet health, carried the SQL and its parameters: the batch's keys and identities."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def locked(rows, **kwargs):
        raise OperationalError("UPDATE user_connections SET last_seen_at = :now", {"pairs": rows[0]["key"]},
                               sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(store, "upsert_rows", locked)
    with pytest.raises(OperationalError):
        run(sandbox, store, page_size=50)
    error = store.last_sync("test").error
    assert error == "stopped before it finished: OperationalError: database is locked", error


def late_connection(sandbox) -> dict:
    """A connection made at Pica now: newest first, it moves every other one a place down the list."""
    return sandbox.state.add_connection(platform="gmail", environment="test", identity="late-user", identity_type="user")


def test_a_sync_stopped_part_way_keeps_what_it_stored_and_resume_fetches_the_rest(sandbox, store, monkeypatch):
    from pica_core import sync

    monkeypatch.setattr(sync._Writer, "MAX_BATCH_ROWS", 100)  # a page a batch: it stops with pages left to fetch

    def stop(done, total, rows):
        if done >= 3:
            raise KeyboardInterrupt  # Ctrl-C, or Streamlit stopping a script whose page was left
    with pytest.raises(KeyboardInterrupt):
        run(sandbox, store, progress=stop)
    stopped = store.last_sync("test")
    stored = store.count(UserConnection)
    assert stopped.status == "interrupted" and stopped.rows_seen == stored == 300
    assert stopped.failed_pages and len(stopped.failed_pages) == 8 - stopped.pages_done  # exactly what it did not store
    assert store.not_seen("test") == []  # an unfinished run says nothing of what is gone
    sandbox.control("DELETE", "stats")
    resumed = run(sandbox, store, resume=stopped.id)
    assert (resumed.run_id, resumed.status, resumed.rows, resumed.failed_pages) == (stopped.id, "complete", 720, [])
    assert sandbox.count("vault/connections") == len(stopped.failed_pages) + 1  # and page 1, looked at again
    assert store.count(UserConnection) == 720 and store.not_seen("test") == []


def test_a_sync_stopped_before_its_first_page_resumes_by_starting_over(sandbox, store):
    sandbox.fault("latency", seconds=1, count=1, path="/v1/vault")

    async def stopped_early():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), page_size=100) as client:
            await asyncio.wait_for(sync_fleet(client, store, environment="test", page_size=100), 0.2)

    with pytest.raises(TimeoutError):
        asyncio.run(stopped_early())
    stopped = store.last_sync("test")
    assert (stopped.status, stopped.pages_total, stopped.failed_pages) == ("interrupted", 0, [1])
    resumed = run(sandbox, store, resume=stopped.id)
    assert (resumed.status, resumed.rows) == ("complete", 720) and resumed.run_id != stopped.id


def test_a_sync_stopped_once_every_page_was_stored_is_complete(sandbox, store):
    def stop(done, total, rows):
        if done == total:
            raise KeyboardInterrupt  # the page was left as its last progress report was drawn

    with pytest.raises(KeyboardInterrupt):
        run(sandbox, store, progress=stop)
    last = store.last_sync("test")
    assert (last.status, last.failed_pages, last.rows_seen) == ("complete", [], 720)
    assert store.not_seen("test") == [] and sum(store.state_counts("test").values()) == 720


def test_one_sync_at_a_time(sandbox, store, database_url):
    other = Store.from_url(database_url)  # another process's engine: its own connections (and, on SQLite, file)
    try:
        with other.sync_lock("test"):
            running = other.start_sync("test", 100)
            with pytest.raises(SyncBusy, match=f"Another fleet sync of the test environment is running \\(#{running.id}"):
                run(sandbox, store)
            with pytest.raises(SyncBusy):
                run(sandbox, store, resume=running.id)
        # the holder ended without finishing its run: the next sync marks it interrupted, then runs
        assert run(sandbox, store).status == "complete"
        assert store.sync_run(running.id).status == "interrupted"
    finally:
        other.engine.dispose()


def test_only_the_latest_run_resumes(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=3")
    old = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    assert run(sandbox, store).status == "complete"
    with pytest.raises(CannotResume, match=f"#{old.run_id} is not the latest"):
        run(sandbox, store, resume=old.run_id)


def test_a_run_resumes_only_with_a_key_of_its_environment(sandbox, store):
    """A test run resumed with a live key would be completed with live connections: the test fleet would then read
    as all gone (its latest complete run saw none of them)."""
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=3")
    partial = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")

    async def resume_live():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_LIVE_KEY), retry=FAST_RETRY) as client:
            return await resume_sync(client, store, partial.run_id, environment="live")

    with pytest.raises(CannotResume, match=f"Sync #{partial.run_id} is of the test environment and the key is a "
                                           "live key: resume it with a test key"):
        asyncio.run(resume_live())
    assert sandbox.count() == 0 and store.sync_run(partial.run_id).status == "partial"


def test_resume_after_pica_list_changed_fetches_every_page(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=3")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    late_connection(sandbox)  # page 3 now starts a row earlier: fetching it alone would miss a connection
    sandbox.control("DELETE", "stats")
    resumed = run(sandbox, store, resume=report.run_id)
    assert (resumed.status, resumed.rows, resumed.failed_pages) == ("complete", 721, [])
    assert sandbox.count("vault/connections") == 8  # every page
    assert store.count(UserConnection) == 721 and store.not_seen("test") == []


@pytest.mark.parametrize("deleted_on", [2, 6])
def test_a_resume_after_a_new_and_a_deleted_connection_left_the_total_as_it_was_fetches_every_page(sandbox, store,
                                                                                                  deleted_on):
    """Only a changed total was noticed: the resume fetched page 5 alone and said complete, with the new connection
    never stored, one moved past page 5 left unseen and the deleted one counted (the total the same)."""
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    new = late_connection(sandbox)  # the newest: first on page 1, every other one a place down
    listed = [sandbox.state.connections[cid] for cid in sandbox.state.order
              if sandbox.state.connections[cid]["environment"] == "test"]
    gone = listed[(deleted_on - 1) * 100 + 50]
    sandbox.state.delete_connection(gone["id"])
    resumed = run(sandbox, store, resume=report.run_id)
    assert (resumed.status, resumed.rows) == ("complete", 720)
    assert store.stored_connection(new["key"]) is not None
    assert [c.connection_key for c in store.not_seen("test")] == [gone["key"]]
    assert sum(store.state_counts("test").values()) == 720


@pytest.mark.parametrize("failing", [6, 1])
def test_a_resume_after_a_pass_over_every_page_fetches_only_what_that_pass_did_not_store(sandbox, store, failing):
    """What the earlier pass stored looked like a moved list: every later resume fetched every page again."""
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    late_connection(sandbox)  # the total changed: the resume passes over every page
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query=f"page={failing}")
    again = run(sandbox, store, resume=report.run_id)
    assert again.failed_pages == [failing], again.summary()
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")
    done = run(sandbox, store, resume=report.run_id)
    assert (done.status, done.rows) == ("complete", 721)
    assert sandbox.count("vault/connections") == 2  # and page 1 again (page 2 for page 1), to check


def page_1_left(sandbox, store) -> SyncReport:
    """A partial run, then a resume of it that passed over every page (the total had changed) and lost page 1."""
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    late_connection(sandbox)
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=1")
    assert run(sandbox, store, resume=report.run_id).failed_pages == [1]
    sandbox.control("DELETE", "faults")
    return report


def test_a_resume_of_page_1_alone_sees_a_new_connection_push_its_last_onto_page_2(sandbox, store):
    """A new connection (first on page 1) and a deleted one further down, the total as it was: page 1's last moved
    onto page 2, which the pass had stored. The resume said complete, and Fleet listed it as gone."""
    report = page_1_left(sandbox, store)
    listed = [c for c in map(sandbox.state.connections.get, sandbox.state.order) if c["environment"] == "test"]
    late_connection(sandbox)
    sandbox.state.delete_connection(listed[550]["id"])
    done = run(sandbox, store, resume=report.run_id)
    assert (done.status, done.rows) == ("complete", 721)
    assert [c.connection_key for c in store.not_seen("test")] == [listed[550]["key"]]


def test_a_resume_that_finds_the_list_moved_on_page_1_fetches_it_once(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    late_connection(sandbox)
    listed = [cid for cid in sandbox.state.order if sandbox.state.connections[cid]["environment"] == "test"]
    sandbox.state.delete_connection(listed[150])  # on page 2: the total is as it was
    sandbox.control("DELETE", "stats")
    resumed = run(sandbox, store, resume=report.run_id)
    assert (resumed.status, resumed.rows) == ("complete", 720)
    assert sandbox.count("vault/connections") == 8  # page 5, page 1 (the check), then the other six


def test_a_list_changing_under_a_sync_ends_it_partial_and_its_resume_fetches_every_page(sandbox, store):
    def grow(done, total, rows):
        if done == 1:  # page 1 is stored before the others are asked for
            late_connection(sandbox)
    report = run(sandbox, store, progress=grow)
    assert (report.status, report.listing_changed, report.failed_pages) == ("partial", (720, 721), list(range(1, 9)))
    assert "changed while it ran (720 → 721 connections)" in report.summary()
    assert "720 → 721" in store.sync_run(report.run_id).error
    resumed = run(sandbox, store, resume=report.run_id)
    assert (resumed.status, resumed.rows) == ("complete", 721) and store.count(UserConnection) == 721


def test_a_list_that_changed_and_changed_back_is_fetched_again_without_counting_twice(sandbox, store):
    added = []

    def grow(done, total, rows):
        if done == 1:
            added.append(late_connection(sandbox))
    report = run(sandbox, store, progress=grow)
    sandbox.state.delete_connection(added[0]["id"])  # Pica lists 720 again, as when the run began
    resumed = run(sandbox, store, resume=report.run_id)
    row = store.sync_run(report.run_id)
    assert (resumed.status, resumed.rows, row.pages_done, row.rows_seen) == ("complete", 720, 8, 720)


def test_a_resume_that_fetches_every_page_again_counts_only_what_it_saw(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=3")
    report = run(sandbox, store)
    sandbox.control("DELETE", "faults")
    gone = max((c for c in sandbox.state.connections.values() if c["environment"] == "test"),
               key=lambda c: c["createdAt"])  # the newest: on page 1, which the partial run stored
    sandbox.state.delete_connection(gone["id"])
    resumed = run(sandbox, store, resume=report.run_id)  # 719 now: every page again
    assert (resumed.status, resumed.rows) == ("complete", 719)
    assert [c.connection_key for c in store.not_seen("test")] == [gone["key"]]
    assert sum(store.state_counts("test").values()) == 719


def test_a_sync_stopped_just_after_its_last_commit_is_complete(sandbox, store, monkeypatch):
    from pica_core import sync

    monkeypatch.setattr(sync._Writer, "MAX_BATCH_ROWS", 100)
    write = Store.upsert_rows

    def write_then_stop(self, rows, **options):
        result = write(self, rows, **options)
        if options.get("sync_progress", {}).get("failed_pages") == []:
            raise ConnectionResetError("lost after the commit")  # the writer never learns its last batch went in
        return result

    monkeypatch.setattr(Store, "upsert_rows", write_then_stop)
    with pytest.raises(ConnectionResetError):
        run(sandbox, store)
    last = store.last_sync("test")
    assert (last.status, last.failed_pages, last.rows_seen) == ("complete", [], 720)


def test_a_run_whose_process_ended_after_its_last_batch_is_complete(sandbox, store):
    finished = store.start_sync("test", 100)  # as a killed process leaves it: every page stored, still 'running'
    store.update_sync(finished.id, pages_total=8, pages_done=8, rows_seen=720, failed_pages=[])
    with store.sync_lock("test"):
        assert store.sync_run(finished.id).status == "complete"
    left = store.start_sync("test", 100)
    store.update_sync(left.id, pages_total=8, pages_done=7, rows_seen=620, failed_pages=[5], status="interrupted")
    store.update_sync(left.id, failed_pages=[])  # an older dashboard's row: interrupted with nothing left to fetch
    resumed = run(sandbox, store, resume=left.id)
    assert resumed.status == "complete" and store.sync_run(left.id).status == "complete"
    assert sandbox.count("vault/connections") == 0


def test_sync_summary_reads_as_a_sentence():
    report = SyncReport(run_id=7, status="complete", rows=50_000, pages_total=167, new=1, transitions=1)
    assert report.summary() == "sync #7: complete, 50,000 connections from 167 pages (1 new, 1 state change)"
    report = SyncReport(run_id=8, status="partial", rows=1, pages_total=1, new=0, transitions=2, failed_pages=[1])
    assert report.summary(resume="**Resume**") == ("sync #8: partial, 1 connection from 1 page (0 new, 2 state changes); "
                                                   "pages that failed: 1 (**Resume** fetches them again)")
    # A partial run names the pages it stored; a resume says its counts are its own.
    report = SyncReport(run_id=9, status="partial", rows=419, pages_total=3, pages_done=2, failed_pages=[3])
    assert report.summary().startswith("sync #9: partial, 419 connections from 2 of 3 pages (0 new, 0 state changes)")
    report = SyncReport(run_id=9, status="complete", rows=719, pages_total=3, pages_done=3, resumed=True)
    assert report.summary() == ("sync #9: complete, 719 connections from 3 pages (0 new, 0 state changes in the pages it "
                                "resumed)")


def test_page_list():
    assert page_list([3]) == "3"
    assert page_list([9, 1, 2, 3, 5]) == "1–3, 5, 9"
    assert page_list(list(range(1, 20, 2)), most=3) == "1, 3, 5, … (10 pages)"


def test_second_sync_records_only_real_changes(sandbox, store):
    run(sandbox, store)
    conn = next(c for c in sandbox.state.connections.values() if c["environment"] == "test" and c["state"] == "failed")
    sandbox.set_state(conn["id"], "operational")
    report = run(sandbox, store)
    assert (report.new, report.transitions) == (0, 1)
    assert [(t.from_state, t.to_state) for t in store.transitions(conn["key"])] == [(None, "failed"),
                                                                                     ("failed", "operational")]
    assert store.count(ConnectionTransition) == 1  # first sightings are the rows themselves


def test_a_failed_page_loses_nothing_and_resume_fetches_only_it(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=3")
    report = run(sandbox, store)
    assert (report.status, report.failed_pages, report.rows) == ("partial", [3], 620)
    assert "503" in report.errors[3] and "--resume" in report.summary()
    assert store.count(UserConnection) == 620 and store.sync_run(report.run_id).failed_pages == [3]
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")
    resumed = run(sandbox, store, resume=report.run_id)
    assert (resumed.run_id, resumed.status, resumed.failed_pages, resumed.rows) == (report.run_id, "complete", [], 720)
    assert sandbox.count("vault/connections") == 2  # page 3, and page 1 again: the list has not moved
    assert store.count(UserConnection) == 720
    assert store.not_seen("test") == []
    assert store.sync_run(report.run_id).failed_pages == []


def test_a_state_pica_adds_is_stored_and_counted_as_unknown(sandbox, store):
    """Longer than the columns' 16 characters, it stopped the sync at its page on PostgreSQL, and every resume."""
    cid = next(cid for cid in sandbox.state.order if sandbox.state.connections[cid]["environment"] == "test")
    sandbox.state.update_connection(cid, state="reauthorization_required")
    report = run(sandbox, store)
    assert report.status == "complete" and report.rows == 720
    assert store.stored_connection(sandbox.state.connections[cid]["key"]).state == "reauthorization_required"
    counts = store.state_counts("test")
    assert set(counts) <= {"operational", "degraded", "failed", "unknown"} and sum(counts.values()) == 720
    assert {s for _, s, _ in store.counts_by("platform", "test")} <= set(counts)


def test_a_live_row_pica_sends_without_its_environment_is_stored_as_live(sandbox, store):
    """It was filed as a test connection (Connection's default): missing from the live fleet, extra in the test one."""
    state = sandbox.state
    live = [cid for cid in state.order if state.connections[cid]["environment"] == "live"]
    bare = {k: v for k, v in state.connections[live[0]].items() if k != "environment"}
    state._bytes[live[0]] = json.dumps(bare, separators=(",", ":")).encode()  # the sandbox serves each row's bytes
    assert run(sandbox, store, environment="live").status == "complete"
    assert store.stored_connection(bare["key"]).environment == "live"
    assert (sum(store.state_counts("live").values()), store.state_counts("test")) == (len(live), {})
    assert Connection.model_validate(bare).environment == "live"  # a lookup's answer reads it the same way


def test_a_page_answered_before_a_lookup_and_stored_after_it_does_not_undo_it(sandbox, store, monkeypatch):
    """Stamped when written, a sync's page set a connection support had just looked up as failed back to
    operational, with a recovery that never happened."""
    run(sandbox, store)
    x = next(c for c in sandbox.state.connections.values() if c["environment"] == "test" and c["state"] == "operational")
    upsert, raced = Store.upsert_rows, []

    def upsert_rows(self, rows, **options):  # the page holding x is in (x operational); it fails, support looks
        if options.get("source") == "sync" and not raced and any(r["key"] == x["key"] for r in rows):
            raced.append(True)
            sandbox.set_state(x["id"], "failed")
            with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as client:
                asked = utcnow()
                found = client.connections(keys=[x["key"]])
            self.upsert_connections(found, source="lookup", seen_at=asked)
        return upsert(self, rows, **options)

    monkeypatch.setattr(Store, "upsert_rows", upsert_rows)
    assert run(sandbox, store).status == "complete" and raced
    assert store.stored_connection(x["key"]).state == "failed"
    assert [(t.from_state, t.to_state, t.source) for t in store.transitions(x["key"])][-1:] == [
        ("operational", "failed", "lookup")]


def test_a_connection_deleted_while_its_page_waited_for_the_writer_is_not_stored_again(sandbox, store, monkeypatch):
    """Support deletes a failed connection mid-sync, after Pica listed it: the sync stored it again, as new, and
    Fleet counted it among those needing attention until the next sync."""
    run(sandbox, store)
    upsert, deleted = Store.upsert_rows, []

    def upsert_rows(self, rows, **options):
        if options.get("source") == "sync" and not deleted and options["sync_progress"]["failed_pages"] == []:
            deleted.append(next(r for r in rows if r["state"] == "failed"))  # the last batch: every page was asked
            with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as client:
                client.delete_connection(deleted[0]["id"])
            self.remove_connection(deleted[0]["key"])  # as Delete on the Connections page does
        return upsert(self, rows, **options)

    monkeypatch.setattr(Store, "upsert_rows", upsert_rows)
    report = run(sandbox, store)
    assert deleted and (report.status, report.new) == ("complete", 0)
    assert store.stored_connection(deleted[0]["key"]) is None
    assert deleted[0]["key"] not in {c.connection_key for c in store.attention("test")}


def test_a_lookup_during_a_sync_does_not_make_its_resume_fetch_every_page(sandbox, store, monkeypatch):
    """A row a lookup stored after its page's answer was not marked seen by the run: its resume took the list for
    moved, and fetched every page."""
    upsert, raced = Store.upsert_rows, []

    def upsert_rows(self, rows, **options):
        if options.get("source") == "sync" and not raced:  # page 1, answered: support looks one of its rows up
            raced.append(rows[0]["key"])
            with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as client:
                asked = utcnow()
                self.upsert_connections(client.connections(keys=[rows[0]["key"]]), source="lookup", seen_at=asked)
        return upsert(self, rows, **options)

    monkeypatch.setattr(Store, "upsert_rows", upsert_rows)
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    report = run(sandbox, store)
    assert raced and report.failed_pages == [5]
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")
    assert run(sandbox, store, resume=report.run_id).status == "complete"
    assert sandbox.count("vault/connections") == 2  # page 5, and page 1 again to check


def test_a_second_look_that_failed_is_said_of_the_page_looked_at(sandbox, store):
    """With page 1 left, the second look is page 2: its failure was filed as page 1's."""
    report = page_1_left(sandbox, store)
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=2")
    again = run(sandbox, store, resume=report.run_id)
    assert (again.failed_pages, list(again.errors)) == ([1], [2])
    assert again.errors[2].startswith("looked at again to check that Pica's list had not moved: ")


def test_first_page_failing_fails_the_run_and_resume_starts_over(sandbox, store):
    sandbox.fault("status", status=502, count=50, path="/v1/vault/connections", query="page=1")
    report = run(sandbox, store)
    assert (report.status, report.failed_pages) == ("failed", [1])
    assert report.summary() == (f"sync #{report.run_id}: failed before its first page arrived, so nothing was "
                                "stored; run a new sync")
    sandbox.control("DELETE", "faults")
    resumed = run(sandbox, store, resume=report.run_id)
    assert resumed.status == "complete" and store.sync_run(resumed.run_id).resumed_from == report.run_id



def test_a_first_sync_s_finds_share_its_start_so_failed_come_first_then_the_oldest(sandbox, store):
    """Each batch stamped its own moment: "broken longest" ordered a first sync's finds by which page came first."""
    report = run(sandbox, store, page_size=100)
    assert report.pages_total > 3
    broken = store.attention("test")
    assert len({c.state_since for c in broken}) == 1 and all(c.since_is_lower_bound for c in broken)
    states = [c.state for c in broken]
    assert states == sorted(states, key=lambda s: s != "failed")  # failed, then degraded
    failed = [c.created_at for c in broken if c.state == "failed"]
    assert failed == sorted(failed)

def test_a_rate_limit_stops_the_sync_asking_for_more_pages(sandbox, store):
    """The limit is the whole account's (end users' AuthKit tokens too): the sync asked for every page left anyway."""
    sandbox.fault("rate_limit", count=50, path="/v1/vault/connections", query="page=2", seconds=60)

    async def go():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), page_size=100,
                                   retry=FAST_RETRY, max_concurrency=1) as client:
            return await sync_fleet(client, store, environment="test", page_size=100)

    report = asyncio.run(go())
    assert (report.status, report.failed_pages, report.not_asked) == ("partial", [2, 3, 4, 5, 6, 7, 8], 6)
    assert sandbox.count("vault/connections") == 2  # page 1, and page 2's 429
    summary = report.summary()  # the pages not asked for are not also said to have failed
    assert f"pages that failed: 2 (resume (--resume {report.run_id}) fetches them again)" in summary, summary
    assert (f"6 pages were not asked for once Pica's rate limit was reached (it is the whole account's): resume "
            f"(--resume {report.run_id}) fetches them") in summary, summary
    sandbox.control("DELETE", "faults")
    assert run(sandbox, store, resume=report.run_id).status == "complete"


def cli(sandbox, tmp_path, *args):
    env = {**os.environ, "PICA_API_URL": sandbox.url, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "PICA_PAGE_SIZE": "100", "PICA_MAX_RETRIES": "0"}
    env.pop("PICA_SECRET_KEY", None)
    return subprocess.run([sys.executable, "-m", "pica_core", "sync", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_sync_and_resume(sandbox, tmp_path):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    failed = cli(sandbox, tmp_path)
    assert failed.returncode == 1
    assert "sync #1: partial, 620 connections" in failed.stdout and "pages that failed: 5" in failed.stdout
    sandbox.control("DELETE", "faults")
    resumed = cli(sandbox, tmp_path, "--resume", "1")
    assert resumed.returncode == 0 and "sync #1: complete, 720 connections" in resumed.stdout
    assert "sk_test_sandbox" not in failed.stdout + failed.stderr + resumed.stdout + resumed.stderr
    # Not a terminal (cron's log): progress lines, not one line redrawn with carriage returns
    progress = [line for line in failed.stderr.splitlines() if "pages," in line]
    assert "\r" not in failed.stderr and progress[-1] == "  7/8 pages, 620 connections", failed.stderr


def test_cli_says_in_one_line_when_it_cannot_write_beside_the_database(sandbox, tmp_path):
    """A read-only folder: the lock file's OSError was a traceback and exit 1, where a database that cannot be opened
    is a configuration error (2). A folder in the lock file's place fails the same way on any machine."""
    (tmp_path / "cli.db-schema.lock").mkdir()
    done = cli(sandbox, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "Configuration error: Cannot write" in done.stderr and "set DATABASE_URL to a place it may write" in done.stderr


def test_cli_resume_says_when_the_rate_limit_its_run_met_lifts(sandbox, tmp_path):
    from datetime import timedelta

    from pica_core.store import utcnow

    store = Store.from_url(f"sqlite:///{tmp_path / 'cli.db'}")
    run_ = store.start_sync("test", 100)
    lifts = utcnow() + timedelta(minutes=5)
    store.update_sync(run_.id, status="partial", pages_total=8, failed_pages=list(range(1, 9)), retry_at=lifts)
    store.engine.dispose()
    resumed = cli(sandbox, tmp_path, "--resume", str(run_.id))
    assert resumed.stderr.startswith(f"Warning: the rate limit sync #{run_.id} met lifts at {lifts:%H:%M:%S} UTC: "
                                     "a resume before then is likely to meet it again."), resumed.stderr
    assert resumed.returncode == 0  # said, not refused: here the limit had gone


def test_cli_refuses_to_run_beside_another_sync(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("PICA_PAGESIZE", "5")  # and says first what it did not read
    holder = Store.from_url(f"sqlite:///{tmp_path / 'cli.db'}")
    with holder.sync_lock("test"):
        busy = cli(sandbox, tmp_path)
    holder.engine.dispose()
    assert busy.returncode == 3 and "Another fleet sync of the test environment is running" in busy.stderr
    assert busy.stderr.startswith("Warning: PICA_PAGESIZE is not a setting: did you mean PICA_PAGE_SIZE?\n")


def slow_cli_sync(sandbox, tmp_path, **popen) -> tuple[subprocess.Popen, dict]:
    """`python -m pica_core sync` once its first page is stored, the others a minute away (and its environment)."""
    import sqlite3
    import time

    for page in range(2, 9):
        sandbox.fault("latency", seconds=60, count=1000, path="/v1/vault/connections", query=f"page={page}")
    env = {**os.environ, "PICA_API_URL": sandbox.url, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "PICA_PAGE_SIZE": "100"}
    env.pop("PICA_SECRET_KEY", None)
    process = subprocess.Popen([sys.executable, "-m", "pica_core", "sync"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline, done = time.monotonic() + 60, 0
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with sqlite3.connect(tmp_path / "cli.db") as db:
                done = (db.execute("SELECT pages_done FROM sync_runs WHERE id = 1").fetchone() or [0])[0]
        except sqlite3.OperationalError:  # not created yet
            pass
    return process, env


def test_a_killed_sync_is_marked_interrupted_and_resumes(sandbox, tmp_path):
    process, env = slow_cli_sync(sandbox, tmp_path)
    process.kill()
    process.communicate()
    store = Store.from_url(env["DATABASE_URL"])
    killed = store.sync_run(1)
    assert killed.status == "running" and 0 < killed.pages_done < 8  # nothing could record its end
    assert killed.rows_seen == store.count(UserConnection) and len(killed.failed_pages) == 8 - killed.pages_done
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")
    resumed = cli(sandbox, tmp_path, "--resume", "1")
    assert resumed.returncode == 0 and "sync #1: complete, 720 connections" in resumed.stdout
    assert sandbox.count("vault/connections") == len(killed.failed_pages) + 1  # and page 1, looked at again
    store.engine.dispose()


def test_ctrl_c_on_the_cli_says_what_was_stored_and_how_to_resume(sandbox, tmp_path):
    import signal

    process, _ = slow_cli_sync(sandbox, tmp_path)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert re.match(r"sync #1: interrupted, \d+ connections stored; pages left: .+ \(--resume 1 fetches them\)", out)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_on_the_cli_stops_it_as_ctrl_c_does(sandbox, tmp_path, sigint):
    """How cron, systemd and Kubernetes stop a job: it died silently, its run still marked running. Started with
    Ctrl-C ignored (`sync &` in a script), the SIGTERM did nothing: the sync ran on to its end."""
    import signal

    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None
    process, env = slow_cli_sync(sandbox, tmp_path, preexec_fn=ignore)
    if sigint == "ignored":  # a Ctrl-C meant for the script that started it leaves it be, as the script asked
        process.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "Traceback" not in err, err
    assert re.match(r"sync #1: interrupted, \d+ connections stored; pages left: .+ \(--resume 1 fetches them\)", out)
    store = Store.from_url(env["DATABASE_URL"])
    assert store.sync_run(1).status == "interrupted"
    store.engine.dispose()


def test_a_resume_that_starts_over_pages_with_today_s_page_size(sandbox, tmp_path):
    sandbox.fault("status", status=503, count=5, path="/v1/vault/connections")
    assert cli(sandbox, tmp_path, "--page-size", "50").returncode == 1  # failed: page 1 never arrived
    sandbox.control("DELETE", "faults")
    resumed = cli(sandbox, tmp_path, "--resume", "1")
    assert resumed.returncode == 0 and "sync #2: complete, 720 connections from 8 pages" in resumed.stdout


def test_ctrl_c_before_the_first_page_says_nothing_was_stored(sandbox, tmp_path):
    import signal
    import time

    sandbox.fault("latency", seconds=60, count=10, path="/v1/vault/connections")
    env = {**os.environ, "PICA_API_URL": sandbox.url, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    env.pop("PICA_SECRET_KEY", None)
    process = subprocess.Popen([sys.executable, "-m", "pica_core", "sync"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not sandbox.count("vault/connections") and time.monotonic() < deadline:  # page 1 asked for
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "Traceback" not in err, err
    assert out.strip() == "sync #1: interrupted before Pica's first page arrived, so nothing was stored; run a new sync"


def test_cli_with_a_key_pica_refuses_says_so_and_exits_2(sandbox, tmp_path):
    sandbox.fault("status", status=401, count=5, path="/v1/vault/connections")
    result = cli(sandbox, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "sync #1: failed, Pica refused the key, so nothing was stored" in result.stdout
    assert "resume" not in result.stdout  # no resume helps until the key is fixed


def test_cli_resume_with_a_key_pica_now_refuses_exits_2_and_says_the_key_first(sandbox, tmp_path):
    """The key rotated or revoked since a partial run: its resume ended partial, exit 1, "resume fetches them again",
    which no resume can until the key is fixed."""
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=5")
    assert cli(sandbox, tmp_path).returncode == 1  # partial: page 5 left
    sandbox.control("DELETE", "faults")
    sandbox.fault("status", status=401, count=50, path="/v1/vault/connections")
    resumed = cli(sandbox, tmp_path, "--resume", "1")
    assert resumed.returncode == 2, (resumed.stdout, resumed.stderr)
    assert ("Pica refused the key, so page 5 was not stored: once what its answer says is resolved, resume "
            "(--resume 1) fetches it") in resumed.stdout and "fetches them again" not in resumed.stdout


def test_a_key_refused_part_way_stops_the_run_saying_so(sandbox, store):
    """Revoked while a run pages through the list: every page left was asked for, and refused."""
    def revoke(done, total, rows):
        if done == 1:  # page 1 stored: the key is revoked now
            sandbox.fault("status", status=401, count=1000, path="/v1/vault/connections")

    report = run(sandbox, store, page_size=50, progress=revoke)  # 15 pages, 3 at a time
    assert (report.status, report.key_refused) == ("partial", True) and report.not_asked > 0
    assert sandbox.count("vault/connections") - report.pages_done <= 3  # those already on their way
    summary = report.summary()
    assert "Pica refused the key, so pages" in summary and "not asked for once Pica refused the key" in summary


def test_a_page_that_failed_otherwise_is_not_said_to_be_refused_for_the_key(sandbox, store):
    sandbox.fault("status", status=503, count=50, path="/v1/vault/connections", query="page=2")
    sandbox.fault("status", status=403, count=50, path="/v1/vault/connections", query="page=7")
    report = run(sandbox, store)
    assert report.failed_pages[:2] == [2, 7] and report.refused_pages == [7]
    summary = report.summary()
    assert "Pica refused the key, so page 7 was not stored" in summary and "other pages that failed: 2" in summary


@pytest.mark.parametrize("where", ["postgresql", "sqlite under a file"])
def test_cli_with_a_database_it_cannot_open_is_one_line(tmp_path, sandbox, where):
    (tmp_path / "a-file").write_text("")  # a SQLite database's folder that cannot be made: a traceback, exit 1
    url = (f"postgresql+psycopg://dashboard:hunter2@127.0.0.1:{free_port()}/nowhere" if where == "postgresql"
           else f"sqlite:///{tmp_path / 'a-file' / 'dashboard.db'}")
    env = {**os.environ, "PICA_API_URL": sandbox.url, "DATABASE_URL": url}
    env.pop("PICA_SECRET_KEY", None)
    result = subprocess.run([sys.executable, "-m", "pica_core", "sync"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Configuration error: Could not open the database at postgresql+psycopg://"
                                    if where == "postgresql" else "Configuration error: Cannot create the database's")
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter2" not in result.stderr


def test_cli_refuses_a_page_size_out_of_range(tmp_path, sandbox):
    """Over Pica's maximum, every page was refused, the run "resumable", and each resume refused again."""
    result = cli(sandbox, tmp_path, "--page-size", "0")
    assert result.returncode == 2 and "--page-size: must be from 1 to 1,000, not 0" in result.stderr
    result = cli(sandbox, tmp_path, "--page-size", "5000")
    assert result.returncode == 2 and "--page-size: must be from 1 to 1,000, not 5000" in result.stderr
    assert sandbox.count("vault/connections") == 0
    result = cli(sandbox, tmp_path, "--page-size", "abc")
    assert result.returncode == 2 and "--page-size: must be a whole number, not 'abc'" in result.stderr


def test_cli_bad_configuration_is_one_line(tmp_path, sandbox):
    result = subprocess.run([sys.executable, "-m", "pica_core", "sync"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PICA_SECRET_KEY": "nope", "PICA_API_URL": sandbox.url}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Configuration error: PICA_SECRET_KEY must start with")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_page_count_comes_from_the_total_when_an_envelope_leaves_pages_out():
    """The client's paging and the sync's plan read it from one place (the sync once took a missing `pages` for 1)."""
    from pica_core.client import PageResult

    assert PageResult([], total=250, pages=0, page=1).page_count(100) == 3
    assert PageResult([], total=250, pages=4, page=1).page_count(100) == 4  # Pica's word first
    assert PageResult([], total=0, pages=0, page=1).page_count(100) == 1


def test_a_rate_limit_past_any_clock_keeps_its_words_and_the_run_its_pages(sandbox, store):
    """A wait too long to be a clock time (a reset sent as a timestamp, 'inf') once made the run crash."""
    sandbox.fault("rate_limit", count=50, path="/v1/vault/connections", query="page=2", seconds=1e12)
    report = run(sandbox, store)
    assert report.status == "partial" and report.failed_pages[0] == 2  # and those not asked for after it
    assert "429" in report.errors[2] and "retry after" not in report.errors[2]



def test_a_nul_character_pica_sends_does_not_stop_the_sync_for_good(sandbox, store):
    """PostgreSQL's text cannot hold NUL and SQLite's JSON functions end a string at it: the connection's batch
    failed, and every resume of it. It is stored with U+FFFD in its place, and found so by a lookup."""
    added = sandbox.state.add_connection(platform="gmail", environment="test", identity="ana\x00bel",
                                         identity_type="user")
    report = run(sandbox, store)
    assert report.status == "complete" and report.rows == 721, report.summary()
    [stored] = [row for row in store.stored_matching(environment="test", identity="ana\ufffdbel")]
    assert stored.connection_key == added["key"].replace("\x00", "\ufffd") and stored.pica_id == added["id"]
    with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as client:
        assert [c.identity for c in client.connections(platform="gmail") if c.id == added["id"]] == ["ana\ufffdbel"]
