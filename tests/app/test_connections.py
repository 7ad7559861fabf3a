"""Connections page (AppTest): lookups, deep links, filters, detail history, tag edit, delete, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs
import re

import httpx

import pytest

from pica_core.config import SANDBOX_TEST_KEY
from pica_core.store import Store
from tests.app.conftest import assert_clean, open_page, press_and_wait, press_sync, press_triage


def seeded(sandbox, **match) -> dict:
    rows = sandbox.state.connections.values()
    return next(c for c in sorted(rows, key=lambda c: c["createdAt"], reverse=True)
                if c["environment"] == "test" and all(c[k] == v for k, v in match.items()))


def identity_with_broken_connection(sandbox) -> dict:
    """An identity having both a failed and an operational connection."""
    by_identity: dict[str, set] = {}
    for c in sandbox.state.connections.values():
        if c["environment"] == "test":
            by_identity.setdefault(c["identity"], set()).add(c["state"])
    identity = next(i for i, states in by_identity.items() if {"failed", "operational"} <= states)
    return seeded(sandbox, identity=identity, state="failed")


def table(at):
    return at.dataframe[0].value


def store_of(_sandbox) -> Store:
    import os

    return Store.from_url(os.environ["DATABASE_URL"])


def test_deep_link_opens_the_identity(app_env):
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "identityType": conn["identityType"]})
    assert_clean(at)
    expected = [c for c in app_env.state.connections.values()
                if c["identity"] == conn["identity"] and c["identityType"] == conn["identityType"]]
    frame = table(at)
    assert len(frame) == len(expected) and set(frame["key"]) == {c["key"] for c in expected}
    assert frame["state"].iloc[0] == "● failed"  # broken first
    assert any(" attention)" in m.value for m in at.markdown)
    # Since when: found so by the lookup itself, so "or earlier"; one identity's columns are said once.
    assert frame["state since"].iloc[0].endswith("or earlier")
    assert any(f"all identity {conn['identity']}" in c.value.replace("\\", "") for c in at.caption)


def test_look_up_pressed_again_asks_pica_again(app_env):
    """Support asks the user to reconnect, then presses Look up: the cached answer showed the old state for a
    minute, with nothing to refresh it."""
    conn = seeded(app_env, state="operational")
    query = {"identity": conn["identity"], "identityType": conn["identityType"]}
    def state(at) -> str:
        frame = table(at)
        return frame[frame["key"] == conn["key"]]["state"].iloc[0]

    at = open_page("connections", query=query)
    assert state(at) == "● operational"
    app_env.set_state(conn["id"], "failed")
    assert state(open_page("connections", query=query)) == "● operational"  # a link's answer may be cached
    next(b for b in at.button if b.label == "Look up").click().run()
    assert_clean(at)
    assert state(at) == "● failed"


def test_a_resume_that_ends_makes_a_cached_answer_old(app_env):
    """The cache was keyed by the last sync's id, which a resume keeps: an answer from before it outlived it."""
    conn = seeded(app_env, state="operational")
    query = {"identity": conn["identity"], "identityType": conn["identityType"]}
    store = store_of(app_env)
    run = store.start_sync("test", 100)
    store.update_sync(run.id, status="partial", finished_at=datetime.now(UTC))
    assert "● operational" in set(table(open_page("connections", query=query))["state"])
    app_env.set_state(conn["id"], "failed")
    store.update_sync(run.id, status="complete", finished_at=datetime.now(UTC))  # resumed, and ended
    frame = table(open_page("connections", query=query))
    assert frame[frame["key"] == conn["key"]]["state"].iloc[0] == "● failed"
    store.engine.dispose()


def test_an_identity_written_with_its_type_after_a_comma_and_a_space_offers_that_lookup(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": f"{conn['identity']}, {conn['identityType']}"})
    assert_clean(at)
    [link] = [p for p in at.get("page_link") if p.proto.label.startswith("Look up ")]
    assert link.proto.label.replace("\\", "") == f"Look up {conn['identity']} (type {conn['identityType']})"
    assert parse_qs(link.proto.query_string) == {"identity": [conn["identity"]], "identityType": [conn["identityType"]]}


def test_a_key_narrowed_by_another_identity_offers_the_key_alone_and_is_not_called_deleted(app_env):
    conn, other = seeded(app_env, platform="slack"), seeded(app_env, platform="gmail")
    assert conn["identity"] != other["identity"]
    at = open_page("connections", query={"identity": other["identity"], "key": conn["key"]})
    assert_clean(at)
    assert not any("does not list it" in c.value for c in at.caption)
    [link] = [p for p in at.get("page_link") if p.proto.label.startswith("Look up ")]
    assert link.proto.label.replace("\\", "") == f"Look up key {conn['key']}"
    assert parse_qs(link.proto.query_string) == {"key": [conn["key"]]}


def test_a_link_may_name_its_platform_as_the_catalog_does(app_env):
    conn = seeded(app_env, platform="google-calendar")
    at = open_page("connections", query={"platform": "Google Calendar"})
    assert_clean(at)
    assert not at.error and conn["key"] in set(table(at)["key"])
    assert any(m.value.startswith("**platform Google Calendar**") for m in at.markdown)


def test_lookup_by_typing_an_identity(app_env):
    conn = seeded(app_env, identityType="organization")
    at = open_page("connections")
    at.text_input[0].set_value(conn["identity"])
    at.button[0].click().run()  # "Look up" (form submit)
    assert_clean(at)
    assert at.query_params["identity"] == conn["identity"]
    assert conn["key"] in set(table(at)["key"])


def test_lookup_by_key(app_env):
    conn = seeded(app_env, platform="slack")
    at = open_page("connections", query={"key": conn["key"]})
    assert_clean(at)
    assert list(table(at)["key"]) == [conn["key"]]
    # The one connection a key names opens at once (it took a click on its row, or &connection=…).
    assert at.query_params["connection"] == conn["id"]
    assert any(b.label == "Refresh from Pica" for b in at.button)
    at.run()  # a rerun about the same lookup leaves it as it is
    assert at.query_params["connection"] == conn["id"]


def test_state_filter_from_the_url(app_env):
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "state": "failed"})
    assert_clean(at)
    assert set(table(at)["state"]) == {"● failed"}


def test_detail_shows_history_after_two_syncs_with_a_state_change(app_env):
    from tests.app.conftest import open_page as run

    conn = seeded(app_env, state="operational", platform="gmail")
    at = run("fleet")  # the first sync ran on the overview; state recorded as operational
    app_env.set_state(conn["id"], "failed")
    press_sync(at)
    assert_clean(at)
    at = open_page("connections", query={"identity": conn["identity"], "identityType": conn["identityType"],
                                         "connection": conn["id"]})
    assert_clean(at)
    history = next(df.value for df in at.dataframe if "change" in df.value.columns)
    assert list(history["change"]) == ["operational → failed", "first seen operational"]
    assert any("The user must reconnect" in e.value for e in at.error)


