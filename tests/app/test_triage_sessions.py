"""Bulk triage across sessions: a reload takes up the reader's triage, and nobody else's; a session that had one
keeps to its own."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import ENTRY, assert_clean, open_page, press_triage


def slow_triage(sandbox, at: AppTest):
    """Triage 8 identities in `at`'s session, each lookup 0.3 s away: its job, under way."""
    sandbox.fault("latency", seconds=0.3, count=100, path="/v1/vault/connections")
    at.text_area[0].set_value("\n".join(f"someone-{n}" for n in range(8)))
    next(b for b in at.button if b.label == "Triage").click().run()
    job = at.session_state["triage-job"]
    assert not job.done.is_set()
    return job


def signed_in(user: dict) -> AppTest:
    """Connections, as `user` (OIDC claims) signed in."""
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.secrets["auth"] = {"client_id": "dashboard", "client_secret": "x", "redirect_uri": "http://localhost/cb",
                          "cookie_secret": "y", "server_metadata_url": "https://idp.example/.well-known"}
    at.user = {"is_logged_in": True, **user}
    at.run()
    at.switch_page("pages/connections.py")
    return at.run()


def test_a_reload_during_a_triage_takes_it_up_where_it_was_lost(app_env):
    """A reload (a new session) showed no progress and no results, while the triage went on asking Pica."""
    job = slow_triage(app_env, open_page("connections"))
    after = open_page("connections")  # the reload
    assert_clean(after)
    assert after.session_state["connections-tab"] == "bulk"  # where it shows
    assert after.session_state["triage-job"] is job  # the same one: not a second triage asking again
    assert next(b for b in after.button if b.label == "Triage").disabled  # one at a time
    assert job.done.wait(60)
    after.run()
    assert any(m.value.startswith("**8 identities** · ") for m in after.markdown)
    again = open_page("connections")  # its results, once more, for the half hour after it ended
    assert any(m.value.startswith("**8 identities** · ") for m in again.markdown)
    assert "connections-tab" not in again.session_state  # under its tab, not opened: a new tab is for a lookup


def test_a_link_opened_while_a_triage_runs_opens_its_lookup(app_env):
    job = slow_triage(app_env, open_page("connections"))
    link = open_page("connections", query={"identity": "someone-1"})  # Fleet's link, in a new tab
    assert_clean(link)
    try:
        assert link.session_state["connections-tab"] == "lookup", "the link's lookup opened under Bulk triage"
    finally:
        job.done.wait(60)


@pytest.mark.parametrize("other", [
    {"email": "ana@acme.io", "email_verified": False, "sub": "mallory", "name": "Mallory", "groups": ["support"]},
    {"sub": "alex-2", "name": "Alex Smith", "groups": ["support"]},  # no email claim: the display name alone
])
def test_another_user_never_takes_up_a_user_s_triage(app_env, monkeypatch, other):
    monkeypatch.setenv("ROLE_MAP", "support=viewer,ops=operator")
    owner = {"email": "ana@acme.io", "sub": "ana", "name": "Ana", "groups": ["ops"]} if "email" in other else \
        {"sub": "alex-1", "name": "Alex Smith", "groups": ["ops"]}
    job = slow_triage(app_env, signed_in(owner))
    try:
        them = signed_in(other)
        assert_clean(them)
        assert "triage-job" not in them.session_state, "another user's triage was taken up"
        same = signed_in(owner)  # the owner, in another tab: theirs
        assert same.session_state["triage-job"] is job
    finally:
        job.done.wait(60)


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
