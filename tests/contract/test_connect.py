"""Connecting: choosing the integration by id or name, and storing a success only once Pica confirms it."""

from __future__ import annotations

import httpx
import pytest

from pica_core.client import PicaClient
from pica_core.config import SANDBOX_TEST_KEY, Secret
from pica_core.connect import confirm_and_store, reconnect_applies, record_key, resolve_connector
from pica_core.errors import InvalidInputError
from pica_core.store import AuditEvent, Store


@pytest.fixture
def client(sandbox):
    with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as c:
        yield c


@pytest.fixture
def store(tmp_path):
    return Store.from_url(f"sqlite:///{tmp_path / 'connect.db'}")


def authkit_connect(sandbox, identity: str, identity_type: str, platform: str) -> dict:
    token = httpx.post(f"{sandbox.url}/v1/authkit", headers={"x-pica-secret": SANDBOX_TEST_KEY},
                       json={"identity": identity, "identityType": identity_type}).json()
    return httpx.post(f"{sandbox.url}/authkit/connect",
                      json={"requestId": token["requestId"], "platform": platform}).json()


@pytest.mark.parametrize("value", ["google-calendar", "Google Calendar", "google calendar", " GOOGLE-CALENDAR "])
def test_resolve_connector_maps_ids_and_names_to_the_display_name(client, value):
    assert resolve_connector(value, client.connectors()).name == "Google Calendar"


def test_resolve_connector_empty_and_unknown(client):
    connectors = client.connectors()
    assert resolve_connector("", connectors) is None and resolve_connector(None, connectors) is None
    with pytest.raises(InvalidInputError, match="No connector called"):
        resolve_connector("not-a-thing", connectors)


def test_record_key_accepts_both_field_names():
    assert record_key({"key": "k1"}) == "k1" and record_key({"connectionKey": "k2"}) == "k2"
    assert record_key({}) is None and record_key("nope") is None


def test_confirmed_success_is_stored_and_audited(sandbox, client, store):
    record = authkit_connect(sandbox, "new-user-7", "user", "gmail")
    outcome = confirm_and_store(client, store, record, identity="new-user-7", identity_type="user", actor="ops@x.io")
    assert outcome.ok and outcome.connection.key == record["key"]
    stored = store.stored_connection(record["key"])
    assert (stored.user_id, stored.identity_type, stored.platform, stored.state) == ("new-user-7", "user", "gmail",
                                                                                     "operational")
    assert [t.source for t in store.transitions(record["key"])] == ["connect"]
    event = store.audit_events(action="connect")[0]
    assert (event.actor, event.target, event.outcome) == ("ops@x.io", record["key"], "ok")


def test_a_reconnect_that_repairs_the_connection_is_audited_as_replacing_it(sandbox, client, store):
    old = authkit_connect(sandbox, "u-re", "user", "slack")
    sandbox.set_state(old["key"], "failed")
    again = authkit_connect(sandbox, "u-re", "user", "slack")  # AuthKit repairs the broken one
    assert again["key"] == old["key"]
    outcome = confirm_and_store(client, store, again, identity="u-re", identity_type="user", actor="a",
                                reconnect_key=old["key"])
    assert outcome.ok and outcome.note is None
    assert store.audit_events(action="reconnect")[0].detail["replaced"] == old["key"]


def test_a_reconnect_that_made_a_new_connection_says_the_old_one_is_still_there(sandbox, client, store):
    old = authkit_connect(sandbox, "u-re2", "user", "slack")  # operational: AuthKit makes another
    new = authkit_connect(sandbox, "u-re2", "user", "slack")
    assert new["key"] != old["key"]
    outcome = confirm_and_store(client, store, new, identity="u-re2", identity_type="user", actor="a",
                                reconnect_key=old["key"])
    assert outcome.ok and "made a new connection" in outcome.note and "still there (operational)" in outcome.note
    detail = store.audit_events(action="reconnect")[0].detail
    assert "replaced" not in detail and detail["new_connection_instead_of"] == old["key"]



def test_a_reconnect_link_used_for_another_identity_is_a_plain_connect_that_leaves_the_old_one_alone(sandbox, client,
                                                                                                     store):
    """Reconnect, then another identity typed in: it advised deleting the other identity's connection."""
    old = authkit_connect(sandbox, "team security", "team", "gmail")
    new = authkit_connect(sandbox, "rev-other", "user", "gmail")
    outcome = confirm_and_store(client, store, new, identity="rev-other", identity_type="user", actor="a",
                                reconnect_key=old["key"])
    assert outcome.ok and outcome.note is None
    assert store.audit_events(action="reconnect") == [] and "new_connection_instead_of" not in \
        store.audit_events(action="connect")[0].detail
    assert reconnect_applies(old["key"], "team security") and reconnect_applies(old["key"], " team security ")
    assert not reconnect_applies(old["key"], "rev-other") and not reconnect_applies(None, "team security")


