"""Navigation in a real browser: deep links work from a cold server, every page renders, screenshots."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from pica_core.ui.shell import PAGES
from tests.e2e.conftest import open_path, screenshot, streamlit_server

pytestmark = pytest.mark.e2e


def test_a_deep_link_on_a_fresh_server_runs_inside_the_shell(dashboard, page):
    # The very first request of the process: Streamlit must not treat pages/ as a legacy pages directory.
    open_path(page, dashboard, "catalog")
    expect(page.get_by_text("Sandbox mode").first).to_be_visible()
    expect(page.locator("[data-testid='stSidebarNav']").get_by_text("Fleet health")).to_be_visible()


def test_overview_typed_by_its_name_opens_it(dashboard, page):
    """The default page is served at / only: /overview showed Streamlit's "Page not found"."""
    open_path(page, dashboard, "overview")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.url.rstrip("/") == dashboard.url.rstrip("/")
    expect(page.get_by_text("Page not found")).to_have_count(0)


# Pages whose own browser tests take a more telling screenshot (with data looked up, a call sent…).
OWN_SCREENSHOTS = {"catalog", "console", "connections"}


@pytest.mark.parametrize("key, title", [(p[0], p[2]) for p in PAGES])
def test_every_page_renders_in_the_browser(dashboard, page, key, title):
    open_path(page, dashboard, "" if key == "overview" else key)
    assert page.locator("[data-testid='stException']").count() == 0
    expect(page.get_by_text("Sandbox mode").first).to_be_visible()
    expect(page).to_have_title(f"{title} · Pica ops")  # every tab was "Pica integration ops"
    if key not in OWN_SCREENSHOTS:
        screenshot(page, key)


def test_a_fragment_failing_on_its_own_rerun_gets_the_safety_net_s_message(page, tmp_path):
    """A fragment's timed rerun runs outside the page's run and the shell's handler: Fleet's followers, failing
    there (the database gone a moment), showed Streamlit's own error box."""
    with streamlit_server("tests/e2e/apps/failing_fragment.py", dict(os.environ), tmp_path / "app.log") as url:
        page.goto(url)
        expect(page.get_by_text("This page hit an unexpected error (RuntimeError). It was logged; reload to try "
                                "again.")).to_be_visible()
        assert page.locator("[data-testid='stException']").count() == 0
        assert "the database went away" in (tmp_path / "app.log").read_text()  # logged, with its traceback


def test_the_overview_s_headline_numbers_are_whole_in_a_1024_px_window(dashboard, page):
    """Four columns cut them: "Connectors in the c…", "Connections st…", "16% failed or deg…"."""
    page.set_viewport_size({"width": 1024, "height": 900})
    open_path(page, dashboard, "")
    metrics = page.locator("[data-testid='stMetric']")
    expect(metrics.first).to_be_visible()
    parts = page.locator("[data-testid='stMetricLabel'] p, [data-testid='stMetricDelta'] div, "
                         "[data-testid='stMetricValue'] div")
    assert parts.count() >= 8
    for i in range(parts.count()):
        part = parts.nth(i)
        assert part.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), part.inner_text()
