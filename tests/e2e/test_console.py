"""The console in a real browser: a deep-linked connection and action, one GET, the response and its history."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e

LIST_MESSAGES = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"  # GET /gmail/v1/users/{{userId}}/messages


def gmail_key(dashboard) -> str:
    rows = httpx.get(f"{dashboard.sandbox_url}/v1/vault/connections", params={"platform": "gmail", "limit": 100},
                     headers={"x-pica-secret": "sk_test_sandbox"}, timeout=10).json()["rows"]
    return next(r["key"] for r in rows if r["state"] == "operational")


def passthrough_calls(dashboard) -> int:
    return dashboard.control("GET", "stats").json()["by_route"].get("passthrough", 0)


def open_list_messages(dashboard, page, base_url: str) -> None:
    """The console on an operational Gmail connection and its List Messages action, userId filled in."""
    key = gmail_key(dashboard)
    page.goto(f"{base_url}/console?key={httpx.QueryParams({'key': key})['key']}&action={LIST_MESSAGES}"
              .replace("|", "%7C"))
    wait_idle(page)
    user_id = page.locator(".st-key-con_var_userId input")
    user_id.fill("me")
    user_id.press("Enter")
    wait_idle(page)


def test_a_call_from_the_console(dashboard, page):
    key = gmail_key(dashboard)
    before = passthrough_calls(dashboard)
    # Opened as localhost, not the 127.0.0.1 the server reaches its sandbox on: exports name what the browser used.
    local = dashboard.url.replace("127.0.0.1", "localhost")
    page.goto(f"{local}/console?key={httpx.QueryParams({'key': key})['key']}&action={LIST_MESSAGES}".replace("|", "%7C"))
    wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    picked = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="List a User’s Gmail Messages")
    expect(picked.first).to_be_visible()

    user_id = page.locator(".st-key-con_var_userId input")
    user_id.fill("me")
    user_id.press("Enter")
    wait_idle(page)
    page.locator("[class*='st-key-con_send'] button").click()
    wait_idle(page, settle_ms=600)

    assert passthrough_calls(dashboard) == before + 1
    status = page.get_by_text("200 OK").first
    expect(status).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0
    # The secret never reaches the browser: exports read it from the environment.
    html = page.content()
    assert "sk_test_sandbox" not in html and "$PICA_SECRET_KEY" in html
    assert f"{local}/sandbox/v1/passthrough/gmail/v1/users/me/messages" in html and "127.0.0.1" not in html
    # Frame the request and the response it got.
    page.locator("h5").filter(has_text="Request").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    screenshot(page, "console")

    page.get_by_role("tab", name="History").click()
    wait_idle(page)
    expect(page.get_by_text("· 200 · GET /gmail/v1/users/me/messages").first).to_be_visible()


def test_a_second_click_while_a_call_is_on_its_way_sends_nothing_more(dashboard, page):
    """An impatient second click on Send (the button stays clickable while Pica answers) must not send the
    request again: for a write, that would be a second email."""
    open_list_messages(dashboard, page, dashboard.url)
    before = passthrough_calls(dashboard)
    dashboard.control("POST", "faults", json={"kind": "latency", "seconds": 2, "count": 2, "path": "/v1/passthrough"})
    try:
        send = page.locator("[class*='st-key-con_send'] button")
        send.click()
        page.wait_for_timeout(700)
        send.click()  # while the first call waits for its answer
        wait_idle(page, settle_ms=600)
        wait_idle(page)
    finally:
        dashboard.control("DELETE", "faults")
    assert passthrough_calls(dashboard) == before + 1
    expect(page.get_by_text("200 OK").first).to_be_visible()
    page.locator("[class*='st-key-con_send'] button").click()  # the next click sends again
    wait_idle(page, settle_ms=600)
    assert passthrough_calls(dashboard) == before + 2


def test_the_chosen_connection_stays_chosen_when_its_state_changes(dashboard, page):
    """The picker's labels carried the state, and the browser sends back the label it chose: once the state changed
    that label chose nothing, and the console fell back to another connection, the request and the click lost."""
    rows = httpx.get(f"{dashboard.sandbox_url}/v1/vault/connections", params={"limit": 100},
                     headers={"x-pica-secret": "sk_test_sandbox"}, timeout=10).json()["rows"]
    by_identity: dict[str, list[dict]] = {}
    for row in rows:
        if row["state"] == "operational" and row.get("identity"):
            by_identity.setdefault(row["identity"], []).append(row)
    identity, connections = next((i, c) for i, c in by_identity.items() if len(c) >= 2)
    page.goto(f"{dashboard.url}/console?identity={identity}")
    wait_idle(page)
    picker = page.locator(".st-key-con_identity_pick input")
    default = picker.input_value()
    other = next(c for c in connections if c["key"].split("::")[-1][:10] not in default)
    picker.click()
    page.get_by_role("option").filter(has_text="…" + other["key"].split("::")[-1][:10]).click()
    wait_idle(page)
    chosen = picker.input_value()
    assert other["key"].split("::")[-1][:10] in chosen
    dashboard.control("POST", f"connections/{other['id']}/state", json={"state": "failed"})
    try:
        page.get_by_role("button", name="Refresh state").click()
        wait_idle(page)
        expect(page.get_by_text("This connection is failed.")).to_be_visible()
        assert picker.input_value() == chosen
        page.get_by_role("tab", name="History").click()  # a second run, with the label the browser holds
        wait_idle(page)
        page.get_by_role("tab", name="Builder").click()
        wait_idle(page)
        assert picker.input_value() == chosen
    finally:
        dashboard.control("POST", f"connections/{other['id']}/state", json={"state": "operational"})