@pytest.mark.parametrize("bad, message", [("eu,us", "holds a comma"), ("x" * 70, "70 characters long")])
def test_a_tag_pica_would_refuse_or_never_find_is_named_before_saving(app_env, bad, message):
    conn = seeded(app_env, platform="notion")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    before, patches = list(conn["tags"]), app_env.count("vault/connections/patch")
    next(m for m in at.multiselect if m.label == "Tags").set_value(["vip", bad])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert any(message in e.value.replace("\\", "") for e in at.error)
    assert app_env.state.connections[conn["id"]]["tags"] == before
    assert app_env.count("vault/connections/patch") == patches


def test_tag_edit_round_trips_through_the_sandbox(app_env):
    conn = seeded(app_env, platform="notion")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    tags = next(m for m in at.multiselect if m.label == "Tags")
    tags.set_value(["escalated", "vip"])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert app_env.state.connections[conn["id"]]["tags"] == ["escalated", "vip"]
    assert [t.value for t in at.toast] == ["Tags saved"]  # raised on the run after the save, so it is seen
    at.run()
    assert not at.toast  # once
    event = store_of(app_env).audit_events(action="edit_tags")[0]
    assert (event.actor, event.target, event.outcome) == ("local-admin", conn["key"], "ok")


def test_a_tag_edit_keeps_what_someone_else_changed_meanwhile_and_says_so(app_env):
    """The list as the page showed it was saved: a tag added elsewhere since (another agent, an automation) was
    removed, and the audit's "before" was the page's, not Pica's."""
    conn = seeded(app_env, platform="notion")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    shown = list(conn["tags"])
    next(m for m in at.multiselect if m.label == "Tags").set_value([*shown, "beta"])
    httpx.patch(f"{app_env.url}/v1/vault/connections/{conn['id']}", json={"tags": [*shown, "from-api"]},
                headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10).raise_for_status()
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert app_env.state.connections[conn["id"]]["tags"] == [*shown, "beta", "from-api"]
    [toast] = [t.value.replace("\\", "") for t in at.toast]
    assert toast.startswith("Tags saved. They had changed since this page showed them (now ")
    event = store_of(app_env).audit_events(action="edit_tags")[0]
    assert event.detail["before"] == [*shown, "from-api"]
    assert next(m for m in at.multiselect if m.label == "Tags").value == [*shown, "beta", "from-api"]


@pytest.mark.parametrize("when", ["before the page", "meanwhile"])
def test_a_comma_tag_pica_took_from_elsewhere_does_not_block_the_reader_s_change(app_env, when):
    """Pica takes "eu,us" from other clients; the dashboard refused every save of the connection's tags after."""
    conn = seeded(app_env, platform="notion")
    set_elsewhere = lambda tags: httpx.patch(  # noqa: E731
        f"{app_env.url}/v1/vault/connections/{conn['id']}", json={"tags": tags},
        headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10).raise_for_status()
    if when == "before the page":
        set_elsewhere(["eu,us"])
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    shown = list(app_env.state.connections[conn["id"]]["tags"])
    next(m for m in at.multiselect if m.label == "Tags").set_value([*shown, "vip"])
    if when == "meanwhile":
        set_elsewhere([*shown, "eu,us"])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert sorted(app_env.state.connections[conn["id"]]["tags"]) == sorted({*shown, "eu,us", "vip"})


def test_the_same_tags_in_another_order_are_not_said_to_have_changed(app_env):
    conn = seeded(app_env, platform="notion")
    patch = lambda tags: httpx.patch(  # noqa: E731
        f"{app_env.url}/v1/vault/connections/{conn['id']}", json={"tags": tags},
        headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10).raise_for_status()
    patch(["eu", "beta"])
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    next(m for m in at.multiselect if m.label == "Tags").set_value(["eu", "beta", "vip"])
    patch(["beta", "eu"])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert [t.value for t in at.toast] == ["Tags saved"]
    assert sorted(app_env.state.connections[conn["id"]]["tags"]) == ["beta", "eu", "vip"]


def test_filters_that_hide_every_row_say_so_and_clear_in_one_click(app_env):
    """An empty grid under "Showing 0 of 16 · select a row", with a CSV of nothing, and no way back but by hand."""
    conn = seeded(app_env, state="operational")
    at = open_page("connections", query={"identity": conn["identity"], "state": "failed",
                                         "platforms": conn["platform"]})
    assert_clean(at)
    broken = [c for c in app_env.state.connections.values() if c["identity"] == conn["identity"]
              and c["environment"] == "test" and c["platform"] == conn["platform"] and c["state"] == "failed"]
    assert not broken, "the test needs a platform with no failed connection of this identity"
    assert any(i.value.startswith("The filters hide all ") for i in at.info)
    assert not [d for d in at.dataframe if (d.key or "").startswith("vault.")]
    assert not [b for b in at.get("download_button")]
    next(b for b in at.button if b.label == "Clear the filters").click().run()
    assert_clean(at)
    assert "state" not in at.query_params and "platforms" not in at.query_params
    assert at.query_params["identity"] == conn["identity"]
    assert len(next(d for d in at.dataframe if (d.key or "").startswith("vault.")).value) >= 1


def test_refresh_from_pica_draws_the_tag_box_from_pica_s_tags(app_env):
    conn = seeded(app_env, platform="notion")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    before = list(conn["tags"])
    httpx.patch(f"{app_env.url}/v1/vault/connections/{conn['id']}", json={"tags": [*before, "from-api"]},
                headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10).raise_for_status()
    next(b for b in at.button if b.label == "Refresh from Pica").click().run()
    assert_clean(at)
    assert next(m for m in at.multiselect if m.label == "Tags").value == [*before, "from-api"]


