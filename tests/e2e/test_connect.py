"""The AuthKit flow in a real browser: our component, the token route, the sandbox's hosted page."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import open_path, screenshot, wait_idle

pytestmark = pytest.mark.e2e
OVERLAY = "#pica-authkit-overlay"


def open_widget(page, dashboard, identity: str, connector: str = "gmail"):
    query = urlencode({"identity": identity, "identityType": "user", "connector": connector})
    open_path(page, dashboard, f"connect?{query}")
    page.get_by_role("button", name="Open AuthKit").click()
    page.wait_for_selector(f"{OVERLAY}[style*='visible']")
    return page.frame_locator(OVERLAY)


def connections_of(dashboard, identity: str) -> list[dict]:
    return dashboard.pica("/v1/vault/connections", identity=identity, limit=100)["rows"]


def test_connect_gmail_end_to_end(dashboard, page):
    frame = open_widget(page, dashboard, "e2e-ana")
    frame.get_by_role("heading", name="Connect Gmail").wait_for()  # selectedConnection jumped straight to Gmail
    screenshot(page, "connect-widget")
    frame.get_by_role("button", name="Authorize").click()
    frame.get_by_text("Gmail is connected.").wait_for()
    frame.get_by_role("button", name="Done").click()
    page.wait_for_selector(OVERLAY, state="detached")
    wait_idle(page)
    expect(page.get_by_text("Gmail is connected for")).to_be_visible()

    created = connections_of(dashboard, "e2e-ana")
    assert [c["platform"] for c in created] == ["gmail"]
    key = created[0]["key"]
    assert dashboard.query("select user_id, platform, state from user_connections where connection_key = ?", key) == [
        ("e2e-ana", "gmail", "operational")]
    assert dashboard.query("select action, outcome from audit_events where target = ?", key) == [("connect", "ok")]

    page.get_by_role("link", name="See this identity's connections").click()
    wait_idle(page)
    # Visible where the page shows it (the table's accessible cells and the record's JSON are hidden copies).
    expect(page.get_by_text(key).filter(visible=True).first).to_be_visible()
    screenshot(page, "connect-result")


def test_opening_authkit_is_one_entry_in_the_browser_s_history(dashboard, page):
    """The identity and the connector went into the URL one change at a time: three Backs to leave the page."""
    open_path(page, dashboard, "connect")
    page.get_by_label("Identity", exact=True).fill("e2e-history")
    connector = page.get_by_role("combobox", name="Connector (optional)")
    connector.fill("Gmail")
    connector.press("Enter")
    before = page.evaluate("history.length")
    page.get_by_role("button", name="Open AuthKit").click()
    page.wait_for_selector(f"{OVERLAY}[style*='visible']")
    wait_idle(page)
    assert "connector=Gmail" in page.url and page.evaluate("history.length") - before == 1


def test_closing_the_widget_stores_nothing(dashboard, page):
    frame = open_widget(page, dashboard, "e2e-closer")
    frame.get_by_role("button", name="Close").click()
    page.wait_for_selector(OVERLAY, state="detached")
    wait_idle(page)
    # Closed while the OAuth window finished, a connection may exist all the same: said, with the lookup to check
    expect(page.get_by_text("The widget was closed before it reported a connection.")).to_be_visible()
    link = page.get_by_role("link", name="Look them up")
    assert "identity=e2e-closer" in link.get_attribute("href")
    assert connections_of(dashboard, "e2e-closer") == []


def test_the_dashboard_s_own_close_button_closes_the_widget(dashboard, page):
    open_widget(page, dashboard, "e2e-closer-2")
    page.get_by_role("button", name="Close AuthKit").click()
    page.wait_for_selector(OVERLAY, state="detached")
    wait_idle(page)
    expect(page.get_by_text("The widget was closed before it reported a connection.")).to_be_visible()
    assert page.get_by_role("button", name="Close AuthKit").count() == 0


def test_an_authkit_page_that_cannot_be_reached_says_so_and_covers_nothing(dashboard, page):
    """Its host down: the browser's error page covered the whole window, and nothing could close it."""
    page.route("**/sandbox/authkit**", lambda route: route.abort("connectionrefused"))
    query = urlencode({"identity": "e2e-unreachable", "identityType": "user", "connector": "gmail"})
    open_path(page, dashboard, f"connect?{query}")
    page.get_by_role("button", name="Open AuthKit").click()
    expect(page.get_by_text(re.compile(r"The AuthKit page at http\S+ could not be reached: check PICA_AUTHKIT_URL"))
           ).to_be_visible(timeout=15000)
    page.wait_for_selector(OVERLAY, state="detached")
    page.get_by_role("button", name="Open AuthKit").click(timeout=5000)  # the page under it is usable
    page.unroute("**/sandbox/authkit**")


def test_token_route_failure_shows_a_clear_error(dashboard, page):
    dashboard.control("POST", "faults", json={"kind": "status", "status": 503, "count": 20, "path": "/v1/authkit"})
    try:
        frame = open_widget(page, dashboard, "e2e-error")
        frame.get_by_text("The token endpoint answered 502").wait_for()
        wait_idle(page)
        expect(page.get_by_text("AuthKit: The token endpoint answered 502")).to_be_visible()
    finally:
        dashboard.control("DELETE", "faults")
    assert connections_of(dashboard, "e2e-error") == []


def test_a_forged_success_from_another_frame_is_ignored(dashboard, page):
    victim = next(c for c in dashboard.pica("/v1/vault/connections", limit=50)["rows"]
                  if not c["identity"].startswith("e2e-"))
    open_widget(page, dashboard, victim["identity"])
    audited = dashboard.query("select count(*) from audit_events")
    # Another frame (and the page itself) post a LINK_SUCCESS carrying a real connection of that identity.
    page.evaluate(r"""(key) => {
        const message = {messageType: "LINK_SUCCESS", message: {key}};
        window.postMessage(message, "*");
        const other = document.createElement("iframe");
        other.srcdoc = `<script>parent.postMessage(${JSON.stringify(message)}, "*")<\/script>`;
        document.body.appendChild(other);
    }""", victim["key"])
    page.wait_for_timeout(1500)
    wait_idle(page)
    assert page.get_by_text("is connected for").count() == 0
    assert dashboard.query("select count(*) from audit_events") == audited


def test_unicode_identity_and_title_survive_the_widget_options(dashboard, page):
    identity = "équipe ✓ 東京:42"
    frame = open_widget(page, dashboard, identity, connector="Slack")
    frame.get_by_text(f"Connect an account for {identity}").wait_for()
    frame.get_by_role("button", name="Authorize").click()
    frame.get_by_text("Slack is connected.").wait_for()
    created = connections_of(dashboard, identity)
    assert [c["identity"] for c in created] == [identity]
    assert created[0]["key"].endswith("|équipe-✓-東京-42")  # spaces and colons become '-'