def test_a_reconnect_that_connected_another_connector_is_a_plain_connect_that_leaves_the_old_one_alone(sandbox, client,
                                                                                                     store):
    """Another connector picked in the widget: audited as a reconnect of the old one, with advice to delete it."""
    old = authkit_connect(sandbox, "u-re3", "user", "jira")
    sandbox.set_state(old["key"], "failed")
    new = authkit_connect(sandbox, "u-re3", "user", "slack")
    outcome = confirm_and_store(client, store, new, identity="u-re3", identity_type="user", actor="a",
                                reconnect_key=old["key"])
    assert outcome.ok and outcome.note is None
    assert store.audit_events(action="reconnect") == []
    assert "new_connection_instead_of" not in store.audit_events(action="connect")[0].detail
    assert reconnect_applies(old["key"], "u-re3", "jira") and reconnect_applies(old["key"], "u-re3")
    assert not reconnect_applies(old["key"], "u-re3", "slack")


def test_a_success_pica_could_not_confirm_can_be_confirmed_again_without_authkit(sandbox, client, store):
    """The only retry on offer was opening AuthKit again, which made a second connection."""
    record = authkit_connect(sandbox, "rev-fault", "user", "gmail")
    sandbox.fault("status", status=503, count=50, path="/v1/vault")
    failed = confirm_and_store(client, store, record, identity="rev-fault", identity_type="user", actor="a",
                               session="n1")
    assert not failed.ok and failed.unconfirmed and failed.key == record["key"]
    assert "rather than opening AuthKit again" in failed.message
    sandbox.control("DELETE", "faults")
    again = confirm_and_store(client, store, {"key": failed.key}, identity="rev-fault", identity_type="user", actor="a",
                              session="n1")
    assert again.ok and store.stored_connection(record["key"]) is not None
    [event] = store.audit_events(outcome="ok")
    assert event.detail["identity_type"] == "user"


def test_one_widget_session_is_stored_and_audited_once(sandbox, client, store):
    """A rerun that came while the first confirmation was under way (Done clicked with Pica slow) audited it twice."""
    record = authkit_connect(sandbox, "rev-slow", "user", "gmail")
    for _ in range(2):
        assert confirm_and_store(client, store, record, identity="rev-slow", identity_type="user", actor="a",
                                 session="nonce-1").ok
    assert len(store.audit_events(action="connect")) == 1
    confirm_and_store(client, store, record, identity="rev-slow", identity_type="user", actor="a", session="nonce-2")
    assert len(store.audit_events(action="connect")) == 2  # another widget session is another connect
    # A failing confirmation confirmed again by a rerun: one error row, then the ok one.
    other = authkit_connect(sandbox, "rev-dora", "user", "gmail")
    sandbox.fault("status", status=503, count=50, path="/v1/vault")
    for _ in range(2):
        assert confirm_and_store(client, store, other, identity="rev-dora", identity_type="user", actor="a",
                                 session="nonce-3").unconfirmed
    sandbox.control("DELETE", "faults")
    confirm_and_store(client, store, other, identity="rev-dora", identity_type="user", actor="a", session="nonce-3")
    assert [e.outcome for e in store.audit_events(target=other["key"])] == ["ok", "error"]


def test_forged_success_is_not_stored(sandbox, client, store):
    fake = {"key": "test::gmail::default::" + "f" * 32 + "|victim"}
    outcome = confirm_and_store(client, store, fake, identity="victim", identity_type="user", actor="a")
    assert not outcome.ok and "does not know" in outcome.message
    assert store.stored_connection(fake["key"]) is None
    assert store.audit_events()[0].outcome == "refused"


def test_success_for_another_identity_is_refused(sandbox, client, store):
    record = authkit_connect(sandbox, "someone", "user", "gmail")
    outcome = confirm_and_store(client, store, record, identity="me", identity_type="user", actor="a")
    assert not outcome.ok and "belongs to 'someone'" in outcome.message
    assert store.stored_connection(record["key"]) is None and store.count(AuditEvent) == 1


def test_success_for_the_same_identity_of_another_type_is_refused(sandbox, client, store):
    """Identity type is part of the identity: a team's connection was stored and audited as the user's."""
    record = authkit_connect(sandbox, "design", "team", "gmail")
    outcome = confirm_and_store(client, store, record, identity="design", identity_type="user", actor="a")
    assert not outcome.ok and outcome.message.startswith(
        "The reported connection belongs to 'design' as a team, not as a user, so the dashboard did not store it: "
        "choose team as the identity type and open AuthKit again")  # what to do next; it said only "nothing stored"
    assert store.stored_connection(record["key"]) is None
    [event] = store.audit_events()
    assert (event.outcome, event.detail["reason"]) == ("refused", "identity type mismatch")
    assert event.detail["identity"] == "design"  # as every other connect row has it


def test_success_without_key(client, store):
    outcome = confirm_and_store(client, store, {"platform": "gmail"}, identity="me", identity_type="user", actor="a")
    assert not outcome.ok and store.audit_events()[0].outcome == "error"