def test_delete_needs_the_typed_confirmation_then_round_trips(app_env):
    conn = seeded(app_env, platform="hubspot")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    next(b for b in at.button if b.label == "Delete connection").click().run()  # nothing typed
    assert "Type hubspot exactly to confirm: nothing was deleted." in [e.value for e in at.error]
    at.text_input(key=f"delete-confirm-{conn['id']}").set_value("HubSpot")  # typed, not yet committed…
    next(b for b in at.button if b.label == "Delete connection").click().run()  # …committed with the click
    assert conn["id"] in app_env.state.connections  # not the platform id
    at.text_input(key=f"delete-confirm-{conn['id']}").set_value("hubspot")
    next(b for b in at.button if b.label == "Delete connection").click().run()  # one click, as in a browser
    assert_clean(at)
    assert conn["id"] not in app_env.state.connections
    assert any("Deleted the connection to HubSpot: " in s.value.replace("\\", "") for s in at.success)
    store = store_of(app_env)
    assert store.stored_connection(conn["key"]) is None
    assert store.audit_events(action="delete")[0].outcome == "ok"
    # Opened again by its key (Fleet's changes link to it): not a mystery "not found", but who deleted it and when
    again = open_page("connections", query={"key": conn["key"]})
    assert_clean(again)
    [said] = [i.value.replace("\\", "") for i in again.info if "deleted from this dashboard" in i.value]
    assert re.fullmatch(r"It was deleted from this dashboard by local-admin on \d{4}-\d\d-\d\d at \d\d:\d\d UTC "
                        r"\(the Audit log has it\)\.", said), said

def delete_in_pica(sandbox, conn) -> None:
    """As the end user or another agent would, outside this session."""
    httpx.delete(f"{sandbox.url}/v1/vault/connections/{conn['id']}", headers={"x-pica-secret": SANDBOX_TEST_KEY},
                 timeout=10).raise_for_status()


@pytest.mark.parametrize("how", ["refresh", "delete", "save tags"])
def test_a_connection_deleted_elsewhere_is_said_to_be_gone_and_no_longer_counted(app_env, how):
    """A 404 read as "check the id or the environment", the detail stayed, and Fleet and the Catalog counted it on."""
    conn = seeded(app_env, platform="hubspot")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    store = store_of(app_env)
    assert store.stored_connection(conn["key"]) is not None
    delete_in_pica(app_env, conn)
    if how == "refresh":
        next(b for b in at.button if b.label == "Refresh from Pica").click().run()
    elif how == "save tags":  # it said "check the id or key", of an id the agent never typed
        next(m for m in at.multiselect if m.label == "Tags").set_value(["escalated"])
        next(b for b in at.button if b.label == "Save tags").click().run()
    else:
        at.text_input(key=f"delete-confirm-{conn['id']}").set_value("hubspot")
        next(b for b in at.button if b.label == "Delete connection").click().run()
    assert_clean(at)
    assert not at.error
    assert any("no longer exists in Pica (deleted elsewhere)" in s.value.replace("\\", "") for s in at.success)
    assert store.stored_connection(conn["key"]) is None and "connection" not in at.query_params
    if how == "delete":
        [event] = store.audit_events(action="delete")
        assert event.outcome == "ok" and event.detail["already_gone"] is True



def test_a_connection_deleted_between_the_tag_save_s_read_and_its_write_is_said_to_be_gone(app_env):
    import threading

    conn = seeded(app_env, platform="hubspot")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    app_env.fault("latency", seconds=0.8, count=1, method="PATCH", path=f"/v1/vault/connections/{conn['id']}")
    deleting = threading.Timer(0.3, delete_in_pica, (app_env, conn))  # while the PATCH waits to be answered
    next(m for m in at.multiselect if m.label == "Tags").set_value(["escalated"])
    deleting.start()
    next(b for b in at.button if b.label == "Save tags").click().run()
    deleting.join()
    assert_clean(at)
    assert any("no longer exists in Pica (deleted elsewhere)" in s.value.replace("\\", "") for s in at.success)
    assert store_of(app_env).stored_connection(conn["key"]) is None


@pytest.mark.parametrize("deleted_by_the_check", [True, False])
def test_a_delete_pica_did_not_answer_is_checked_not_called_failed(app_env, monkeypatch, deleted_by_the_check):
    """A timed-out DELETE said "failed" and was audited as an error while Pica deleted it; pressed again, it was
    "deleted elsewhere"."""
    monkeypatch.setenv("PICA_TIMEOUT_SECONDS", "1")
    conn = seeded(app_env, platform="hubspot")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    # Pica deletes it 1.2 s after the request, when the dashboard has stopped waiting (1 s); the dashboard's check
    # then sees it gone if it asks after that (0.9 s on its way), still there if it asks at once.
    app_env.fault("hang", seconds=1.2, count=1, method="DELETE", path=f"/v1/vault/connections/{conn['id']}")
    if deleted_by_the_check:
        app_env.fault("latency", seconds=0.9, count=1, method="GET", path="/v1/vault/connections")
    at.text_input(key=f"delete-confirm-{conn['id']}").set_value("hubspot")
    next(b for b in at.button if b.label == "Delete connection").click().run()
    assert_clean(at)
    [event] = store_of(app_env).audit_events(action="delete")
    if deleted_by_the_check:
        assert event.outcome == "ok" and any("Deleted the connection to HubSpot" in s.value.replace("\\", "")
                                             for s in at.success)
    else:
        assert event.outcome == "unknown" and any("may have received the request" in w.value for w in at.warning)
        assert "connection" in at.query_params  # still shown, to refresh


def test_a_tag_save_pica_did_not_answer_is_unknown_not_failed(app_env, monkeypatch):
    monkeypatch.setenv("PICA_TIMEOUT_SECONDS", "1")
    conn = seeded(app_env, platform="notion")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    app_env.fault("hang", seconds=3, count=1, method="PATCH", path=f"/v1/vault/connections/{conn['id']}")
    next(m for m in at.multiselect if m.label == "Tags").set_value(["escalated"])
    next(b for b in at.button if b.label == "Save tags").click().run()
    assert_clean(at)
    assert store_of(app_env).audit_events(action="edit_tags")[0].outcome == "unknown"
    assert any("did not confirm that the tags were saved" in w.value for w in at.warning)


def test_with_pica_down_a_lookup_shows_what_the_dashboard_stored(app_env):
    """Support could not answer "since when?" while Pica failed, though a sync a minute before had stored it all."""
    conn = identity_with_broken_connection(app_env)
    open_page("fleet")  # a sync stores the fleet
    app_env.fault("status", status=503, count=1000, path="/v1/vault")
    at = open_page("connections", query={"identity": conn["identity"]})
    assert_clean(at)
    assert any(m.value.startswith("**What the dashboard last stored for") for m in at.markdown)
    shown = next(d.value for d in at.dataframe if "state when last seen" in d.value.columns)
    mine = [c for c in app_env.state.connections.values()
            if c["identity"] == conn["identity"] and c["environment"] == "test"]
    assert sorted(shown["key"]) == sorted(c["key"] for c in mine)


