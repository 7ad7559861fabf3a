"""Fleet health page (AppTest): sync with transitions, attention oldest first, last-24h changes, export."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, time
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import update

from pica_core.store import Store, UserConnection
from tests.app.conftest import assert_clean, open_page, press_sync


def click(at, label: str):
    if label in ("Sync now", "Resume"):
        press_sync(at, label)
    else:
        next(b for b in at.button if b.label == label).click().run()
    assert_clean(at)
    return at


def test_fleet_overview_after_the_first_sync(app_env):
    at = open_page("fleet")
    assert_clean(at)
    states = {c["state"] for c in app_env.state.connections.values() if c["environment"] == "test"}
    metrics = {m.label.split("] ")[-1]: int(m.value.replace(",", "")) for m in at.metric}
    expected = {s: sum(1 for c in app_env.state.connections.values() if c["environment"] == "test" and c["state"] == s)
                for s in states}
    assert metrics == expected
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    assert len(attention) == expected["failed"] + expected["degraded"]
    # In sandbox mode the scheduled command is told where this sandbox answers.
    assert any(f"PICA_API_URL={app_env.url}" in c.value for c in at.caption)


def test_sync_records_changes_and_lists_them(app_env):
    at = open_page("fleet")
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test" and c["state"] == "operational")
    app_env.set_state(conn["id"], "degraded")
    click(at, "Sync now")
    assert any("(0 new, 1 state change)" in s.value for s in at.success)
    changes = next(df.value for df in at.dataframe if "change" in df.value.columns)
    assert list(changes["key"]) == [conn["key"]] and list(changes["change"]) == ["operational → degraded"]
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    assert list(attention.columns[:2]) == ["open", "state"]  # the link in sight
    ages = dict(zip(attention["key"], attention["for"]))
    assert not ages.pop(conn["key"]).startswith("≥")  # seen to change: its age is known
    assert ages and all(age.startswith("≥ ") for age in ages.values())  # broken when first seen: at least that old


def test_deleted_connection_shows_as_not_seen_in_last_sync(app_env):
    at = open_page("fleet")
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test")
    app_env.state.delete_connection(conn["id"])
    click(at, "Sync now")
    missing = next(df.value for df in at.dataframe if "last seen" in df.value.columns)
    assert list(missing["key"]) == [conn["key"]]


def test_attention_list_is_oldest_first(app_env):
    at = open_page("fleet")
    store = Store.from_url(os.environ["DATABASE_URL"])
    rows = store.attention("test")
    assert [r.state_since for r in rows] == sorted(r.state_since for r in rows)
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    assert list(attention["key"]) == [r.connection_key for r in rows]


def test_attention_links_open_the_connection_whatever_its_identity(app_env):
    from urllib.parse import parse_qs, urlsplit

    from pica_core.models import Connection

    open_page("fleet")
    odd = Connection(id="odd-1", key="test::gmail::default::" + "e" * 32 + "|a&b c=d#e", platform="gmail",
                     identity="a&b c=d#e", identity_type=None, state="failed")
    Store.from_url(os.environ["DATABASE_URL"]).upsert_connections([odd], source="lookup")  # seen by a lookup
    at = open_page("fleet")
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    link = attention.loc[attention["key"] == odd.key, "open"].item()
    assert urlsplit(link).path == "/connections"
    assert parse_qs(urlsplit(link).query) == {"identity": ["a&b c=d#e"], "connection": ["odd-1"]}


def test_links_stay_under_the_path_the_app_is_served_from(app_env):
    """Behind a proxy at /ops/ (server.baseUrlPath), a link to /connections would leave the app."""
    from streamlit import config

    at = open_page("fleet")
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test" and c["state"] == "operational")
    app_env.set_state(conn["id"], "failed")
    config.set_option("server.baseUrlPath", "ops/")
    try:
        click(at, "Sync now")
    finally:
        config.set_option("server.baseUrlPath", "")
    for column in ("since", "change"):  # the failing list, the last 24 h's changes
        links = next(df.value for df in at.dataframe if column in df.value.columns)["open"]
        assert len(links) and links.str.startswith("/ops/connections?").all()


def test_a_connection_with_no_identity_opens_by_its_key(app_env):
    """A lookup of the connection id alone finds nothing: without an identity, the link looks the key up."""
    conn = app_env.state.add_connection(platform="gmail", environment="test", identity=None, identity_type=None)
    app_env.set_state(conn["id"], "failed")
    at = open_page("fleet")
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    position = list(attention["key"]).index(conn["key"])
    query = parse_qs(urlsplit(attention["open"].iloc[position]).query)
    assert query == {"key": [conn["key"]], "connection": [conn["id"]]}
    key = next(d.key for d in at.dataframe if (d.key or "").startswith("attention-"))
    at.session_state[key] = {"selection": {"rows": [position], "columns": []}}
    at.run()  # the row chosen: Connections, with the same query
    assert_clean(at)
    assert {name: at.query_params[name] for name in ("key", "connection")} == {"key": conn["key"],
                                                                             "connection": conn["id"]}
    assert any(e.value.startswith("**Failed**: ") for e in at.error)  # its detail, open


def test_a_rate_limited_sync_says_when_to_retry_and_the_counts_say_which_sync_they_are(app_env):
    at = open_page("fleet")
    assert any("as the last complete sync (#1, " in m.value for m in at.markdown)
    app_env.fault("rate_limit", count=100, path="/v1/vault/connections", seconds=40)
    click(at, "Sync now")
    said = " ".join(c.value for c in at.caption).replace("\\", "")
    retry = re.search(r"Page 1: 429 .* retry after (\d\d:\d\d:\d\d) UTC", said)
    assert retry, said  # a clock time: the run's record is read again later
    wait = datetime.combine(datetime.now(UTC).date(), time.fromisoformat(retry[1]), UTC) - datetime.now(UTC)
    assert 30 <= wait.total_seconds() % 86400 <= 41
    assert any("as the last complete sync (#1, " in m.value for m in at.markdown)  # not the failed #2


def test_resume_after_a_rate_limit_says_when_it_is_worth_pressing(app_env):
    """Resume stayed the primary button, enabled at once, where pressing it met the limit again."""
    app_env.fault("rate_limit", count=100, path="/v1/vault/connections", query="page=3", seconds=90)
    at = open_page("fleet")
    click(at, "Sync now")
    [resume] = [b for b in at.button if b.label.startswith("Resume")]
    lifts = re.fullmatch(r"Resume \(after (\d\d:\d\d:\d\d) UTC\)", resume.label)
    assert lifts and resume.proto.type == "tertiary", resume.label
    wait = datetime.combine(datetime.now(UTC).date(), time.fromisoformat(lifts[1]), UTC) - datetime.now(UTC)
    assert 60 <= wait.total_seconds() % 86400 <= 91
    at.run()
    assert [b.label for b in at.button if b.label.startswith("Resume")] == [resume.label]  # on the next runs too
    other = open_page("fleet")  # a colleague, or the same reader after a reload: only this session knew
    assert [b.label for b in other.button if b.label.startswith("Resume")] == [resume.label]
    press_sync(at, resume.label)  # pressed anyway (toned down, not disabled): its first page meets the limit again
    assert_clean(at)
    [again] = [b for b in at.button if b.label.startswith("Resume")]
    assert again.proto.type == "tertiary" and "(after " in again.label, again.label


def test_csv_export_holds_the_whole_fleet(app_env):
    at = open_page("fleet")
    assert_clean(at)
    button = next(d for d in at.get("download_button") if "Download every stored connection" in d.proto.label)
    assert "(720, CSV)" in button.proto.label


def test_platform_chart_puts_the_most_broken_first(app_env):
    import pyarrow as pa

    at = open_page("fleet")
    assert_clean(at)
    chart = at.get("vega_lite_chart")[0].proto  # states by platform
    bars = pa.ipc.open_stream(chart.datasets[0].data.data).read_all().to_pandas()
    order = json.loads(chart.spec)["encoding"]["y"]["sort"]  # top to bottom
    assert set(order) == set(bars["platform"])
    broken_bars = bars[bars.state.isin(["failed", "degraded"])].groupby("platform")["connections"].sum()
    broken = [int(broken_bars.get(p, 0)) for p in order]
    top, busiest = broken[:10], broken[10:]  # the ten most broken, then the busiest of the rest
    assert top == sorted(top, reverse=True) and max(busiest, default=0) <= top[-1], list(zip(order, broken))
    fleet = [c for c in app_env.state.connections.values() if c["environment"] == "test"]
    most = max(sum(1 for c in fleet if c["platform"] == p and c["state"] in ("failed", "degraded"))
               for p in {c["platform"] for c in fleet})
    assert top[0] == most
    platforms = len({c["platform"] for c in fleet})
    assert f"**States by platform** ({len(order)} of {platforms}: the most broken first, then the busiest)" in [
        m.value for m in at.markdown]  # the chart says it leaves some out


def test_sync_now_beside_another_sync_says_so(app_env):
    at = open_page("fleet")
    other = Store.from_url(os.environ["DATABASE_URL"])  # as the scheduled command would hold it
    with other.sync_lock("test"):
        click(at, "Sync now")
    other.engine.dispose()
    assert any("Another fleet sync of the test environment is running" in w.value for w in at.warning)


def test_an_interrupted_sync_shows_what_is_left_and_resume_completes_it(app_env):
    at = open_page("fleet")  # the first sync, complete
    store = Store.from_url(os.environ["DATABASE_URL"])
    with store.sync_lock("test"):  # a sync's process holds the lock: page 1 of 3 stored
        stopped = store.start_sync("test", 300)
        store.update_sync(stopped.id, pages_total=3, rows_total=720, pages_done=1, rows_seen=300, failed_pages=[2, 3])
        page_1 = [c.connection_key for c in sorted(store.stored_matching(environment="test", limit=1000),
                                                   key=lambda c: c.created_at, reverse=True)[:300]]  # newest first
        with store.engine.begin() as connection:  # what storing page 1 wrote
            connection.execute(update(UserConnection).where(UserConnection.connection_key.in_(page_1))
                               .values(last_sync_id=stopped.id))
        at = open_page("fleet")
        assert any(f"Sync **#{stopped.id}** is running" in m.value for m in at.markdown)
        assert store.sync_run(stopped.id).status == "running"
    at = open_page("fleet")  # its process ended: nobody holds the lock
    assert store.sync_run(stopped.id).status == "interrupted"
    assert any(f"Sync #{stopped.id} stopped before it finished: 2 pages not stored (2–3)" in w.value for w in at.warning)
    app_env.control("DELETE", "stats")
    click(at, "Resume")
    assert store.sync_run(stopped.id).status == "complete"
    assert app_env.count("vault/connections") == 3  # pages 2 and 3, and page 1 again: the list has not moved
    store.engine.dispose()


def test_resume_button_fetches_only_the_pages_left(app_env):
    open_page("fleet")
    app_env.fault("status", status=503, count=100, path="/v1/vault/connections", query="page=2")
    at = click(open_page("fleet"), "Sync now")
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "pages that failed: 2 (**Resume** fetches them again)" in warnings[0], warnings
    assert "--resume" not in warnings[0]  # the command's option is for the command line
    resume = next(b for b in at.button if b.label == "Resume")
    assert resume.proto.type == "primary" and next(b for b in at.button if b.label == "Sync now").proto.type == "secondary"
    at = open_page("fleet")  # later, or in another session: the run's row says the same
    assert any("partial: 1 page to fetch again (2)" in w.value for w in at.warning)
    assert any("**partial**, " in m.value and "from 2 of 3 pages." in m.value for m in at.markdown)
    # The counts hold what the partial sync stored, and say so (they were said to be the complete sync's).
    partial = next(b for b in at.markdown if "**partial**, " in b.value).value.split("**")[1].removeprefix("#")
    assert any(f"and what sync #{partial} (partial) and lookups stored since" in m.value for m in at.markdown)
    app_env.control("DELETE", "faults")
    app_env.control("DELETE", "stats")
    at = click(at, "Resume")
    assert any("complete, 720 connections from 3 pages (0 new, 0 state changes in the pages it resumed)" in s.value
               for s in at.success)
    assert app_env.count("vault/connections") == 2  # page 2, and page 1 again: the list has not moved


def test_the_counts_name_a_partial_sync_that_stored_rows_though_a_later_one_stored_none(app_env):
    open_page("fleet")
    app_env.fault("status", status=503, count=100, path="/v1/vault/connections", query="page=2")
    click(open_page("fleet"), "Sync now")  # partial: pages 1 and 3 stored
    app_env.control("DELETE", "faults")
    app_env.fault("status", status=503, count=100, path="/v1/vault/connections")
    at = click(open_page("fleet"), "Sync now")  # failed: nothing stored
    runs = [m.value for m in at.markdown if m.value.startswith("Last sync **#")]
    assert runs and "**failed**" in runs[0]
    failed = int(runs[0].split("**#")[1].split("**")[0])
    assert any(f"and what sync #{failed - 1} (partial) and lookups stored since" in m.value for m in at.markdown)
    assert not [b for b in at.button if b.label == "Resume"]  # a resume of it would be a new sync: Sync now is there
    assert any("failed before its first page arrived, so nothing was stored; run a new sync" in w.value
               for w in at.warning)
    at = open_page("fleet")  # later, or in another session: the run's row says the same
    assert not [b for b in at.button if b.label == "Resume"]
    assert any("failed before its first page arrived: nothing was stored. **Sync now** starts again" in w.value
               for w in at.warning)


def test_overview_does_not_retry_a_failing_first_sync_forever(app_env):
    app_env.fault("status", status=503, count=100_000, path="/v1/vault")
    at = open_page("overview")
    assert_clean(at)
    assert app_env.count("vault/connections") <= 5  # one sync: page 1 and its retries
    assert any("failed" in m.value for m in at.markdown)
    [link] = [link for link in at.get("page_link") if link.proto.label == "Open Fleet health"]
    assert link.proto.page.endswith("fleet")  # the failed sync's reason and Sync now are there


def test_tabs_count_every_connection_when_the_lists_show_the_first_500(app_env):
    from pica_core.models import Connection

    at = open_page("fleet")
    fleet = [c for c in app_env.state.connections.values() if c["environment"] == "test"]
    broken = sum(1 for c in fleet if c["state"] in ("failed", "degraded"))
    assert any(m.value.startswith(f"**{broken}** failing or degraded · ") for m in at.markdown)
    store = Store.from_url(os.environ["DATABASE_URL"])
    store.upsert_connections([Connection(id=f"extra-{n}", key=f"test::gmail::default::{n:032x}|bulk-{n}",
                                         platform="gmail", identity=f"bulk-{n}", state="failed") for n in range(600)],
                             source="lookup")  # seen since the last sync: part of the fleet
    store.engine.dispose()
    at = open_page("fleet")
    total = broken + 600
    assert any(m.value.startswith(f"**{total:,}** failing or degraded · ") for m in at.markdown)
    assert len(next(df.value for df in at.dataframe if "since" in df.value.columns)) == 500
    assert any(f"The oldest 500 of {total:,}" in c.value for c in at.caption)
    assert any(f"({total:,} need attention)" in m.value for m in at.markdown)


def test_auto_refresh_stays_on_after_a_look_at_another_page(app_env):
    at = open_page("fleet")
    at.toggle(key="auto-refresh").set_value(True).run()
    for page in ("overview", "fleet"):  # the sidebar's links
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert_clean(at)
    assert at.toggle(key="auto-refresh").value is True
    at.toggle(key="auto-refresh").set_value(False).run()
    for page in ("overview", "fleet"):
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert at.toggle(key="auto-refresh").value is False


def test_a_complete_sync_of_an_empty_account_is_not_nothing_synced_yet(app_env):
    """Every connection deleted at Pica, then synced: the page said "Nothing synced yet." under the complete sync."""
    for connection in list(app_env.state.connections.values()):
        if connection["environment"] == "test":
            app_env.state.delete_connection(connection["id"])
    at = click(open_page("fleet"), "Sync now")
    infos = [i.value for i in at.info]
    assert not any("Nothing synced yet" in i for i in infos), infos
    assert any(re.match(r"No connections in the test environment, as the last complete sync \(#\d+, ", i)
               for i in infos), infos
