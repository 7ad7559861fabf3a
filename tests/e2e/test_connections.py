"""Support's path in a real browser: a deep link to an identity, a broken connection's detail."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    choose_the_first_broken_connection,
    open_path,
    open_tab,
    screenshot,
    via_sidebar,
    wait_idle,
)

pytestmark = pytest.mark.e2e


def test_deep_link_to_a_failed_connection_shows_what_to_do(dashboard, page):
    rows = dashboard.pica("/v1/vault/connections", limit=300)["rows"]
    failed = next(r for r in rows if r["state"] == "failed" and not r["identity"].startswith(("e2e-", "npm-")))
    query = urlencode({"identity": failed["identity"], "identityType": failed["identityType"], "connection": failed["id"]})
    open_path(page, dashboard, f"connections?{query}")
    expect(page.get_by_text(re.compile(r"needs? attention")).first).to_be_visible()
    expect(page.get_by_text("The user must reconnect").first).to_be_visible()
    page.locator("[data-testid='stCode']").filter(has_text=failed["key"]).wait_for()
    screenshot(page, "connections")
    page.get_by_role("link", name="Reconnect").click()
    wait_idle(page)
    expect(page.get_by_role("heading", name="Reconnect an account")).to_be_visible()
    assert page.get_by_label("Identity").first.input_value() == failed["identity"]
    # Repaired: the outcome says so, and "Reconnecting …: authorise again" is no longer above it
    page.get_by_role("button", name="Open AuthKit").click()
    page.wait_for_selector("#pica-authkit-overlay[style*='visible']")
    widget = page.frame_locator("#pica-authkit-overlay")
    widget.get_by_role("button", name="Authorize").click()
    widget.get_by_role("button", name="Done").click()
    page.wait_for_selector("#pica-authkit-overlay", state="detached")
    wait_idle(page)
    expect(page.get_by_text(re.compile(r" is connected for ")).first).to_be_visible()
    assert page.get_by_text("authorise the same connector again").count() == 0


def test_refresh_says_it_is_asking_pica_while_pica_is_slow(dashboard, page):
    """The page only faded, with no word at the button, for up to 15 s while Pica hung."""
    row = next(r for r in dashboard.pica("/v1/vault/connections", limit=300)["rows"]
               if not r["identity"].startswith(("e2e-", "npm-")))
    open_path(page, dashboard, f"connections?{urlencode({'key': row['key'], 'connection': row['id']})}")
    dashboard.control("POST", "faults", json={"kind": "latency", "seconds": 3, "count": 1,
                                              "path": f"/v1/vault/connections/{row['id']}"})
    page.get_by_role("button", name="Refresh from Pica").click()
    expect(page.get_by_text("Asking Pica…")).to_be_visible(timeout=2500)
    expect(page.get_by_text(re.compile(r"Refreshed: "))).to_be_visible(timeout=15000)
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_lookup_s_csv_is_built_when_clicked_and_holds_its_connections(dashboard, page):
    import csv

    rows = dashboard.pica("/v1/vault/connections", limit=300)["rows"]
    identity = next(r["identity"] for r in rows if not r["identity"].startswith(("e2e-", "npm-")))
    mine = {r["key"] for r in dashboard.pica("/v1/vault/connections", identity=identity, limit=300)["rows"]}
    open_path(page, dashboard, f"connections?{urlencode({'identity': identity})}")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    with open(download.value.path(), newline="", encoding="utf-8-sig") as handle:
        assert {r["key"] for r in csv.DictReader(handle)} == mine
    assert page.locator("[data-testid='stException']").count() == 0


def test_choosing_a_row_keeps_the_table_as_the_reader_sorted_it(dashboard, page):
    rows = [r for r in dashboard.pica("/v1/vault/connections", limit=300)["rows"]
            if not r["identity"].startswith(("e2e-", "npm-"))]
    by_identity: dict[str, list[dict]] = {}
    for r in rows:
        by_identity.setdefault(r["identity"], []).append(r)
    # An identity whose broken-first order and by-name order differ in their second row.
    identity, mine = next((i, c) for i, c in by_identity.items() if len({x["platform"] for x in c}) >= 4
                          and any(x["state"] != "operational" for x in c))
    mine = dashboard.pica("/v1/vault/connections", identity=identity, limit=300)["rows"]  # all of them
    open_path(page, dashboard, "connections?" + urlencode({"identity": identity}))
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    row = lambda n: (box["x"] + 17, box["y"] + 35 * n + 17)  # noqa: E731 - the row marker of row n (1 = first)
    page.mouse.click(box["x"] + 140, box["y"] + 17)  # the "platform" header: sort by name
    page.wait_for_timeout(300)
    page.mouse.click(*row(1))
    wait_idle(page, settle_ms=600)
    first = parse_qs(urlsplit(page.url).query)["connection"][0]
    page.mouse.click(*row(1))  # unselect, then the second row as now shown
    wait_idle(page, settle_ms=600)
    page.mouse.click(*row(2))
    wait_idle(page, settle_ms=600)
    second = parse_qs(urlsplit(page.url).query)["connection"][0]
    catalog = {c["platform"]: c["name"] for c in dashboard.pica("/v1/available-connectors", limit=300)["rows"]}
    names = {r["id"]: catalog.get(r["platform"], r["platform"]) for r in mine}
    by_name = sorted(names.values())
    assert [names[first], names[second]] == by_name[:2], (names[first], names[second])  # by name, not broken-first
    assert page.locator("[data-testid='stException']").count() == 0


def test_the_sidebar_brings_back_the_last_lookup(dashboard, page):
    identity = dashboard.pica("/v1/vault/connections", limit=1)["rows"][0]["identity"]
    open_path(page, dashboard, "connections?" + urlencode({"identity": identity}))
    via_sidebar(page, "Fleet health", "Connections")
    assert parse_qs(urlsplit(page.url).query).get("identity") == [identity], page.url
    expect(page.get_by_text(re.compile(r"needs? attention")).first).to_be_visible()


def test_bulk_triage_is_open_again_after_another_page_and_a_link_opens_its_lookup(dashboard, page):
    open_path(page, dashboard, "connections")
    page.get_by_role("tab", name="Bulk triage").click()
    page.get_by_label("Identities").fill("nobody-at-all")
    page.get_by_role("button", name="Triage").click()
    wait_idle(page)
    via_sidebar(page, "Overview", "Connections")
    expect(open_tab(page)).to_have_text(re.compile("Bulk triage"))
    expect(page.get_by_text("nobody-at-all").first).to_be_visible()
    via_sidebar(page, "Fleet health")  # a link from there opens on its lookup
    if page.get_by_text("No sync yet").count():
        page.get_by_role("button", name="Sync now").click()
        wait_idle(page)
    choose_the_first_broken_connection(page)
    expect(open_tab(page)).to_have_text(re.compile("Look up"))
    expect(page.get_by_text("What to do:").first).to_be_visible()



def test_a_look_up_during_a_bulk_triage_does_not_throw_the_triage_away(dashboard, page):
    """The triage ran in the page's own run: a click on Look up stopped it, and its results never came."""
    rows = [r for r in dashboard.pica("/v1/vault/connections", limit=300)["rows"]
            if not r["identity"].startswith(("e2e-", "npm-"))]
    identities = list(dict.fromkeys(r["identity"] for r in rows))[:12]
    open_path(page, dashboard, "connections")
    page.get_by_role("tab", name="Bulk triage").click()
    page.get_by_label("Identities").fill("\n".join(identities))
    dashboard.control("POST", "faults", json={"kind": "latency", "seconds": 1, "count": 12, "path": "/v1/vault"})
    try:
        page.get_by_role("button", name="Triage").click()
        expect(page.get_by_text("the triage goes on")).to_be_visible()
        page.get_by_role("tab", name="Look up").click()
        page.get_by_label("Identity", exact=True).fill(identities[0])
        page.get_by_role("button", name="Look up").click()
        wait_idle(page)
        page.get_by_role("tab", name="Bulk triage").click()
        expect(page.get_by_text(f"**{len(identities)} identities**".strip("*"), exact=False).first).to_be_visible(
            timeout=30_000)
        expect(page.get_by_text("the triage goes on")).to_have_count(0)  # said while it ran, not after
    finally:
        dashboard.control("DELETE", "faults")
    assert page.locator("[data-testid='stException']").count() == 0