def test_a_lookup_shows_what_pica_no_longer_lists_of_what_the_dashboard_saw(app_env):
    """"Since when?" for a connection deleted since the last sync: the lookup said only "No connections"."""
    conn = seeded(app_env, platform="hubspot")
    open_page("fleet")  # a sync stores the fleet
    delete_in_pica(app_env, conn)
    at = open_page("connections", query={"identity": conn["identity"], "platform": "hubspot"})
    assert_clean(at)
    heading = "**Pica no longer lists 1 connection the dashboard saw for this lookup**"
    assert any(m.value.startswith(heading) for m in at.markdown)
    shown = next(d.value for d in at.dataframe if "state when last seen" in d.value.columns)
    assert list(shown["key"]) == [conn["key"]]
    listed = [c for c in app_env.state.connections.values() if c["identity"] == conn["identity"]
              and c["environment"] == "test" and c["platform"] == "hubspot"]
    assert bool(listed) == any(e.label == "1 connection Pica no longer lists" for e in at.expander)  # beside others



def test_a_remembered_answer_shown_while_pica_fails_does_not_call_newer_connections_gone(app_env):
    from tests.app.conftest import press_sync
    from tests.contract.test_connect import authkit_connect

    identity = "rev-stale-id"
    authkit_connect(app_env, identity, "user", "gmail")
    at = open_page("connections", query={"identity": identity})  # Pica's answer: remembered
    assert len(table(at)) == 1
    newer = authkit_connect(app_env, identity, "user", "slack")  # made since, in Pica
    press_sync(open_page("fleet"))  # and stored by a sync
    assert store_of(app_env).stored_connection(newer["key"]) is not None
    app_env.fault("status", status=503, count=1000, path="/v1/vault")  # Pica fails: the remembered answer is shown
    at = open_page("connections", query={"identity": identity})
    assert_clean(at)
    assert not [m.value for m in at.markdown if "no longer lists" in m.value]
    assert not [e for e in at.expander if "no longer lists" in e.label]

def test_reconnect_is_disabled_with_the_reason_when_the_connector_is_not_enabled_in_authkit(app_env):
    """Connect could only say so, and offer other connectors, none of which reconnects this one."""
    enabled = app_env.state.catalog.authkit_enabled["test"]
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test"
                and c["platform"] not in enabled and c["state"] == "failed")
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    assert_clean(at)
    [reconnect] = [b for b in at.button if b.label == "Reconnect"]
    assert reconnect.disabled and "is not enabled in AuthKit for this environment" in reconnect.help
    [advice] = [e.value for e in at.error if "What to do" in e.value]  # it said to use the disabled Reconnect
    assert "is not enabled in AuthKit for this environment, so Reconnect cannot offer it yet" in advice
    assert not [link for link in at.get("page_link") if link.proto.label == "Reconnect"]
    enabled_one = seeded(app_env, platform=sorted(enabled & {"gmail", "slack", "notion", "hubspot"})[0])
    at = open_page("connections", query={"key": enabled_one["key"], "connection": enabled_one["id"]})
    assert [link for link in at.get("page_link") if link.proto.label == "Reconnect"]

def test_an_identity_in_other_letter_case_points_to_the_one_pica_knows(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": conn["identity"].upper()})
    assert_clean(at)
    assert at.warning[0].value.replace("\\", "").startswith(f"No connections for {conn['identity'].upper()}")
    hint = " ".join(c.value for c in at.caption).replace("\\", "")
    assert f"letter case included: {conn['identity']} has" in hint
    assert f"identity={conn['identity']}" in str(at.get("page_link")[0].proto).replace("%40", "@")


def test_a_link_with_an_unknown_identity_type_says_so_and_looks_up_every_type(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "identityType": "admin"})
    assert_clean(at)
    assert any("identity type admin is not one of" in w.value for w in at.warning)
    assert conn["key"] in set(at.dataframe[0].value["key"])


def test_unknown_identity_gets_a_message_with_hints(app_env):
    conn = seeded(app_env, identityType="team")
    at = open_page("connections", query={"identity": conn["identity"], "identityType": "user"})
    assert_clean(at)
    assert at.warning[0].value.replace("\\", "") == f"No connections for {conn['identity']} (type user)."  # escaped
    hint = " ".join(c.value for c in at.caption)
    assert "as type team" in hint and "test key" in hint


@pytest.mark.parametrize("identity, message", [
    ("x" * 129, "at most 128"), ("a\u0007b", "control characters"),
    ("\u202eusr_1", "an invisible character, U+202E (right-to-left override), at the start"),
    ("vik.nguyen\u200b@umbrella.io", "an invisible character, U+200B (zero width space), after “vik.nguyen”"),
    ("\ufeffusr_1", "U+FEFF (byte order mark)"), ("ava\u00adsmith", "U+00AD (soft hyphen)")])
def test_bad_identity_is_refused_before_any_request(app_env, identity, message):
    at = open_page("connections")
    before = app_env.count("vault/connections")
    at.query_params["identity"] = identity
    at.run()
    assert_clean(at)
    assert any(message in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert app_env.count("vault/connections") == before


def test_a_platform_the_catalog_lacks_stays_in_the_lookup_when_it_is_run_again(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "platform": "not-in-the-catalog"})
    assert_clean(at)
    platform = next(s for s in at.selectbox if s.label == "Platform")
    assert platform.value == "not-in-the-catalog"
    next(b for b in at.button if b.label == "Look up").click().run()
    assert_clean(at)
    assert at.query_params["platform"] == "not-in-the-catalog"
    assert any(w.value.replace("\\", "").startswith(f"No connections for {conn['identity']} (type any) on "
                                                       "not-in-the-catalog") for w in at.warning)


def test_a_spreadsheet_row_pasted_as_the_identity_looks_up_the_identity_with_its_type(app_env):
    team = seeded(app_env, identityType="team")
    at = open_page("connections")
    next(t for t in at.text_input if t.label == "Identity").set_value(f"{team['identity']}\tTeam\n")
    next(b for b in at.button if b.label == "Look up").click().run()
    assert_clean(at)
    assert (at.query_params["identity"], at.query_params["identityType"]) == (team["identity"], "team")
    assert team["key"] in set(table(at)["key"])
    # The same row again: the form shows what was looked up, not the pasted row, each time.
    next(t for t in at.text_input if t.label == "Identity").set_value(f"{team['identity']}\tteam")
    next(b for b in at.button if b.label == "Look up").click().run()
    assert next(t for t in at.text_input if t.label == "Identity").value == team["identity"]
    assert next(s for s in at.selectbox if s.label == "Identity type").value == "team"
    at.query_params["identity"] = "someone-else"  # a link on this page ("Look up <lower case>")
    at.run()
    assert next(t for t in at.text_input if t.label == "Identity").value == "someone-else"


