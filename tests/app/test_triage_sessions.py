"""Bulk triage taken up across sessions, and the Connect page after a reconnect (from the session's last review)."""

from __future__ import annotations

import pytest

from tests.app.conftest import assert_clean, open_page, press_triage


def test_a_cleared_triage_does_not_come_back_on_the_next_run(app_env):
    at = open_page("connections")
    at.text_area[0].set_value("someone-1\nsomeone-2\n")
    press_triage(at)
    assert any(m.value.startswith("**2 identities** · ") for m in at.markdown)
    # A new triage of nothing (a header row alone): the old results are dropped and it says there is nothing to do
    at.text_area[0].set_value("identity\n")
    next(b for b in at.button if b.label == "Triage").click().run()
    assert_clean(at)
    assert not any(m.value.startswith("**2 identities** · ") for m in at.markdown)
    at.run()  # any next interaction
    assert not any(m.value.startswith("**2 identities** · ") for m in at.markdown), \
        "the earlier triage, dropped by the new Triage, came back"


def test_a_reconnect_done_is_not_said_to_be_of_another_identity(app_env):
    from pica_core.connect import ConnectOutcome
    from pica_core.models import Connection

    conn = next(c for c in app_env.state.connections.values()
                if c["environment"] == "test" and c["state"] == "failed" and c.get("identity"))
    at = open_page("connect", query={"identity": conn["identity"], "identityType": conn["identityType"],
                                     "reconnect": conn["key"]})
    assert any("Reconnecting" in i.value for i in at.info)
    assert not any("a connection of another identity" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Open AuthKit").click().run()
    session = dict(at.session_state["authkit-session"])
    assert session["reconnect"] == conn["key"]
    # The widget reported the connection, and Pica confirmed it (as confirm_and_store leaves the session)
    session["stored"] = True
    at.session_state["authkit-session"] = session
    at.session_state["connect-outcome"] = ConnectOutcome(True, "ok", Connection.model_validate(conn), None, conn["key"])
    at.run()
    assert_clean(at)
    assert any("is connected for" in s.value for s in at.success)
    wrong = [w.value for w in at.warning if "a connection of another identity" in w.value]
    assert not wrong, wrong


def test_a_link_opened_while_a_triage_runs_opens_its_lookup(app_env):
    app_env.fault("latency", seconds=0.3, count=100, path="/v1/vault/connections")
    first = open_page("connections")
    first.text_area[0].set_value("\n".join(f"someone-{n}" for n in range(8)))
    next(b for b in first.button if b.label == "Triage").click().run()
    job = first.session_state["triage-job"]
    assert not job.done.is_set()
    link = open_page("connections", query={"identity": "someone-1"})  # Fleet's link, in a new tab
    assert_clean(link)
    try:
        assert link.session_state["connections-tab"] == "lookup", "the link's lookup opened under Bulk triage"
    finally:
        job.done.wait(60)


def _as(user: dict):
    from streamlit.testing.v1 import AppTest
    from tests.app.conftest import ENTRY
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.secrets["auth"] = {"client_id": "dashboard", "client_secret": "x", "redirect_uri": "http://localhost/cb",
                          "cookie_secret": "y", "server_metadata_url": "https://idp.example/.well-known"}
    at.user = {"is_logged_in": True, **user}
    at.run()
    at.switch_page("pages/connections.py")
    return at.run()



@pytest.mark.parametrize("other", [
    {"email": "ana@acme.io", "email_verified": False, "sub": "mallory", "name": "Mallory", "groups": ["support"]},
    {"sub": "alex-2", "name": "Alex Smith", "groups": ["support"]},  # no email claim: the display name alone
])
def test_another_user_never_takes_up_a_user_s_triage(app_env, monkeypatch, other):
    monkeypatch.setenv("ROLE_MAP", "support=viewer,ops=operator")
    app_env.fault("latency", seconds=0.3, count=100, path="/v1/vault/connections")
    owner = {"email": "ana@acme.io", "sub": "ana", "name": "Ana", "groups": ["ops"]} if "email" in other else \
        {"sub": "alex-1", "name": "Alex Smith", "groups": ["ops"]}
    ana = _as(owner)
    ana.text_area[0].set_value("\n".join(f"someone-{n}" for n in range(8)))
    next(b for b in ana.button if b.label == "Triage").click().run()
    job = ana.session_state["triage-job"]
    try:
        them = _as(other)
        assert_clean(them)
        assert "triage-job" not in them.session_state, "another user's triage was taken up"
    finally:
        job.done.wait(60)


def test_what_stopped_a_triage_is_said_once(app_env, monkeypatch):
    async def broken(client, identities, progress=None):
        raise RuntimeError("boom")

    monkeypatch.setattr("pica_core.ui.connections_ui.triage", broken)
    at = open_page("connections")
    at.text_area[0].set_value("someone-1\n")
    press_triage(at)
    assert_clean(at)
    assert [w.value for w in at.warning if "The triage stopped" in w.value]
    at.run()  # the reader's next click anywhere on the page
    again = [w.value for w in at.warning if "The triage stopped" in w.value]
    assert not again, again