def test_two_agents_editing_tags_keep_both_edits(dashboard, page, browser):
    """Agent B's save emptied the connections' cache; agent A's click then drew the tag box from B's tags, dropped
    A's edit and said "Tags saved"."""
    rows = [r for r in dashboard.pica("/v1/vault/connections", limit=300)["rows"]
            if r["state"] == "operational" and not r["identity"].startswith(("e2e-", "npm-"))]
    conn = rows[7]
    path = "connections?" + urlencode({"key": conn["key"], "connection": conn["id"]})
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        for agent in (page, other):
            open_path(agent, dashboard, path)
        for agent, tag in ((page, "agent-a"), (other, "agent-b")):
            box = agent.locator("[data-testid='stMultiSelect']").filter(has_text="Tags").locator("input")
            box.fill(tag)
            box.press("Enter")
            box.press("Escape")  # the list of tags closes (it covers Save tags)
        other.get_by_role("button", name="Save tags").click()
        wait_idle(other)
        page.get_by_role("button", name="Save tags").click()
        wait_idle(page)
        saved = dashboard.pica(f"/v1/vault/connections/{conn['id']}")["tags"]
        assert saved == [*conn["tags"], "agent-a", "agent-b"]
        expect(page.get_by_text("They had changed since this page showed them")).to_be_visible()
        # The box shows what Pica now has (it kept A's list, and A's next save removed B's tag).
        box = page.locator("[data-testid='stMultiSelect']").filter(has_text="Tags")
        expect(box).to_contain_text("agent-b")
        box.locator("input").fill("agent-c")
        box.locator("input").press("Enter")
        box.locator("input").press("Escape")
        page.get_by_role("button", name="Save tags").click()
        wait_idle(page)
        assert dashboard.pica(f"/v1/vault/connections/{conn['id']}")["tags"] == [*saved, "agent-c"]
    finally:
        other.context.close()


def test_a_slow_lookup_says_what_it_waits_for(dashboard, page):
    """A slow or hanging Pica showed an empty page, or the last lookup's results, faded, under the new identity."""
    dashboard.control("POST", "faults", json={"kind": "latency", "seconds": 3, "path": "/v1/vault/connections",
                                              "query": "identity=someone-slow", "count": 1})
    try:
        page.goto(f"{dashboard.url}/connections?identity=someone-slow")
        expect(page.get_by_text("Looking up someone-slow (type any)…")).to_be_visible(timeout=10_000)
        wait_idle(page)
        expect(page.get_by_text("No connections for someone-slow", exact=False).first).to_be_visible()
    finally:
        dashboard.control("DELETE", "faults")
