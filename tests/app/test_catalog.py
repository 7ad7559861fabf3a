"""The Catalog page in AppTest against the test sandbox: the whole catalog, search/filters/sorting, the URL,
CSV export, a connector's detail, request counts, the last-good fallback and API text shown as text."""

from __future__ import annotations

import io
import json
import math
import re

import httpx
import pandas as pd
import pytest
import streamlit as st

from pica_core import catalog_view as cv
from pica_core.caching import last_good
from pica_core.config import SANDBOX_TEST_KEY
from pica_core.ui import catalog_ui as ui
from tests.app.conftest import assert_clean, open_page

SANDBOX_CONNECTORS = 294
FLEET_CONNECTIONS = 720  # what the sandbox's seed syncs into the store (the overview's first run does it)


def sandbox_catalog(sandbox, **params) -> list[dict]:
    """The sandbox's catalog asked for directly (one page, the sandbox accepts up to 1000): the test's truth."""
    response = httpx.get(f"{sandbox.url}/v1/available-connectors", params={"limit": 1000, **params},
                         headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10)
    response.raise_for_status()
    return response.json()["rows"]


@pytest.fixture
def truth(app_env):
    rows = sandbox_catalog(app_env)
    enabled = {r["platform"] for r in sandbox_catalog(app_env, authkit="true")}
    return {r["platform"]: {**r, "authkit_enabled": r["platform"] in enabled} for r in rows}


def table(at) -> pd.DataFrame:
    tables = [d for d in at.dataframe if (d.key or "").startswith("catalog.table.")]
    assert len(tables) == 1, [d.key for d in at.dataframe]
    return tables[0].value


def table_key(at) -> str:
    return next(d.key for d in at.dataframe if (d.key or "").startswith("catalog.table."))


def showing(at) -> tuple[int, int]:
    for m in at.markdown:
        found = re.match(r"Showing \*\*(\d+)\*\* of \*\*(\d+)\*\* connectors", m.value)
        if found:
            return int(found[1]), int(found[2])
    raise AssertionError("no 'Showing N of M' line")


def expect(truth: dict, keep) -> set[str]:
    return {p for p, row in truth.items() if keep(row)}


# --- the whole catalog -------------------------------------------------------------------------------------
def test_the_page_renders_the_sandbox_catalog_with_usage_and_coverage(app_env, truth):
    at = open_page("catalog")
    assert_clean(at)
    rows = table(at)
    assert len(truth) == SANDBOX_CONNECTORS and len(rows) == SANDBOX_CONNECTORS
    assert showing(at) == (SANDBOX_CONNECTORS, SANDBOX_CONNECTORS)
    assert tuple(rows.columns) == cv.COLUMNS
    assert set(rows["platform"]) == set(truth)
    by_platform = rows.set_index("platform")
    for platform, row in truth.items():
        shown = by_platform.loc[platform]
        assert (shown["name"], shown["status"], bool(shown["oauth"]), shown["actions"]) == \
            (row["name"], row["status"], row["oauth"], row["tools"])
        assert bool(shown["authkit"]) == row["authkit_enabled"]
        assert shown["logo"].endswith(f"/logos/{platform}.svg")
    # usage comes from the stored fleet (the overview synced it on the first run)
    assert rows["connections"].sum() == FLEET_CONNECTIONS
    assert rows["name"].tolist() == sorted(rows["name"], key=str.casefold)  # default order: by name
    metrics = {m.label: m.value for m in at.metric}
    enabled = sum(r["authkit_enabled"] for r in truth.values())
    assert metrics["Connectors"] == str(SANDBOX_CONNECTORS) and metrics["AuthKit-enabled"] == str(enabled)
    assert int(metrics["In use"]) + int(metrics["Without connections"]) == SANDBOX_CONNECTORS
    assert any("Coverage of the whole catalog" in c.value for c in at.caption)
    assert at.query_params == {}  # the unfiltered view keeps a clean URL


