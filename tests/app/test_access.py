"""Roles (AppTest with at.user): navigation per role, disabled actions that cannot be forced, audit with the actor,
and live mode without sign-in refusing writes."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from pica_core.access import PAGES, ROLES, rank
from pica_core.store import Store
from tests.app.conftest import ENTRY, assert_clean

ROLE_MAP = "support=viewer,ops=operator,devs=engineer,admins=admin"
GROUP = {"viewer": "support", "operator": "ops", "engineer": "devs", "admin": "admins"}


def signed_in(role: str | None, *, logged_in: bool = True) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.secrets["auth"] = {"client_id": "dashboard", "client_secret": "x", "redirect_uri": "http://localhost/cb",
                          "cookie_secret": "y", "server_metadata_url": "https://idp.example/.well-known"}
    at.user = {"is_logged_in": logged_in, "email": f"{role or 'nobody'}@acme.io", "name": "Test User",
               "groups": [GROUP[role]] if role else []}
    return at.run()


@pytest.fixture
def roles_env(app_env, monkeypatch):
    monkeypatch.setenv("ROLE_MAP", ROLE_MAP)
    return app_env


def open_as(role: str, page: str, query: dict | None = None) -> AppTest:
    at = signed_in(role)
    at.switch_page(f"pages/{page}.py")
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.run()


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_its_pages_and_no_others(roles_env, role):
    at = signed_in(role)
    assert_clean(at)
    for page, needed in PAGES.items():
        if rank(role) >= rank(needed):
            at.switch_page(f"pages/{page}.py").run()
            assert_clean(at)
        else:
            with pytest.raises(ValueError):
                at.switch_page(f"pages/{page}.py")


def test_not_signed_in_sees_only_the_sign_in_page(roles_env):
    at = signed_in(None, logged_in=False)
    assert_clean(at)
    assert [b.label for b in at.button] == ["Sign in"]
    with pytest.raises(ValueError):
        at.switch_page("pages/connections.py")


def test_unmapped_user_sees_nothing_and_is_told_whom_to_ask(roles_env):
    at = signed_in(None)
    assert_clean(at)
    assert any("no role of this dashboard is given to your account" in w.value and "nobody@acme.io" in
               w.value.replace("\\", "") for w in at.warning)
    assert [b.label for b in at.button] == ["Sign out"]
    for page in PAGES:
        with pytest.raises(ValueError):
            at.switch_page(f"pages/{page}.py")


def test_a_star_in_the_role_map_makes_everyone_signed_in_a_viewer(roles_env, monkeypatch):
    monkeypatch.setenv("ROLE_MAP", ROLE_MAP + ",*=viewer")
    at = signed_in(None)
    assert any("(viewer)" in c.value for c in at.sidebar.caption)


def seeded(sandbox, **match) -> dict:
    return next(c for c in sandbox.state.connections.values()
                if c["environment"] == "test" and all(c[k] == v for k, v in match.items()))


def test_viewer_cannot_edit_tags_or_delete_even_by_forcing_the_buttons(roles_env):
    conn = seeded(roles_env, platform="notion")
    at = open_as("viewer", "connections", {"key": conn["key"], "connection": conn["id"]})
    save = next(b for b in at.button if b.label == "Save tags")
    delete = next(b for b in at.button if b.label == "Delete connection")
    assert save.disabled and delete.disabled
    assert "Needs the operator role" in next(m for m in at.multiselect if m.label == "Tags").help
    confirm = at.text_input(key=f"delete-confirm-{conn['id']}")
    assert confirm.disabled
    for attempt in (save.click, delete.click, lambda: confirm.set_value("notion")):
        with pytest.raises(AppTestError, match="disabled"):  # a browser user cannot trigger them either
            attempt()
    assert conn["id"] in roles_env.state.connections
    assert Store.from_url(os.environ["DATABASE_URL"]).audit_events() == []


def test_operator_edits_tags_but_cannot_delete(roles_env):
    conn = seeded(roles_env, platform="slack")
    at = open_as("operator", "connections", {"key": conn["key"], "connection": conn["id"]})
    next(m for m in at.multiselect if m.label == "Tags").set_value(["vip"])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert roles_env.state.connections[conn["id"]]["tags"] == ["vip"]
    delete = next(b for b in at.button if b.label == "Delete connection")
    assert delete.disabled and "Needs the admin role" in delete.help
    event = Store.from_url(os.environ["DATABASE_URL"]).audit_events()[0]
    assert (event.actor, event.action, event.outcome) == ("operator@acme.io", "edit_tags", "ok")


def test_admin_delete_is_audited_with_the_actor(roles_env):
    conn = seeded(roles_env, platform="github")
    at = open_as("admin", "connections", {"key": conn["key"], "connection": conn["id"]})
    at.text_input(key=f"delete-confirm-{conn['id']}").set_value("github").run()
    next(b for b in at.button if b.label == "Delete connection").click().run()
    assert_clean(at)
    event = Store.from_url(os.environ["DATABASE_URL"]).audit_events(action="delete")[0]
    assert (event.actor, event.target, event.outcome) == ("admin@acme.io", conn["key"], "ok")


def test_admin_settings_change_is_audited_and_visible_in_the_audit_page(roles_env):
    at = open_as("admin", "settings")
    assert_clean(at)
    assert any(r == "PICA_SECRET_KEY" for r in at.dataframe[0].value["setting"])
    next(b for b in at.button if b.label == "Reset the sandbox to its seed data").click().run()
    assert_clean(at)
    at.switch_page("pages/audit.py").run()
    assert_clean(at)
    log = at.dataframe[0].value
    assert list(log["action"]) == ["settings"] and list(log["who"]) == ["admin@acme.io"]
    assert list(log["target"]) == ["reset sandbox"]


def test_operator_connect_page_is_open_but_console_is_not(roles_env):
    at = open_as("operator", "connect", {"identity": "u-1", "connector": "gmail"})
    assert_clean(at)
    assert not next(b for b in at.button if b.label == "Open AuthKit").disabled
    with pytest.raises(ValueError):
        at.switch_page("pages/console.py")


# --- live mode without sign-in --------------------------------------------------------------------------------
@pytest.fixture
def live_env(app_env, monkeypatch):
    """The test sandbox configured as if it were Pica live: a live key, no sign-in configured."""
    monkeypatch.setenv("PICA_SECRET_KEY", "sk_live_sandbox")
    return app_env


def test_live_mode_without_sign_in_is_read_only_everywhere(live_env):
    conn = next(c for c in live_env.state.connections.values() if c["environment"] == "live")
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert_clean(at)
    assert any("read-only" in w.value for w in at.warning)
    assert not any("Sandbox mode" in i.value for i in at.info)
    at.switch_page("pages/connections.py")
    at.query_params.update({"key": conn["key"], "connection": conn["id"]})
    at.run()
    assert_clean(at)
    save = next(b for b in at.button if b.label == "Save tags")
    delete = next(b for b in at.button if b.label == "Delete connection")
    assert save.disabled and "read-only" in save.help and delete.disabled and "read-only" in delete.help
    with pytest.raises(AppTestError, match="disabled"):
        save.click()
    assert conn["id"] in live_env.state.connections
    at.switch_page("pages/connect.py").run()
    assert next(b for b in at.button if b.label == "Open AuthKit").disabled


def test_live_mode_with_writes_allowed(live_env, monkeypatch):
    monkeypatch.setenv("ALLOW_LIVE_WRITES", "true")
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not any("read-only" in w.value for w in at.warning)
