"""Fleet health in a real browser: a sync left part-way by moving to another page keeps what it stored and resumes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import choose_the_first_broken_connection, open_path, open_tab, via_sidebar, wait_idle

pytestmark = pytest.mark.e2e


def latest_run(dashboard) -> tuple[int, str, int, list[int]] | None:
    rows = dashboard.query(
        "SELECT id, status, pages_done, failed_pages FROM sync_runs WHERE environment = 'test' ORDER BY id DESC LIMIT 1")
    return (rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3])) if rows else None


def wait_for(condition, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_fleet_synced(dashboard, page) -> None:
    """The Fleet page after a complete sync (the session's dashboard may not have one yet)."""
    open_path(page, dashboard, "fleet")
    if latest_run(dashboard) is None or latest_run(dashboard)[1] != "complete":
        page.get_by_role("button", name="Sync now").click()
        wait_idle(page)


def latency(page_number: int, seconds: float) -> dict:
    """A fault: this page of the connection list answers `seconds` late (the dashboard syncs 300 rows a page)."""
    return {"kind": "latency", "seconds": seconds, "path": "/v1/vault/connections", "query": f"page={page_number}"}


@contextmanager
def slow_sync(dashboard, page, *faults: dict, stored: int = 1):
    """Sync now, slowed by `faults`; gives the run's id once `stored` pages are stored. The faults end with it."""
    sync_ended(dashboard)  # an earlier test's (its Sync now button shows only once the page has followed it out)
    for fault in faults:
        dashboard.control("POST", "faults", json=fault)
    try:
        page.get_by_role("button", name="Sync now").click()
        # The page drawn again around the sync, to its end: a table located before that run ends is replaced under
        # the test's hand (its key counts what the sync has stored by then).
        expect(page.get_by_text("the sync goes on", exact=False)).to_be_visible()
        wait_idle(page)
        yield wait_for(lambda: (r := latest_run(dashboard)) and r[1] == "running" and r[2] >= stored and r[0],
                       f"{stored} page(s) of a new sync to be stored")
    finally:
        dashboard.control("DELETE", "faults")
        sync_ended(dashboard)  # a test that failed mid-sync leaves none running into the next one


def sync_ended(dashboard) -> None:
    wait_for(lambda: (r := latest_run(dashboard)) is None or r[1] != "running", "the sync to end", seconds=60)


def test_leaving_the_page_mid_sync_does_not_stop_it_and_its_outcome_waits_for_the_reader(dashboard, page):
    """The sync ran in the page's own run, so leaving the page stopped it at its next progress report."""
    open_path(page, dashboard, "fleet")
    with slow_sync(dashboard, page, latency(2, 3), latency(3, 5)) as run_id:
        via_sidebar(page, "Overview")  # moved on, mid-sync
        wait_for(lambda: latest_run(dashboard)[1] != "running", "the sync to end", seconds=45)
        assert latest_run(dashboard) == (run_id, "complete", 3, [])
    via_sidebar(page, "Fleet health")
    expect(page.get_by_text(f"Sync #{run_id}: complete", exact=False).first).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0


def test_coming_back_mid_sync_follows_it_as_the_reader_s_own(dashboard, page):
    open_path(page, dashboard, "fleet")
    with slow_sync(dashboard, page, latency(3, 6), stored=2) as run_id:
        via_sidebar(page, "Overview")
        page.locator("[data-testid='stSidebarNav']").get_by_text("Fleet health").click()
        expect(page.get_by_text("You can use this page or leave it: the sync goes on")).to_be_visible()
        expect(page.get_by_text("this page follows it until it ends", exact=False)).to_have_count(0)  # its own
        expect(page.get_by_role("tab", name="Failing and degraded")).to_be_visible()  # the page whole meanwhile
        expect(page.get_by_role("button", name="Sync now")).to_have_count(0)  # one sync at a time
        expect(page.get_by_text(f"Sync #{run_id}: complete", exact=False).first).to_be_visible(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_row_chosen_mid_sync_opens_at_once_and_the_outcome_waits(dashboard, page):
    """The page waited for its own sync: a row chosen meanwhile opened only when it ended, and its outcome was lost."""
    open_fleet_synced(dashboard, page)
    with slow_sync(dashboard, page, latency(3, 8), stored=2) as run_id:
        choose_the_first_broken_connection(page)
        assert latest_run(dashboard)[:2] == (run_id, "running")  # opened before the sync ended
        wait_for(lambda: latest_run(dashboard)[1] != "running", "the sync to end", seconds=45)
    via_sidebar(page, "Fleet health")
    expect(page.get_by_text(f"Sync #{run_id}: complete", exact=False).first).to_be_visible()


def test_reading_another_tab_mid_sync_does_not_stop_it(dashboard, page):
    """Tabs that reran the page on a change (to keep the reader's tab) stopped the sync like leaving the page."""
    open_path(page, dashboard, "fleet")
    with slow_sync(dashboard, page, latency(2, 4)) as run_id:
        page.get_by_role("tab", name="Export").click()
        wait_for(lambda: latest_run(dashboard)[1] != "running", "the sync to end", seconds=45)
        assert latest_run(dashboard) == (run_id, "complete", 3, [])


def test_a_sync_running_elsewhere_is_followed_until_it_ends(dashboard, page):
    """The scheduled command syncs while support has the page open: the page follows it, no reload needed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICA_", "AUTHKIT_", "DATABASE_URL"))}
    env.update(PICA_API_URL=dashboard.sandbox_url, DATABASE_URL=dashboard.database_url,
               PICA_SECRETS_FILE=str(Path(dashboard.log).with_name("none.toml")))
    open_path(page, dashboard, "fleet")  # the dashboard's database exists
    before = latest_run(dashboard)
    dashboard.control("POST", "faults", json=latency(2, 6))
    command = subprocess.Popen([sys.executable, "-m", "pica_core", "sync"], cwd=Path(__file__).parents[2], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_id = wait_for(lambda: (r := latest_run(dashboard)) and r != before and r[1] == "running" and r[0],
                          "the command's sync to start")
        open_path(page, dashboard, "fleet")
        expect(page.get_by_text(f"Sync #{run_id} is running", exact=False)).to_be_visible()
        assert command.wait(timeout=60) == 0, command.stdout.read()
        expect(page.get_by_text(f"Last sync #{run_id}", exact=False)).to_be_visible(timeout=10_000)
        expect(page.get_by_text("complete", exact=True).first).to_be_visible()
    finally:
        dashboard.control("DELETE", "faults")
        command.kill()
    assert page.locator("[data-testid='stException']").count() == 0


def test_the_fleet_csv_is_built_when_clicked_and_holds_every_stored_connection(dashboard, page):
    open_fleet_synced(dashboard, page)
    stored = dashboard.query("SELECT connection_key, state, user_id FROM user_connections WHERE environment = 'test'")
    page.get_by_role("tab", name="Export").click()
    button = page.get_by_role("button", name=f"Download every stored connection ({len(stored):,}, CSV)")
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == "fleet.csv"
    import csv

    with open(download.value.path(), "rb") as handle:
        data = handle.read()
    assert data.startswith(b"\xef\xbb\xbf")  # for Excel (exports.csv_file)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert sorted((r["key"], r["state"], r["identity"]) for r in rows) == sorted(stored)
    assert page.locator("[data-testid='stException']").count() == 0


def test_auto_refresh_reads_the_whole_page_again(dashboard, page):
    """Counts, tabs and status move together (only the metrics did: the page showed 118 and 117 side by side)."""
    open_fleet_synced(dashboard, page)
    counts = page.get_by_text(re.compile(r"^\d[\d,]* failing or degraded · ")).first
    before = int(counts.inner_text().split(" ")[0].replace(",", ""))
    page.get_by_text("Auto-refresh this page every 30 s").click()
    wait_idle(page)
    from pica_core.models import Connection
    from pica_core.store import Store

    store = Store.from_url(dashboard.database_url)  # a lookup in another session finds a new broken connection
    store.upsert_connections([Connection(id="auto-1", key="test::gmail::default::" + "f" * 32 + "|auto-refresh",
                                         platform="gmail", identity="auto-refresh", state="failed")], source="lookup")
    store.engine.dispose()
    expect(page.get_by_text(f"{before + 1:,} failing or degraded · ").first).to_be_visible(timeout=45_000)
    expect(page.get_by_text(f"({before + 1:,} need attention)", exact=False).first).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0


def test_choosing_a_broken_connection_opens_it_in_this_tab(dashboard, page):
    open_fleet_synced(dashboard, page)
    pages_before = len(page.context.pages)
    choose_the_first_broken_connection(page)
    query = parse_qs(urlsplit(page.url).query)
    assert query["connection"] and len(page.context.pages) == pages_before
    expect(page.get_by_text("What to do:").first).to_be_visible()  # the detail of a failed or degraded connection
    # below the identity's table: the page brings it into view, no search for it below the fold
    detail = page.locator(".st-key-connection-detail h3").first
    expect(detail).to_be_in_viewport(timeout=10_000)
    via_sidebar(page, "Fleet health")  # the same one again, from there: in view again
    choose_the_first_broken_connection(page)
    expect(detail).to_be_in_viewport(timeout=10_000)
    assert page.locator("[data-testid='stException']").count() == 0


def test_the_reader_s_tab_stays_open_when_the_counts_change(dashboard, page):
    """The tabs' labels carried counts: when one changed (an auto-refresh, any rerun), the browser went back to the
    first tab."""
    from pica_core.models import Connection
    from pica_core.store import Store

    open_fleet_synced(dashboard, page)
    page.get_by_role("tab", name="Not seen in the last sync").click()
    counts = lambda: page.get_by_text(re.compile(r"^\d[\d,]* failing or degraded · ")).first.inner_text()  # noqa: E731
    before = counts()
    store = Store.from_url(dashboard.database_url)  # a lookup in another session finds a new broken connection
    store.upsert_connections([Connection(id="tab-1", key="test::gmail::default::" + "d" * 32 + "|tab-reader",
                                         platform="gmail", identity="tab-reader", state="failed")], source="lookup")
    store.engine.dispose()
    auto_refresh = page.get_by_text("Auto-refresh this page every 30 s")
    auto_refresh.click()  # a rerun that reads the new counts
    wait_idle(page)
    wait_for(lambda: counts() != before, "the counts to change")
    assert open_tab(page).inner_text() == "Not seen in the last sync"
    auto_refresh.click()
    wait_idle(page)
    # A sync's outcome shows above the tabs, then goes on the next rerun: the tabs move, the reader's tab stays.
    before_run = latest_run(dashboard)[0]
    page.get_by_role("button", name="Sync now").click()
    # Its end redraws the page with the outcome above the tabs: waited for, or the next click may land in that redraw
    run_id = wait_for(lambda: (r := latest_run(dashboard)) and r[0] != before_run and r[1] == "complete" and r[0],
                      "the new sync to complete")
    expect(page.get_by_text(f"Sync #{run_id}: complete", exact=False).first).to_be_visible(timeout=30_000)
    wait_idle(page)
    assert open_tab(page).inner_text() == "Not seen in the last sync"
    page.get_by_role("tab", name="Export").click()
    auto_refresh.click()
    wait_idle(page)
    assert open_tab(page).inner_text() == "Export"
    auto_refresh.click()
    wait_idle(page)


def test_the_charts_fit_their_columns_in_a_1024_px_window(dashboard, page):
    """Every platform label, axis and legend entry drawn inside its chart (one legend line was cut off at 1024 px,
    and a shorter chart dropped every other platform's label)."""
    page.set_viewport_size({"width": 1024, "height": 900})
    open_fleet_synced(dashboard, page)
    charts = page.locator("[data-testid='stVegaLiteChart']")
    expect(charts).to_have_count(2)
    for chart in charts.all():
        chart.scroll_into_view_if_needed()
        outside = chart.evaluate("""box => {
            const edge = box.getBoundingClientRect();
            return [...box.querySelectorAll('text')].filter(t => t.textContent.trim()).filter(t => {
                const r = t.getBoundingClientRect();
                return r.right > edge.right + 1 || r.left < edge.left - 1 || getComputedStyle(t).opacity === '0'
                    || t.getAttribute('opacity') === '0';
            }).map(t => t.textContent);
        }""")
        assert outside == [], outside
    platforms = charts.first.evaluate("box => [...box.querySelectorAll('text')].map(t => t.textContent)")
    assert {"operational", "degraded", "failed", "unknown"} <= set(platforms)  # its legend