def test_before_any_fleet_sync_usage_is_unknown_not_zero(app_env, monkeypatch, downloads):
    """Every connector showed 0 connections, "In use 0" and "Without connections 294", and the CSV said 0 for each,
    as facts, with an unlinked hint to sync (live mode syncs only when asked)."""
    monkeypatch.setenv("PICA_SECRET_KEY", "sk_test_sandbox")
    monkeypatch.setenv("PICA_API_URL", app_env.url)
    at = open_page("catalog", query={"selected": "gmail"})
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["In use"] == "—" and metrics["Without connections"] == "—"
    assert json.loads(at.dataframe[0].proto.columns)["connections"]["hidden"] is True
    assert any(str(link.proto.label) == "Sync the fleet on Fleet health" for link in at.get("page_link"))
    assert any("no fleet sync yet" in m.value for m in at.markdown), [m.value for m in at.markdown][-12:]
    [(data, _, _)] = [d for d in downloads if d[1] == "text/csv"]
    assert set(pd.read_csv(io.BytesIO(data), keep_default_na=False)["connections"]) == {""}


# --- search, filters, sorting ------------------------------------------------------------------------------
def test_search_narrows_to_rows_matching_name_platform_or_description(app_env, truth):
    at = open_page("catalog")
    at.text_input(key=ui.K_QUERY).input("google sheets").run()
    assert_clean(at)

    def matches(row):
        text = f"{row['name']}\n{row['platform']}\n{row['description']}".casefold()
        return "google" in text and "sheets" in text

    assert set(table(at)["platform"]) == expect(truth, matches) and "google-sheets" in set(table(at)["platform"])
    assert showing(at) == (len(expect(truth, matches)), SANDBOX_CONNECTORS)
    assert at.query_params["q"] == "google sheets"

    at.text_input(key=ui.K_QUERY).input("no such connector anywhere").run()
    assert showing(at) == (0, SANDBOX_CONNECTORS)  # and a message instead of an empty grid (below)


