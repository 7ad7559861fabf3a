"""The Catalog page in a real browser: the table with logos, search kept in the URL, selecting a row opens the
connector's detail, and the screenshot for the README (docs/screenshots/catalog-detail.png)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import open_path, screenshot, wait_idle

pytestmark = pytest.mark.e2e

SEARCH = "Search by name, platform id or description"


def showing(page) -> tuple[int, int]:
    text = page.get_by_text(re.compile(r"^Showing \d+ of \d+ connectors")).first.inner_text()
    found = re.match(r"Showing (\d+) of (\d+)", text)
    return int(found[1]), int(found[2])


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_catalog_search_select_and_screenshot(dashboard, page):
    logos: list[tuple[str, int, str]] = []
    page.on("response", lambda r: logos.append((r.url, r.status, r.headers.get("content-type", "")))
            if "/sandbox/logos/" in r.url else None)
    open_path(page, dashboard, "")  # the overview's first visit syncs the sandbox's fleet: usage has data
    open_path(page, dashboard, "catalog")
    assert page.locator("[data-testid='stException']").count() == 0
    assert showing(page) == (294, 294)
    for _ in range(100):  # the grid draws, then fetches the logos it shows: up to 10 s on a busy machine
        if logos:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    assert logos and all(status == 200 and "svg" in kind for _, status, kind in logos), logos[:3]

    # search: the table narrows and the URL carries it
    box = page.get_by_placeholder(SEARCH)
    box.fill("google")
    box.press("Enter")
    wait_idle(page)
    shown, total = showing(page)
    assert total == 294 and 0 < shown < 20
    assert query(page).get("q") == ["google"]

    # a filter: only the ones enabled for AuthKit (and the URL carries it too)
    page.get_by_text("Enabled", exact=True).click()  # the AuthKit segmented control
    wait_idle(page)
    enabled, _ = showing(page)
    assert 0 < enabled < shown and query(page).get("authkit") == ["yes"]

    # select the first row (the row marker column on the grid's left edge)
    grid = page.locator("[data-testid='stDataFrame']").first
    bounds = grid.bounding_box()
    page.mouse.click(bounds["x"] + 16, bounds["y"] + 35 + 17)
    wait_idle(page, settle_ms=600)
    selected = query(page).get("selected")
    assert selected, page.url
    expect(page.get_by_role("link", name=re.compile("^Connect "))).to_be_visible()
    expect(page.get_by_role("link", name="Try it in the console")).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0
    # the detail's heading is the connector's display name; the links carry it to the Connect page / console
    connect = page.get_by_role("link", name=re.compile("^Connect ")).get_attribute("href")
    console = page.get_by_role("link", name="Try it in the console").get_attribute("href")
    assert "connector=" in connect and f"platform={selected[0]}" in console
    # the README's picture: a tall window, scrolled to the top, so the search, filters, table and detail show
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.mouse.move(700, 400)
    page.mouse.wheel(0, -10_000)
    page.wait_for_timeout(500)
    screenshot(page, "catalog-detail")

    # the URL is the view: opening it fresh shows the same search, count and open connector
    link = page.url
    page.goto(link)
    wait_idle(page)
    # waited for, not read once: on a cold load the first render can precede the one that applies the URL
    expect(page.get_by_placeholder(SEARCH)).to_have_value("google")
    expect(page.get_by_text(re.compile(rf"^Showing {enabled} of 294 connectors")).first).to_be_visible()
    expect(page.get_by_role("link", name="Try it in the console")).to_be_visible()


def test_coverage_of_the_whole_catalog(dashboard, page):
    open_path(page, dashboard, "")  # the fleet sync, as above (a no-op once done)
    open_path(page, dashboard, "catalog")
    page.get_by_role("heading", name="Coverage").evaluate("e => e.scrollIntoView({block: 'start'})")
    expect(page.get_by_text("Coverage of the whole catalog")).to_be_visible()
    expect(page.locator("[data-testid='stVegaLiteChart']").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^All \d+ categories$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^\d+ connectors with no connection$"))).to_be_visible()
    page.wait_for_timeout(500)
    screenshot(page, "catalog-coverage")


def test_every_filter_and_button_shows_its_whole_label_in_a_1024_px_window(dashboard, page):
    """Fixed columns hid the "Not available" pill and cut "Refresh", "Not enabled" and "No OAuth" short."""
    page.set_viewport_size({"width": 1024, "height": 900})
    open_path(page, dashboard, "catalog")
    main = page.locator("[data-testid='stMain']").bounding_box()
    for name in ("Refresh", "GA", "Beta", "Alpha", "Not available", "Enabled", "Not enabled", "OAuth", "No OAuth"):
        label = page.get_by_text(name, exact=True).first  # a button's, a pill's or a segment's
        label.scroll_into_view_if_needed()
        box = label.bounding_box()
        # The label's right end is on top there (a column that cuts it hides it), and no ellipsis shortens it.
        on_top = label.evaluate("""(p, [x, y]) => document.elementFromPoint(x, y)?.closest('button') === p.closest('button')""",
                                [box["x"] + box["width"] - 2, box["y"] + box["height"] / 2])
        whole = label.evaluate("p => p.scrollWidth <= p.clientWidth + 1")
        assert on_top and whole and box["x"] + box["width"] <= main["x"] + main["width"], name


def test_a_link_s_unknown_filters_are_named_once_the_page_settles(dashboard, page):
    """A mistyped link's filters are dropped: the reader is told, with a warning (a grey caption went unseen)."""
    open_path(page, dashboard, "catalog?category=Nope&status=weird&authkit=maybe&sort=zzz&selected=nope")
    page.wait_for_timeout(1500)  # the runs that follow arrival keep it
    note = page.locator("[data-testid='stAlertContentWarning']").filter(has_text="which this catalog does not know")
    expect(note).to_be_visible()
    page.get_by_text("Not enabled", exact=True).first.click()  # the reader's own filter: the link's note is done
    wait_idle(page)
    expect(page.get_by_text("which this catalog does not know", exact=False)).to_have_count(0)