def test_a_link_s_unknown_filter_values_are_named_not_dropped_silently(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "state": "failed,bogus", "environment": "prod"})
    assert_clean(at)
    said = [w.value.replace("\\", "") for w in at.warning if "left out" in w.value]
    assert said and said[0].startswith("The link's filters name bogus (not a state), prod (not an environment): "
                                       "left out.")
    assert at.multiselect(key="f-state").value == ["failed"]


def test_a_link_s_misspelt_filter_is_named_and_its_alias_is_read(app_env):
    """?identiy= looked up nothing and said nothing; ?identity_type= (the API's spelling) is read, not named."""
    conn = seeded(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "identity_type": conn["identityType"],
                                         "stat": "failed"})
    assert_clean(at)
    [said] = [w.value.replace("\\", "") for w in at.warning if "Ignored" in w.value]
    assert said == ("Ignored stat=failed: this page's links take identity, identityType, key, platform, state, "
                    "platforms, environment, connection.")
    assert "stat" not in at.query_params and conn["key"] in set(table(at)["key"])


def test_a_key_with_an_invisible_character_says_where_it_is(app_env):
    conn = seeded(app_env)
    at = open_page("connections", query={"key": conn["key"] + "\u200b"})
    assert_clean(at)
    error = next(e.value for e in at.error).replace("\\", "")
    assert "That connection key contains an invisible character, U+200B (zero width space), after “" in error
    assert not [w for w in at.warning if "No connection" in w.value]


@pytest.mark.parametrize("platform", ["../../v1/vault", "g" * 90, "gm ail"])
def test_a_platform_that_is_no_platform_id_is_refused_before_any_request(app_env, platform):
    at = open_page("connections")
    before = app_env.count("vault/connections")
    at.query_params["platform"] = platform
    at.run()
    assert_clean(at)
    assert any("is not a platform id" in e.value.replace("\\", "") for e in at.error)
    assert app_env.count("vault/connections") == before


def test_pica_401_says_to_check_the_secret_key(app_env, monkeypatch):
    monkeypatch.setenv("PICA_SECRET_KEY", "sk_test_wrong_key_for_this_test")
    monkeypatch.setenv("PICA_MAX_RETRIES", "0")
    at = open_page("connections", query={"identity": "anyone"})
    assert_clean(at)
    assert any("Check PICA_SECRET_KEY" in c.value.replace("\\", "") for c in at.caption)  # shown escaped
    assert not any("sk_test_wrong_key_for_this_test" in e.value for e in [*at.error, *at.caption, *at.markdown])


def test_pica_429_says_when_to_retry(app_env, monkeypatch):
    monkeypatch.setenv("PICA_RETRY_DEADLINE_SECONDS", "1")
    at = open_page("connections")
    app_env.fault("rate_limit", count=10, path="/v1/vault", seconds=42)
    at.query_params["identity"] = "someone-new"
    at.run()
    assert_clean(at)
    assert any("retry in 42 s" in c.value for c in at.caption)


def test_a_page_reports_a_long_rate_limit_at_once_and_a_short_one_after_its_tries(app_env, monkeypatch):
    monkeypatch.setenv("PICA_RETRY_DEADLINE_SECONDS", "30")  # the sync's budget; a page keeps 10 s of it
    at = open_page("connections")
    app_env.fault("rate_limit", count=10, path="/v1/vault", seconds=20)
    before = app_env.count()
    at.query_params["identity"] = "someone-new"
    at.run()
    assert_clean(at)
    hints = lambda: [c.value.replace("\\", "") for c in at.caption]  # noqa: E731 - shown escaped (plain)
    assert "Pica's rate limit was reached: retry in 20 s." in hints()
    assert app_env.count() - before == 1  # not waited for: nobody watches a spinner for 20 s
    app_env.control("DELETE", "faults")
    app_env.fault("rate_limit", count=10, path="/v1/vault", seconds=2)
    before = app_env.count()
    at.query_params["identity"] = "someone-else"
    at.run()
    assert_clean(at)
    assert [h for h in hints() if re.fullmatch(r"Tried 4 times over [67] s\. Pica's rate limit was reached: retry in 2 s\.",
                                               h)], hints()
    assert app_env.count() - before == 4


def test_triage_the_next_waits_for_the_rate_limit_the_first_batch_met(app_env, monkeypatch):
    """It stayed an inviting button while the limit lasted: pressed, all its identities failed in 2 s."""
    monkeypatch.setattr("pica_core.connections_view.MAX_BULK_IDENTITIES", 2)
    app_env.fault("rate_limit", count=100, path="/v1/vault", seconds=60)
    at = open_page("connections")
    at.text_area[0].set_value("someone-1\nsomeone-2\nsomeone-3\n")
    press_triage(at)
    assert_clean(at)
    [later] = [b for b in at.button if b.key == "triage-next"]
    assert re.fullmatch(r"Triage the next 1 \(after \d\d:\d\d:\d\d UTC\)", later.label), later.label
    assert later.proto.type == "tertiary" and "rate limit lifts then" in later.proto.help


def test_bulk_triage(app_env):
    first = identity_with_broken_connection(app_env)
    second = seeded(app_env, identityType="project")
    at = open_page("connections")
    at.text_area[0].set_value(f"identity\n{first['identity']}\n{second['identity']}\n"
                              f"nobody-at-all\n{'y' * 200}")
    press_triage(at)
    assert_clean(at)
    frame = next(df.value for df in at.dataframe if "key" in df.value.columns and "note" in df.value.columns)
    assert {first["key"], second["key"]} <= set(frame["key"])
    assert "no connections" in set(frame["state"])
    assert any("Line 5" in w.value for w in at.warning)
    # By identity: one row each, broken first, with the lookup that opens it.
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    assert list(summary["identity"]).count(first["identity"]) == 1 and len(summary) == 3
    assert list(summary["need attention"]) == sorted(summary["need attention"], reverse=True)
    nobody = summary[summary["identity"] == "nobody-at-all"].iloc[0]
    assert (nobody["connections"], nobody["note"], nobody["open"]) == ("0", "no connections",
                                                                        "/connections?identity=nobody-at-all")
    at.toggle(key="triage-broken-only").set_value(True).run()
    broken = next(df.value for df in at.dataframe if "key" in df.value.columns and "note" in df.value.columns)
    assert set(broken["state"]) <= {"failed", "degraded"}
    assert len(broken) == sum(frame["state"].isin(["failed", "degraded"])) > 0
    # Its CSV is under the tab it exports (below both, it followed this toggle while By identity showed)
    [every] = [t for t in at.tabs if t.label == "Every connection"]
    assert [d.proto.label for d in every.get("download_button")] == ["Download CSV (those that need attention)"]


