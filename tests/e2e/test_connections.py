"""Support's path in a real browser: a deep link to an identity, a broken connection's detail."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import open_path, screenshot, wait_idle

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
