"""The Audit log page: its filters are in the URL and kept across pages; past its newest 1,000 it says so."""

from __future__ import annotations

import os
from datetime import date

from pica_core.store import Store
from tests.app.conftest import assert_clean, open_page


def audited(*events: tuple[str, str, str]) -> None:
    store = Store.from_url(os.environ["DATABASE_URL"])
    for action, target, outcome in events:
        store.audit(actor="zoë@acme.io", action=action, target=target, outcome=outcome)
    store.engine.dispose()


def shown(at) -> list[tuple[str, str]]:
    log = at.dataframe[0].value
    return list(zip(log["action"], log["target"]))


def test_the_filters_are_in_the_url_and_kept_across_pages(app_env):
    """Every filter went back to its default on a visit to another page, and a filtered view had no link."""
    audited(("delete", "test::gmail::a", "ok"), ("edit_tags", "test::slack::b", "error"))
    at = open_page("audit")
    at.selectbox(key="audit-action").set_value("delete").run()
    at.text_input(key="audit-target").set_value("gmail").run()
    assert_clean(at)
    assert shown(at) == [("delete", "test::gmail::a")]
    assert {k: at.query_params[k] for k in at.query_params} == {"action": "delete", "target": "gmail"}
    at.switch_page("pages/catalog.py").run()
    at.query_params.clear()
    at.switch_page("pages/audit.py").run()  # the sidebar's link: no query
    assert_clean(at)
    assert at.selectbox(key="audit-action").value == "delete" and shown(at) == [("delete", "test::gmail::a")]
    assert {k: at.query_params[k] for k in at.query_params} == {"action": "delete", "target": "gmail"}


def test_back_to_an_earlier_filter_of_the_page_shows_it(app_env):
    """The browser's Back between the page's own entries: the page wrote its current filters over the URL."""
    audited(("delete", "test::gmail::a", "ok"), ("connect", "test::slack::b", "ok"))
    at = open_page("audit")
    at.selectbox(key="audit-action").set_value("delete").run()
    at.query_params.clear()
    at.query_params["action"] = "connect"  # Back: the entry before, with its query
    at.run()
    assert_clean(at)
    assert at.selectbox(key="audit-action").value == "connect" and shown(at) == [("connect", "test::slack::b")]


def test_a_shared_link_opens_its_filters_and_names_what_it_ignored(app_env):
    audited(("delete", "test::gmail::a", "ok"), ("edit_tags", "test::slack::b", "error"))
    at = open_page("audit", query={"outcome": "error", "since": "yesterday", "action": "drop-table"})
    assert_clean(at)
    assert shown(at) == [("edit_tags", "test::slack::b")]
    assert at.date_input(key="audit-since").value is None
    [warning] = [w.value.replace("\\", "") for w in at.warning]
    assert warning == "Ignored what this log does not know: action=drop-table, since=yesterday."
    at = open_page("audit", query={"since": date.today().isoformat(), "who": "ZOË"})
    assert len(shown(at)) == 2


def test_past_its_newest_thousand_the_page_says_the_csv_holds_every_match(app_env):
    """It showed "1,000 events (the newest 1,000)" and the CSV held those 1,000 alone, without a word."""
    audited(*[("settings", f"change {n}", "ok") for n in range(1003)])
    at = open_page("audit")
    assert_clean(at)
    assert len(at.dataframe[0].value) == 1000
    assert any("newest 1,000 events of more; the CSV holds every one that matches" in c.value for c in at.caption)
    assert any(b.label == "Download CSV (every match)" for b in at.get("download_button"))
    store = Store.from_url(os.environ["DATABASE_URL"])
    assert len(store.audit_events(action="settings", limit=None)) == 1003
    store.engine.dispose()


def test_an_empty_log_says_what_will_show_there(app_env):
    at = open_page("audit")
    assert "Nothing audited yet: writes made through the dashboard show here." in [i.value for i in at.info]


def test_a_misspelt_filter_is_named_and_taken_out_of_the_address(app_env):
    """?actor= for ?who= showed every event, with no word that the link meant fewer."""
    audited(("delete", "test::gmail::a", "ok"), ("edit_tags", "test::slack::b", "error"))
    at = open_page("audit", query={"actor": "zoë@acme.io", "outcome": "error"})
    assert_clean(at)
    assert shown(at) == [("edit_tags", "test::slack::b")]  # what it could read, it did
    [warning] = [w.value.replace("\\", "") for w in at.warning]
    assert warning == "Ignored actor=zoë@acme.io: this page's links take who, action, outcome, since, target."
    assert {k: at.query_params[k] for k in at.query_params} == {"outcome": "error"}
    at.run()
    assert not at.warning  # said once: the address no longer holds it


def test_a_link_with_a_misspelt_filter_and_an_unknown_value_gets_one_line_for_both(app_env):
    """It got two warnings, one from each check, for one link."""
    at = open_page("audit", query={"actor": "zoë@acme.io", "action": "drop-table"})
    assert_clean(at)
    [warning] = [w.value.replace("\\", "") for w in at.warning]
    assert warning == ("Ignored actor=zoë@acme.io: this page's links take who, action, outcome, since, target; and "
                       "action=drop-table, which this log does not know.")