def test_bulk_triage_past_its_limit_adds_the_next_identities_to_the_results(app_env, monkeypatch):
    """Past 500 lines it said "Triage them next": the agent had to cut the first 500 out of the text, and the next
    triage replaced the results it had, so no one table held them all."""
    monkeypatch.setattr("pica_core.connections_view.MAX_BULK_IDENTITIES", 2)
    first, second = identity_with_broken_connection(app_env), seeded(app_env, identityType="project")
    at = open_page("connections")
    at.text_area[0].set_value(f"{first['identity']}\n{second['identity']}\nnobody-at-all\n")
    press_triage(at)
    assert_clean(at)
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    assert len(summary) == 2
    assert "1 more identity, from line 3 on, is not looked up yet: a triage looks up 2 at a time." in [
        i.value.replace("\\", "") for i in at.info]
    # A next batch that fails as a whole keeps its identities to do, and the results so far.
    import pica_core.ui.connections_ui as connections_ui

    async def broken(*args, **kwargs):
        raise RuntimeError("the network went away")

    with monkeypatch.context() as patch:
        patch.setattr(connections_ui, "triage", broken)
        press_and_wait(at, "Triage the next 1", "triage-job")
    assert_clean(at)
    assert any("Press Triage the next to try them again" in w.value for w in at.warning)
    assert len(next(df.value for df in at.dataframe if "need attention" in df.value.columns)) == 2
    press_and_wait(at, "Triage the next 1", "triage-job")
    assert_clean(at)
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    assert set(summary["identity"]) == {first["identity"], second["identity"], "nobody-at-all"}
    assert not [i for i in at.info if "not looked up yet" in i.value]
    assert not [b for b in at.button if b.key == "triage-next"]


def vault_key(at) -> str:
    return next(d.key for d in at.dataframe if (d.key or "").startswith("vault."))


def select_row(at, position: int) -> None:
    at.session_state[vault_key(at)] = {"selection": {"rows": [position], "columns": []}}
    at.run()
    assert_clean(at)


def test_a_selection_does_not_move_to_the_connection_that_takes_its_row(app_env):
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"]})
    first = table(at)["id"].iloc[0]  # broken first: a failed one
    widget = vault_key(at)
    select_row(at, 0)
    assert vault_key(at) == widget  # the same table: a click keeps the reader's sorting
    assert at.query_params["connection"] == first
    assert not any("hide this connection's row" in c.value for c in at.caption)
    at.multiselect(key="f-state").set_value(["operational"]).run()  # another connection is in row 0 now
    assert_clean(at)
    assert table(at)["id"].iloc[0] != first
    assert at.query_params["connection"] == first  # the detail stays on the one chosen
    assert any("The user must reconnect" in e.value for e in at.error)
    assert any("hide this connection's row" in c.value for c in at.caption)


def test_a_delete_confirmation_typed_for_one_connection_does_not_confirm_another(app_env):
    at = open_page("connections", query={"platform": "gmail"})
    ids = list(table(at)["id"])
    select_row(at, 0)
    at.text_input(key=f"delete-confirm-{ids[0]}").set_value("gmail").run()
    select_row(at, 1)  # another Gmail connection
    assert at.query_params["connection"] == ids[1]
    assert at.text_input(key=f"delete-confirm-{ids[1]}").value == ""
    next(b for b in at.button if b.label == "Delete connection").click().run()
    assert "Type gmail exactly to confirm: nothing was deleted." in [e.value for e in at.error]
    assert ids[0] in app_env.state.connections and ids[1] in app_env.state.connections


def test_the_filters_show_what_the_url_says(app_env):
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"]})
    at.multiselect(key="f-state").set_value(["failed"]).run()
    assert at.query_params["state"] == "failed"
    at.query_params["state"] = "operational"  # Back, or a link from elsewhere, in the same session
    at.run()
    assert_clean(at)
    assert at.multiselect(key="f-state").value == ["operational"]
    assert set(table(at)["state"]) == {"● operational"}


def test_an_identity_type_alone_asks_for_more_and_narrows_a_platform(app_env):
    at = open_page("connections", query={"identityType": "team"})
    assert_clean(at)
    assert any("Identity type team alone" in i.value for i in at.info)
    at.query_params["platform"] = "gmail"
    at.run()
    assert_clean(at)
    teams = {c["key"] for c in app_env.state.connections.values() if c["environment"] == "test"
             and c["platform"] == "gmail" and c["identityType"] == "team"}
    assert teams and set(table(at)["key"]) == teams


def test_an_identity_is_shown_as_text_not_markdown(app_env):
    at = open_page("connections", query={"identity": "**ana** :red[x] <b>"})
    assert_clean(at)
    assert at.warning[0].value == "No connections for \\*\\*ana\\*\\* \\:red\\[x\\] \\<b\\> \\(type any\\)\\."


def test_the_same_lookup_again_keeps_the_open_connection_and_a_new_one_clears_it(app_env):
    """Look up pressed to ask Pica anew closed the connection the reader had open and dropped their filters."""
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"], "state": "failed,operational"})
    second = table(at)["id"].iloc[1]
    select_row(at, 1)
    assert at.query_params["connection"] == second
    next(b for b in at.button if b.label == "Look up").click().run()  # the same lookup: Pica asked again
    assert_clean(at)
    assert (at.query_params["connection"], at.query_params["state"]) == (second, "failed,operational")
    assert at.session_state[vault_key(at)]["selection"]["rows"] == [1] and any(
        "What to do" in e.value for e in [*at.error, *at.warning, *at.info])
    next(s for s in at.selectbox if s.label == "Identity type").set_value(conn["identityType"])
    next(b for b in at.button if b.label == "Look up").click().run()  # a new lookup: nothing of it is chosen yet
    assert_clean(at)
    assert "connection" not in at.query_params and "state" not in at.query_params
    assert at.session_state[vault_key(at)]["selection"]["rows"] == []  # nothing left highlighted
    select_row(at, 0)
    assert at.query_params["connection"] == table(at)["id"].iloc[0]


def test_a_url_platform_filter_applies_only_as_the_filter_box_shows_it(app_env):
    conn = identity_with_broken_connection(app_env)
    at = open_page("connections", query={"identity": conn["identity"],
                                         "platforms": f"{conn['platform'].upper()},nonexistent"})
    assert_clean(at)
    assert at.multiselect(key="f-platform").value == [conn["platform"]]
    assert set(table(at)["key"]) == {c["key"] for c in app_env.state.connections.values()
                                     if c["identity"] == conn["identity"] and c["platform"] == conn["platform"]}
    at.query_params["platforms"] = "nonexistent"
    at.run()
    assert at.multiselect(key="f-platform").value == [] and len(table(at)) > 1  # an empty box filters nothing


