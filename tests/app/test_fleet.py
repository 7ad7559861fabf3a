"""Fleet health page (AppTest): sync with transitions, attention oldest first, last-24h changes, export."""

from __future__ import annotations

import os

from pica_core.store import Store
from tests.app.conftest import assert_clean, open_page


def click(at, label: str):
    next(b for b in at.button if b.label == label).click().run()
    assert_clean(at)
    return at


def test_fleet_overview_after_the_first_sync(app_env):
    at = open_page("fleet")
    assert_clean(at)
    states = {c["state"] for c in app_env.state.connections.values() if c["environment"] == "test"}
    metrics = {m.label.split("] ")[-1]: int(m.value) for m in at.metric}
    expected = {s: sum(1 for c in app_env.state.connections.values() if c["environment"] == "test" and c["state"] == s)
                for s in states}
    assert metrics == expected
    attention = next(df.value for df in at.dataframe if "since" in df.value.columns)
    assert len(attention) == expected["failed"] + expected["degraded"]


def test_sync_records_changes_and_lists_them(app_env):
    at = open_page("fleet")
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test" and c["state"] == "operational")
    app_env.set_state(conn["id"], "degraded")
    click(at, "Sync now")
    assert any("1 state changes" in s.value for s in at.success)
    changes = next(df.value for df in at.dataframe if "change" in df.value.columns)
    assert list(changes["key"]) == [conn["key"]] and list(changes["change"]) == ["operational → degraded"]


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


def test_csv_export_holds_the_whole_fleet(app_env):
    at = open_page("fleet")
    assert_clean(at)
    button = next(d for d in at.get("download_button") if "Download the fleet" in d.proto.label)
    assert "720 connections" in button.proto.label


def test_platform_chart_puts_the_most_broken_first(app_env):
    import pyarrow as pa

    at = open_page("fleet")
    assert_clean(at)
    chart = at.get("vega_lite_chart")[0].proto  # states by platform
    bars = pa.ipc.open_stream(chart.datasets[0].data.data).read_all().to_pandas()
    bars.columns = ["platform", "state", "connections"]  # Streamlit names the melted columns itself
    order = list(dict.fromkeys(bars["platform"]))
    broken_bars = bars[bars.state.isin(["failed", "degraded"])].groupby("platform")["connections"].sum()
    broken = [int(broken_bars.get(p, 0)) for p in order]
    top, busiest = broken[:10], broken[10:]  # the ten most broken, then the busiest of the rest
    assert top == sorted(top, reverse=True) and max(busiest, default=0) <= top[-1], list(zip(order, broken))
    fleet = [c for c in app_env.state.connections.values() if c["environment"] == "test"]
    most = max(sum(1 for c in fleet if c["platform"] == p and c["state"] in ("failed", "degraded"))
               for p in {c["platform"] for c in fleet})
    assert top[0] == most