@pytest.mark.parametrize("widget, key, value, param, keep", [
    ("multiselect", ui.K_CATEGORY, ["CRM", "AI"], {"category": ["CRM", "AI"]},
     lambda r: r["category"] in ("CRM", "AI")),
    ("pills", ui.K_STATUS, ["beta"], {"status": "beta"}, lambda r: r["status"] == "beta"),
    ("pills", ui.K_STATUS, ["alpha", "not_available"], {"status": ["alpha", "not_available"]},
     lambda r: r["status"] in ("alpha", "not_available")),
    ("segmented_control", ui.K_AUTHKIT, "yes", {"authkit": "yes"}, lambda r: r["authkit_enabled"]),
    ("segmented_control", ui.K_AUTHKIT, "no", {"authkit": "no"}, lambda r: not r["authkit_enabled"]),
    ("segmented_control", ui.K_OAUTH, "yes", {"oauth": "yes"}, lambda r: r["oauth"]),
    ("segmented_control", ui.K_OAUTH, "no", {"oauth": "no"}, lambda r: not r["oauth"]),
])
def test_each_filter_narrows_the_table_to_the_right_rows(app_env, truth, widget, key, value, param, keep):
    at = open_page("catalog")
    getattr(at, widget)(key=key).set_value(value).run()
    assert_clean(at)
    wanted = expect(truth, keep)
    assert 0 < len(wanted) < SANDBOX_CONNECTORS
    assert set(table(at)["platform"]) == wanted and len(table(at)) == len(wanted)
    assert showing(at) == (len(wanted), SANDBOX_CONNECTORS)
    assert at.query_params == param
    assert any(f"Coverage of the {len(wanted)} connectors shown" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Connectors"] == str(len(wanted))


def test_filters_combine_and_sorting_orders_the_rows(app_env, truth):
    at = open_page("catalog")
    at.segmented_control(key=ui.K_AUTHKIT).set_value("yes")
    at.segmented_control(key=ui.K_OAUTH).set_value("yes")
    at.selectbox(key=ui.K_SORT).set_value("-actions").run()
    assert_clean(at)
    rows = table(at)
    assert set(rows["platform"]) == expect(truth, lambda r: r["authkit_enabled"] and r["oauth"])
    actions = rows["actions"].tolist()
    assert actions == sorted(actions, reverse=True) and actions[0] > 0
    at.selectbox(key=ui.K_SORT).set_value("-connections").run()
    connections = table(at)["connections"].tolist()
    assert connections == sorted(connections, reverse=True) and connections[0] > 0


# --- the URL -----------------------------------------------------------------------------------------------
def test_the_query_string_round_trips(app_env, truth):
    at = open_page("catalog")
    at.text_input(key=ui.K_QUERY).input("mail")
    at.multiselect(key=ui.K_CATEGORY).set_value(["Email", "Data & Reference"])
    at.pills(key=ui.K_STATUS).set_value(["generally_available"])
    at.segmented_control(key=ui.K_OAUTH).set_value("no")
    at.selectbox(key=ui.K_SORT).set_value("-actions").run()
    assert_clean(at)
    shared = dict(at.query_params)
    assert shared == {"q": "mail", "category": ["Email", "Data & Reference"], "status": "generally_available",
                      "oauth": "no", "sort": "-actions"}
    first = table(at)

    # the same URL in a new session (a shared link) shows the same widgets and the same rows
    other = open_page("catalog", query=shared)
    assert_clean(other)
    assert other.text_input(key=ui.K_QUERY).value == "mail"
    assert other.multiselect(key=ui.K_CATEGORY).value == ["Email", "Data & Reference"]
    assert other.pills(key=ui.K_STATUS).value == ["generally_available"]
    assert other.segmented_control(key=ui.K_OAUTH).value == "no" and other.segmented_control(key=ui.K_AUTHKIT).value is None
    assert other.selectbox(key=ui.K_SORT).value == "-actions"
    pd.testing.assert_frame_equal(table(other), first)
    assert dict(other.query_params) == shared

    # clearing the filters cleans the URL again
    other.text_input(key=ui.K_QUERY).input("")
    other.multiselect(key=ui.K_CATEGORY).set_value([])
    other.pills(key=ui.K_STATUS).set_value([])
    other.segmented_control(key=ui.K_OAUTH).set_value(None)
    other.selectbox(key=ui.K_SORT).set_value("name").run()
    assert other.query_params == {} and len(table(other)) == SANDBOX_CONNECTORS


def test_a_link_with_values_the_catalog_lacks_keeps_the_rest_and_says_so(app_env, truth):
    at = open_page("catalog", query={"category": ["CRM", "Nope"], "authkit": "maybe", "sort": "bogus"})
    assert_clean(at)
    assert set(table(at)["platform"]) == expect(truth, lambda r: r["category"] == "CRM")
    assert any("Nope" in c.value and "ignored" in c.value for c in at.warning)
    assert at.query_params == {"category": "CRM"}


# --- CSV ---------------------------------------------------------------------------------------------------
@pytest.fixture
def downloads(monkeypatch) -> list[tuple[bytes, str, str | None]]:
    """Files handed to the browser (download buttons), as the media storage receives them."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    captured: list[tuple[bytes, str, str | None]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        captured.append((path_or_data, mimetype, filename))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return captured


def test_csv_export_is_the_filtered_table(app_env, downloads):
    at = open_page("catalog")
    at.multiselect(key=ui.K_CATEGORY).set_value(["CRM", "Email"])
    at.selectbox(key=ui.K_SORT).set_value("-connections")
    downloads.clear()
    at.run()
    assert_clean(at)
    csvs = [(data, name) for data, mime, name in downloads if mime == "text/csv"]
    assert len(csvs) == 1 and csvs[0][1] == "pica-connectors.csv" and csvs[0][0].startswith(b"\xef\xbb\xbf")
    exported = pd.read_csv(io.BytesIO(csvs[0][0]), keep_default_na=False)
    shown = table(at).drop(columns=["logo"])
    assert len(exported) == len(shown) and list(exported.columns) == list(shown.columns)
    for column in shown.columns:
        assert exported[column].tolist() == shown[column].tolist(), column


# --- a connector's detail ----------------------------------------------------------------------------------
def test_selecting_a_row_opens_the_detail_with_actions_and_links(app_env, truth):
    at = open_page("catalog", query={"q": "gmail"})
    rows = table(at)
    position = rows["platform"].tolist().index("gmail")
    at.session_state[table_key(at)] = {"selection": {"rows": [position], "columns": []}}
    at.run()
    assert_clean(at)
    assert at.query_params == {"q": "gmail", "selected": "gmail"}
    assert [s.value for s in at.subheader][0] == "Gmail"
    assert any(truth["gmail"]["description"].split()[-1] in m.value for m in at.markdown)
    facts = [m.value for m in at.markdown]
    assert "**api\\:\\:gmail\\:\\:v1**" in facts  # the key, escaped as text
    links = {link.proto.page: link.proto.query_string for link in at.page_link if link.proto.page}
    assert links["connect"] == "connector=Gmail" and links["console"] == "platform=gmail"
    assert not any(link.proto.disabled for link in at.page_link)  # Gmail is enabled for AuthKit
    actions = [d.value for d in at.dataframe if d.key is None or not d.key.startswith("catalog.table.")][0]
    assert {"title", "method", "path"} <= set(actions.columns) and len(actions) > 5
    listed = httpx.get(f"{app_env.url}/v1/available-actions/search/gmail", params={"limit": 100},
                       headers={"x-pica-secret": SANDBOX_TEST_KEY}, timeout=10).json()
    assert sorted(zip(actions["id"], actions["title"], actions["method"], actions["path"])) == \
        sorted((a["systemId"], a["title"], a["method"], a["path"]) for a in listed)

    # the actions are searchable
    at.text_input(key="catalog.actions.gmail").input("label").run()
    found = [d.value for d in at.dataframe if d.key is None or not d.key.startswith("catalog.table.")][0]
    assert 0 < len(found) < len(actions)
    assert all("label" in f"{t} {m} {p}".casefold() for t, m, p in zip(found["title"], found["method"], found["path"]))

    # deselecting the row closes the detail and takes it out of the URL
    at.session_state[table_key(at)] = {"selection": {"rows": [], "columns": []}}
    at.run()
    assert at.query_params == {"q": "gmail"} and "Gmail" not in [s.value for s in at.subheader]


def test_a_shared_link_opens_a_connector_and_filtering_it_away_keeps_it_open(app_env):
    at = open_page("catalog", query={"selected": "slack"})
    assert_clean(at)
    assert "Slack" in [s.value for s in at.subheader]
    at.multiselect(key=ui.K_CATEGORY).set_value(["CRM"]).run()  # Slack is not a CRM
    assert "Slack" in [s.value for s in at.subheader]
    assert at.query_params == {"category": "CRM", "selected": "slack"}


def test_a_view_with_no_match_says_so_and_clears_in_one_click(app_env):
    at = open_page("catalog", query={"selected": "slack"})
    at.text_input(key=ui.K_QUERY).input("no such connector anywhere").run()
    at.segmented_control(key=ui.K_OAUTH).set_value("yes").run()
    assert_clean(at)
    assert showing(at)[0] == 0 and "No connector matches the search and filters." in [i.value for i in at.info]
    assert "No connector matches the filters, so there is nothing to count." in [c.value for c in at.caption]
    assert next(b for b in at.get("download_button") if b.proto.label == "CSV").proto.disabled
    assert "Slack" in [s.value for s in at.subheader]  # the open detail stays open
    next(b for b in at.button if b.label == "Clear the search and filters").click().run()
    assert_clean(at)
    assert showing(at) == (SANDBOX_CONNECTORS, SANDBOX_CONNECTORS) and at.query_params == {"selected": "slack"}


def test_connecting_waits_for_authkit(app_env, truth):
    platform = next(p for p, r in sorted(truth.items()) if not r["authkit_enabled"])
    at = open_page("catalog", query={"selected": platform})
    assert_clean(at)
    connect = next(link for link in at.page_link if link.proto.page == "connect")
    console = next(link for link in at.page_link if link.proto.page == "console")
    assert connect.proto.disabled and "Not enabled for AuthKit" in connect.proto.help
    assert not console.proto.disabled and console.proto.query_string == f"platform={platform}"


def test_a_connector_without_actions_says_so(app_env, truth):
    platform = next(p for p, r in sorted(truth.items()) if r["tools"] == 0)
    at = open_page("catalog", query={"selected": platform})
    assert_clean(at)
    assert any("lists no actions" in c.value for c in at.caption)


def test_an_unknown_selected_platform_is_a_note(app_env):
    at = open_page("catalog", query={"selected": "no-such-platform"})
    assert_clean(at)
    assert any("No connector with the platform id" in c.value for c in at.caption)


# --- request counts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("page_size", [None, 100])
def test_a_cold_load_pages_the_catalog_and_a_warm_rerun_calls_nothing(app_env, monkeypatch, page_size):
    if page_size:
        monkeypatch.setenv("PICA_PAGE_SIZE", str(page_size))
    sandbox = app_env
    limit = page_size or 300  # the client's default page size: one page holds the sandbox's 294 connectors
    enabled = len(sandbox_catalog(sandbox, authkit="true"))
    # open_page runs the overview first (it syncs the fleet and loads the catalog), then this page with the
    # catalog already cached: so empty the caches (st.cache_data and the last-good memory, as a new process
    # would have them) and count from here. Open a connector too, so the warm rerun covers its actions.
    at = open_page("catalog", query={"selected": "gmail"})
    st.cache_data.clear()
    last_good.clear()
    before_catalog, before_all = sandbox.count("available-connectors"), sandbox.count()
    at.run()
    assert_clean(at)
    assert len(table(at)) == SANDBOX_CONNECTORS
    # the whole catalog in ceil(total/limit) pages, plus the AuthKit-enabled list in ceil(enabled/limit)
    expected = math.ceil(SANDBOX_CONNECTORS / limit) + math.ceil(enabled / limit)
    assert sandbox.count("available-connectors") - before_catalog == expected
    catalog_requests = [r for r in sandbox.requests(limit=200) if r["route"] == "available-connectors"][-expected:]
    assert all(f"limit={limit}" in r["query"] for r in catalog_requests)
    assert sandbox.count() - before_all == expected + 1  # and one search for gmail's actions

    # warm: a rerun, a filter change and a search make no upstream call at all
    warm = sandbox.count()
    at.run()
    at.segmented_control(key=ui.K_AUTHKIT).set_value("yes").run()
    at.text_input(key=ui.K_QUERY).input("mail").run()
    assert_clean(at)
    assert sandbox.count() == warm


def test_refresh_fetches_the_catalog_again(app_env):
    sandbox = app_env
    at = open_page("catalog")
    before = sandbox.count("available-connectors")
    next(b for b in at.button if b.label == "Refresh").click().run()
    assert_clean(at)
    assert sandbox.count("available-connectors") - before == 2  # catalog + AuthKit list, one page each
    assert len(table(at)) == SANDBOX_CONNECTORS


# --- Pica unreachable --------------------------------------------------------------------------------------
def fail_the_catalog(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("PICA_MAX_RETRIES", "0")
    monkeypatch.setenv("PICA_RETRY_DEADLINE_SECONDS", "1")
    sandbox.fault("status", status=503, count=50, path="/v1/available-connectors")


def test_when_pica_fails_after_a_good_load_the_last_catalog_is_shown_with_its_age(app_env, monkeypatch):
    sandbox = app_env
    at = open_page("catalog", query={"authkit": "yes"})
    good = table(at)
    fail_the_catalog(sandbox, monkeypatch)
    st.cache_data.clear()  # the TTL ran out; the last-good memory stays
    at.run()
    assert_clean(at)
    warning = " ".join(w.value for w in at.warning)
    assert re.search(r"Pica could not give the catalog just now, so this is what it answered \*\*\d+ s ago\*\*\. "
                     "Press Refresh to try again.", warning), warning
    assert any("503" in c.value for c in at.caption)
    pd.testing.assert_frame_equal(table(at), good)
    assert showing(at) == (len(good), SANDBOX_CONNECTORS)


def test_a_failed_catalog_read_is_not_asked_again_by_every_run_until_refresh(app_env, monkeypatch):
    """A failed read is not cached: every run of every page showing names asked again (a hang: 16 s each click)."""
    sandbox = app_env
    fail_the_catalog(sandbox, monkeypatch)
    at = open_page("catalog")
    asked = sandbox.count("available-connectors")
    assert asked >= 1 and any("503" in e.value for e in at.error)
    at.run()
    for page in ("overview", "fleet", "connections"):
        assert_clean(open_page(page))
    assert sandbox.count("available-connectors") == asked  # the failure held: nothing asked again
    sandbox.control("DELETE", "faults")
    next(b for b in at.button if b.label == "Refresh").click().run()  # the reader asks: at once
    assert_clean(at)
    assert sandbox.count("available-connectors") > asked and len(table(at)) == SANDBOX_CONNECTORS


def test_when_pica_fails_and_nothing_was_loaded_the_page_says_so(app_env, monkeypatch):
    sandbox = app_env
    fail_the_catalog(sandbox, monkeypatch)
    at = open_page("catalog")
    assert_clean(at)
    assert any("Could not read the catalog from Pica" in e.value and "503" in e.value for e in at.error)
    assert not [d for d in at.dataframe if (d.key or "").startswith("catalog.table.")]


# --- API text is text --------------------------------------------------------------------------------------
HOSTILE_NAME = '<img src=x onerror="alert(1)"> **Evil** :red[Corp]'
HOSTILE_DESCRIPTION = "<script>alert('x')</script> [click](javascript:alert(1)) $x^2$ :material/warning:"


def test_connector_text_from_the_api_is_rendered_as_text_never_html(app_env, monkeypatch):
    from pica_core.client import _Endpoints
    from pica_core.models import Connector

    original = _Endpoints.connectors
    hostile = Connector(name=HOSTILE_NAME, platform="evil-corp", description=HOSTILE_DESCRIPTION,
                        category="<b>Bold</b>", key="api::evil::v1", version="<i>1</i>")

    def connectors(self, **kwargs):
        return [*original(self, **kwargs), hostile]

    monkeypatch.setattr(_Endpoints, "connectors", connectors)
    at = open_page("catalog", query={"selected": "evil-corp"})
    assert_clean(at)

    # in the table, the text is data (cells are drawn as text)
    row = table(at).set_index("platform").loc["evil-corp"]
    assert row["name"] == HOSTILE_NAME and row["description"] == HOSTILE_DESCRIPTION

    # nothing on the page may render HTML, and every Markdown string carrying the text has it escaped
    assert not at.get("html")
    texts = []
    for kind in ("markdown", "caption", "subheader", "title", "header", "warning", "error", "info", "success"):
        for element in at.get(kind):
            assert not getattr(element.proto, "allow_html", False), (kind, element.value)
            texts.append(element.value)
    texts += [link.proto.label for link in at.page_link]
    carrying = [t for t in texts if "onerror" in t or "alert" in t or "Bold" in t]
    assert carrying, "the detail should show the hostile connector's name and description"
    for text in carrying:
        unescaped = re.sub(r"\\.", "", text)
        assert not re.search(r"[<>\[\]*`$]|:red|:material", unescaped), text
    assert cv.plain(HOSTILE_NAME) in [s.value for s in at.subheader]


# --- coming back -------------------------------------------------------------------------------------------
def sidebar_to(at, page: str):
    """What the sidebar's link does: another page, with no query."""
    at.switch_page(f"pages/{page}.py")
    at.query_params.clear()
    return at.run()


def test_coming_back_by_the_sidebar_finds_the_last_view_and_a_cleared_one_stays_cleared(app_env):
    at = open_page("catalog", query={"authkit": "yes", "sort": "-connections"})
    filtered = len(table(at))
    assert 0 < filtered < SANDBOX_CONNECTORS
    sidebar_to(sidebar_to(at, "fleet"), "catalog")
    assert_clean(at)
    assert at.query_params == {"authkit": "yes", "sort": "-connections"} and len(table(at)) == filtered
    at.segmented_control(key=ui.K_AUTHKIT).set_value(None).run()
    at.selectbox(key=ui.K_SORT).set_value(cv.DEFAULT_SORT).run()
    assert at.query_params == {}
    sidebar_to(sidebar_to(at, "fleet"), "catalog")
    assert at.query_params == {} and len(table(at)) == SANDBOX_CONNECTORS


def test_a_link_with_values_the_catalog_cannot_read_says_what_it_ignored(app_env):
    at = open_page("catalog", query={"category": "Nope", "authkit": "maybe", "oauth": "2", "sort": "-hax"})
    assert_clean(at)
    [note] = [c.value for c in at.warning if "The link asked for" in c.value]
    for ignored in ("Nope", "authkit=maybe", "oauth=2", "sort=-hax"):
        assert ignored in note.replace("\\", "")
    assert len(table(at)) == SANDBOX_CONNECTORS
