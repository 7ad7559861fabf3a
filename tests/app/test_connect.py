"""The Connect page shows identities and keys from links and from the widget as text, never as Markdown."""

from __future__ import annotations

import pytest

from tests.app.conftest import assert_clean, open_page

PHISH = "x` **Session expired.** [Click here](https://evil.example/login) ![](https://evil.example/p.png) `"


def _shown(at) -> str:
    """The page's messages, without the sandbox banner."""
    return " ".join(e.value for e in [*at.info, *at.warning, *at.error, *at.success] if "Sandbox mode" not in e.value)


def test_a_reconnect_link_shows_its_key_as_text(app_env):
    at = open_page("connect", query={"reconnect": f"test::gmail::default::{'a' * 32}|{PHISH}"})
    assert_clean(at)
    shown = _shown(at)
    assert "Reconnecting" in shown and "\\[Click here\\]\\(https" in shown
    assert "](https" not in shown and "**Session" not in shown and "`" not in shown.replace("\\`", "")


def test_a_reconnect_link_whose_key_is_not_a_key_is_refused_before_authkit_opens(app_env):
    at = open_page("connect", query={"identity": "rev-recon", "reconnect": "<b>notakey</b>"})
    assert_clean(at)
    assert any("does not look like a Pica connection key" in e.value for e in at.error)
    assert not any("Reconnecting" in i.value for i in at.info) and at.title[0].value == "Connect an account"


def test_an_identity_from_the_link_is_text_once_authkit_is_open(app_env):
    at = open_page("connect", query={"identity": PHISH, "identityType": "user"})
    at.button[0].click().run()
    assert_clean(at)
    shown = _shown(at)
    assert "AuthKit is open for" in shown and "](https" not in shown and "\\*\\*Session" in shown


RECONNECT_KEY = "test::gmail::default::" + "a" * 32 + "|rev-x"


@pytest.mark.parametrize("query", [{"identity": "rev-x"}, {"identity": "rev-x", "reconnect": RECONNECT_KEY}])
def test_how_authkit_closed_is_said_on_a_connect_and_on_a_reconnect(app_env, query):
    """On a reconnect link the page dropped the message, and a failed reconnect showed nothing."""
    at = open_page("connect", query=query)
    at.session_state["connect-closed"] = "The user cancelled the consent screen"  # as the widget's close leaves it
    at.run()
    assert_clean(at)
    assert [e.value for e in at.error if "AuthKit closed" in e.value]


def test_coming_back_does_not_say_authkit_is_open_after_its_widget_went_with_the_page(app_env):
    at = open_page("connect", query={"identity": "rev-back"})
    next(b for b in at.button if b.label == "Open AuthKit").click().run()
    assert any("AuthKit is open for" in i.value for i in at.info)
    at.switch_page("pages/overview.py").run()
    at.switch_page("pages/connect.py").run()
    assert_clean(at)
    assert not [i.value for i in at.info if "AuthKit is open for" in i.value]


def test_a_reconnect_link_whose_connector_authkit_does_not_offer_is_a_connect_that_says_why(app_env):
    """The page titled itself Reconnect, said the connector was not enabled, and opened AuthKit's full list."""
    key = f"test::cockroach-labs::default::{'c' * 32}|rev-y"
    at = open_page("connect", query={"identity": "rev-y", "reconnect": key, "connector": "cockroach-labs"})
    assert_clean(at)
    assert at.title[0].value == "Connect an account" and not any("Reconnecting" in i.value for i in at.info)
    assert [w.value for w in at.warning if "reconnects" in w.value and "is not enabled in AuthKit" in w.value]
    assert not [w.value for w in at.warning if "or pick another connector" in w.value]  # said once


def test_a_reconnect_link_with_another_connector_chosen_opens_a_plain_connect(app_env):
    at = open_page("connect", query={"identity": "rev-x", "reconnect": RECONNECT_KEY, "connector": "gmail"})
    assert at.title[0].value == "Reconnect an account"
    at.selectbox[1].set_value("Slack")
    next(b for b in at.button if b.label == "Open AuthKit").click().run()
    assert_clean(at)
    assert at.title[0].value == "Connect an account" and at.session_state["authkit-session"]["reconnect"] is None


def test_a_reconnect_link_for_another_identity_says_so_before_and_after_authkit_opens(app_env):
    """The page went on saying "Reconnecting <the other identity's key>" above the new connection."""
    other = f"test::gmail::default::{'b' * 32}|team-security-initech-65"
    at = open_page("connect", query={"identity": "rev-other", "identityType": "user", "reconnect": other})
    assert_clean(at)
    assert at.title[0].value == "Connect an account" and not any("Reconnecting" in i.value for i in at.info)
    assert any("a connection of another identity" in w.value for w in at.warning)
    at = open_page("connect", query={"identity": "team-security-initech-65", "identityType": "team", "reconnect": other})
    assert at.title[0].value == "Reconnect an account"
    at.text_input[0].set_value("rev-other")  # another identity typed in
    next(b for b in at.button if b.label == "Open AuthKit").click().run()
    assert_clean(at)
    assert at.title[0].value == "Connect an account" and not any("Reconnecting" in i.value for i in at.info)
    assert at.session_state["authkit-session"]["reconnect"] is None


def test_a_reconnect_link_to_a_connection_last_seen_operational_says_so_first(app_env):
    """Kept or used twice, the link offered to reconnect a repaired connection, and AuthKit made a second one."""
    import os

    from pica_core.models import Connection
    from pica_core.store import Store

    working = next(c for c in app_env.state.connections.values()
                   if c["environment"] == "test" and c["state"] == "operational")
    store = Store.from_url(os.environ["DATABASE_URL"])
    store.upsert_connections([Connection.model_validate(working)], source="lookup")
    at = open_page("connect", query={"identity": working["identity"], "identityType": working["identityType"],
                                     "reconnect": working["key"]})
    assert_clean(at)
    assert any(w.value.startswith("It was operational when the dashboard last saw it (") for w in at.warning)
    assert [p.proto.query_string for p in at.get("page_link") if p.proto.label == "Look it up"]
    store.engine.dispose()


@pytest.mark.parametrize("identity, said", [("a\nb", "control characters"), ("x" * 129, "129 characters long")])
def test_a_link_s_identity_that_cannot_be_used_is_said_when_the_page_opens(app_env, identity, said):
    at = open_page("connect", query={"identity": identity, "identityType": "user"})
    assert_clean(at)
    assert any(w.value.startswith("The link's identity cannot be used: ") and said in w.value for w in at.warning)


def test_a_link_s_identity_type_any_is_said_to_need_a_choice(app_env):
    at = open_page("connect", query={"identity": "rev-any", "identityType": "any"})
    assert any("The link's identity type is any" in w.value for w in at.warning)


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