def test_a_lookup_after_a_sync_shows_what_the_sync_saw_and_never_undoes_it(app_env):
    conn = seeded(app_env, state="operational")
    query = {"identity": conn["identity"], "identityType": conn["identityType"]}
    at = open_page("connections", query=query)  # cached for a minute, and stored
    assert dict(zip(table(at)["key"], table(at)["state"]))[conn["key"]] == "● operational"
    app_env.set_state(conn["id"], "failed")
    fleet = open_page("fleet")
    press_sync(fleet)
    assert_clean(fleet)
    at = open_page("connections", query=query)  # another session, within the minute
    assert_clean(at)
    assert dict(zip(table(at)["key"], table(at)["state"]))[conn["key"]] == "● failed"
    store = store_of(app_env)
    assert store.stored_connection(conn["key"]).state == "failed"
    assert [(t.from_state, t.to_state) for t in store.transitions(conn["key"])] == [
        (None, "operational"), ("operational", "failed")]


def test_the_page_is_whole_while_a_triage_runs_and_the_button_waits_for_it(app_env):
    """The triage was followed in the page's run: what lay below it (the lines it refused) and the results' place
    were drawn only when it ended, and Triage looked ready to be pressed again meanwhile."""
    app_env.fault("latency", seconds=0.4, path="/v1/vault", count=10)
    at = open_page("connections")
    at.text_area[0].set_value("\n".join([*(f"someone-{n}" for n in range(8)), "bad\x01line"]))
    next(b for b in at.button if b.label == "Triage").click().run()
    assert_clean(at)
    job = at.session_state["triage-job"]
    assert not job.done.is_set()
    assert next(b for b in at.button if b.label == "Triage").disabled
    assert any("Line 9" in w.value for w in at.warning)  # drawn beside the running triage, not after it
    assert any("the triage goes on" in c.value for c in at.caption)
    assert job.done.wait(60)
    at.run()
    assert_clean(at)
    assert not next(b for b in at.button if b.label == "Triage").disabled
    assert not [c for c in at.caption if "the triage goes on" in c.value]
    assert any(m.value.startswith("**8 identities** · ") for m in at.markdown)


def test_bulk_triage_adds_up_when_an_identity_is_asked_for_with_and_without_its_type(app_env):
    first = identity_with_broken_connection(app_env)
    at = open_page("connections")
    at.text_area[0].set_value(f"{first['identity']},{first['identityType']}\nnobody-at-all\n{first['identity']}")
    press_triage(at)
    assert_clean(at)
    frame = next(df.value for df in at.dataframe if "key" in df.value.columns and "note" in df.value.columns)
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    # One row for it, each connection once (its type: any, as asked once): the columns add up to the line above.
    assert list(summary["identity"]) == [first["identity"], "nobody-at-all"]
    assert list(summary["identity type"]) == ["any", "any"]
    assert summary["connections"].astype(int).sum() == frame["key"].astype(bool).sum() > 0
    assert any(m.value.startswith(f"**2 identities** · {summary['connections'].astype(int).sum()} connections ("
                                  f"{summary['need attention'].astype(int).sum()} need") for m in at.markdown)


def test_bulk_triage_of_a_file_says_so_once_the_file_is_gone(app_env):
    team = seeded(app_env, identityType="team")
    at = open_page("connections")
    at.file_uploader[0].set_value(("support.csv", f"identity,identityType\n{team['identity']},team\n".encode(),
                                   "text/csv")).run()
    press_triage(at)
    assert_clean(at)
    assert team["key"] in set(next(df.value for df in at.dataframe if "key" in df.value.columns)["key"])
    assert not [c for c in at.caption if "no longer loaded" in c.value]
    at.switch_page("pages/fleet.py").run()
    at.switch_page("pages/connections.py").run()  # Streamlit does not keep an uploaded file across pages
    assert_clean(at)
    said = [c.value.replace("\\", "") for c in at.caption if "no longer loaded" in c.value]
    assert said == ["What follows includes support.csv, which is no longer loaded here: upload it again before "
                    "pressing Triage to look its identities up again."]
    assert team["key"] in set(next(df.value for df in at.dataframe if "key" in df.value.columns)["key"])



def test_an_uploaded_file_with_only_its_header_is_named_as_empty(app_env):
    """It said "paste identities above or upload a CSV file" to someone who had just uploaded one."""
    at = open_page("connections")
    at.file_uploader[0].set_value(("support.csv", b"identity,identityType\n", "text/csv")).run()
    next(b for b in at.button if b.label == "Triage").click().run()
    assert_clean(at)
    assert "Nothing to triage: support.csv has no identities under its header row." in [
        i.value.replace("\\", "") for i in at.info]
    # It spoke of a header row the file lacks; Excel's empty "CSV UTF-8" is its byte order mark alone
    at.file_uploader[0].set_value(("blank.csv", b"\xef\xbb\xbf\r\n", "text/csv")).run()
    next(b for b in at.button if b.label == "Triage").click().run()
    assert "Nothing to triage: blank.csv is empty." in [i.value.replace("\\", "") for i in at.info]

def test_bulk_triage_says_where_an_identity_s_connections_are_when_it_has_none(app_env):
    team = seeded(app_env, identityType="team")
    user = seeded(app_env, identityType="user")
    at = open_page("connections")
    at.text_area[0].set_value(f"{team['identity']},user\n{user['identity'].upper()}\nnobody-at-all")
    before = app_env.count()
    press_triage(at)
    assert_clean(at)
    # Asked again only for those with none: without the type (the first), in lower case (the second), neither
    # of them helping the third (all lower case, no type).
    assert app_env.count() - before == 3 + 1 + 1
    notes = {r["identity"]: r["note"] for _, r in
             next(df.value for df in at.dataframe if "need attention" in df.value.columns).iterrows()}
    assert re.fullmatch(r"no connections — This identity has connections under another identity type: \d+ as type "
                        r"team\.", notes[team["identity"]]), notes
    assert notes[user["identity"].upper()].startswith(
        f"no connections — Pica matches identities exactly, letter case included: {user['identity']} has ")
    assert notes["nobody-at-all"] == "no connections"
    rows = next(df.value for df in at.dataframe if "key" in df.value.columns and "note" in df.value.columns)
    assert "another identity type" in rows[rows["identity"] == team["identity"]]["note"].iloc[0]


def test_bulk_triage_keeps_pica_s_answer_when_only_the_hint_s_lookup_fails(app_env):
    app_env.fault("status", status=400, count=50, path="/v1/vault/connections", query="identity=nobody-mixed-case")
    at = open_page("connections")
    at.text_area[0].set_value("Nobody-Mixed-Case")
    press_triage(at)
    assert_clean(at)
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    assert list(summary["note"]) == ["no connections"]
    assert not [w for w in at.warning if "could not be looked up" in w.value]
    hinted = [r for r in app_env.requests() if r["query"].startswith("identity=nobody-mixed-case")]
    assert len(hinted) == 1  # the hint was asked for (and the fault answered it 400)


def test_bulk_triage_says_when_there_is_nothing_to_do_and_when_pica_refused(app_env):
    at = open_page("connections")
    press_triage(at)
    assert_clean(at)
    assert "Nothing to triage: paste identities above or upload a CSV file." in [i.value for i in at.info]
    team = seeded(app_env, identityType="team")
    at.text_area[0].set_value(f"{team['identity']},team")
    press_triage(at)
    assert any(m.value.startswith("**1 identity** · ") for m in at.markdown)
    app_env.fault("rate_limit", count=100, path="/v1/vault", seconds=40)
    at.text_area[0].set_value("\n".join(f"someone-{n}" for n in range(40)))
    before = app_env.count()
    press_triage(at)
    assert_clean(at)
    # The limit is every user's: once Pica says so, the identities not asked yet are not asked.
    assert app_env.count() - before <= 4  # the first ones, asked side by side
    assert any(m.value.startswith("**40 identities** · ") and "40 failed to load" in m.value for m in at.markdown)
    banner = [w.value.replace("\\", "") for w in at.warning if "could not be looked up" in w.value]
    assert banner and banner[0].startswith("40 identities could not be looked up. Pica said: 429")
    assert re.search(r"\(\d identit(y|ies)\); 3\d were not asked after that\.$", banner[0]), banner[0]
    assert re.search(r"retry after \d\d:\d\d:\d\d UTC", banner[0])  # a clock time: the results stay on screen
    notes = next(df.value for df in at.dataframe if "need attention" in df.value.columns)["note"]
    assert sum(n.startswith("not looked up — Pica's rate limit was reached") for n in notes) >= 36
    again = next(b for b in at.button if b.label.startswith("Look up the 40 identities that failed again"))
    assert re.search(r"\(after \d\d:\d\d:\d\d UTC\)$", again.label)  # when the limit lifts: sooner meets it again
    app_env.control("DELETE", "faults")  # the limit has passed: only those are asked again, and the table fills in
    app_env.fault("latency", seconds=0.3, path="/v1/vault", count=40)
    before = app_env.count()
    again.click().run()
    # One triage at a time: a second click on it started a second run and orphaned the first.
    assert not at.session_state["triage-job"].done.is_set()
    assert next(b for b in at.button if b.key == "triage-again").disabled
    assert at.session_state["triage-job"].done.wait(60)
    at.run()
    assert_clean(at)
    assert app_env.count() - before == 40  # once each (no type, lower case: no hint to ask for)
    summary = next(df.value for df in at.dataframe if "need attention" in df.value.columns)
    assert len(summary) == 40 and set(summary["note"]) == {"no connections"}


def test_a_link_with_a_connection_id_alone_says_what_it_lacks(app_env):
    at = open_page("connections", query={"connection": "c-123"})
    assert_clean(at)
    assert any("names connection c-123 and nothing to find it by" in w.value.replace("\\", "") for w in at.warning)


def test_a_link_to_a_connection_that_is_not_there_says_so(app_env):
    conn = seeded(app_env, state="operational")
    at = open_page("connections", query={"identity": conn["identity"], "connection": "doesnotexist"})
    assert_clean(at)
    assert ("The link's connection doesnotexist is not among these: deleted, or of another identity or environment."
            in [w.value.replace("\\", "") for w in at.warning])
    at = open_page("connections", query={"identity": conn["identity"], "connection": conn["id"]})
    assert not [w for w in at.warning if "link's connection" in w.value]


def test_a_platform_that_is_not_in_the_catalog_says_so(app_env):
    at = open_page("connections", query={"platform": "nonexistent"})
    assert_clean(at)
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any(c.startswith("nonexistent is not a platform id of the catalog") for c in captions), captions
    at = open_page("connections", query={"platform": "gmail", "identity": "nobody-here"})
    assert not [c for c in at.caption if "not a platform id" in c.value]


def test_a_lookup_pica_refuses_later_shows_the_last_answer_with_its_age_and_what_to_do(app_env):
    import streamlit as st

    conn = seeded(app_env, state="operational")
    at = open_page("connections", query={"identity": conn["identity"]})
    st.cache_data.clear()  # the cached answer expired
    app_env.fault("rate_limit", count=100, path="/v1/vault", seconds=40)
    at.run()
    assert_clean(at)
    warning = next(w.value.replace("\\", "") for w in at.warning if "Pica could not give" in w.value)
    assert re.fullmatch(r"Pica could not give this lookup's connections just now, so this is what it answered "
                        r"\*\*\d+ s ago\*\*\.", warning), warning
    assert any(c.value.startswith("429 ") and "retry in 40 s" in c.value for c in at.caption)
    assert conn["key"] in set(table(at)["key"])


def test_coming_back_by_the_sidebar_finds_the_last_lookup_and_the_pasted_identities(app_env):
    conn = seeded(app_env, state="operational")
    at = open_page("connections", query={"identity": conn["identity"]})
    next(t for t in at.text_area if t.label == "Identities").set_value("someone\nsomeone-else").run()
    at.switch_page("pages/fleet.py")
    at.query_params.clear()  # the sidebar's link has no query
    at.run()
    at.switch_page("pages/connections.py")
    at.run()
    assert_clean(at)
    assert at.query_params["identity"] == conn["identity"] and conn["key"] in set(table(at)["key"])
    assert next(t for t in at.text_area if t.label == "Identities").value == "someone\nsomeone-else"
    at.text_input[0].set_value("")
    at.button[0].click().run()  # an empty Look up clears it, and it stays cleared
    at.switch_page("pages/fleet.py")
    at.query_params.clear()
    at.run()
    at.switch_page("pages/connections.py")
    at.run()
    assert "identity" not in at.query_params and not at.dataframe


def test_pasted_identities_are_still_there_after_a_look_at_another_page(app_env):
    at = open_page("connections")
    at.text_area(key="bulk-text").set_value("usr_1,user\nteam-2,team").run()
    for page in ("fleet", "connections"):  # the sidebar's links
        at.switch_page(f"pages/{page}.py")
        at.query_params.clear()
        at.run()
    assert_clean(at)
    assert at.text_area(key="bulk-text").value == "usr_1,user\nteam-2,team"
