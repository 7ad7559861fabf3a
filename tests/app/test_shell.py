"""The shell: every page renders in sandbox mode, with the banner and the right navigation."""

from __future__ import annotations

import os

import pytest

from pica_core.store import Store
from pica_core.ui.shell import PAGES
from tests.app.conftest import assert_clean, open_page


@pytest.mark.parametrize("page", [p[1][:-3] for p in PAGES])
def test_every_page_renders_without_an_exception(app_env, page):
    at = open_page(page)
    assert_clean(at)
    assert any("Sandbox mode" in i.value for i in at.info)


def test_overview_shows_headline_numbers_after_first_sync(app_env):
    at = open_page("overview")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Connectors in the catalog"] == "294"
    assert metrics["Connections stored"] == "720"


@pytest.mark.parametrize(("fault", "badge"), [
    ({"kind": "status", "status": 401}, ":orange-badge[:material/warning: refused the key]"),
    ({"kind": "rate_limit", "seconds": 30}, ":orange-badge[:material/warning: rate limited]"),
    ({"kind": "status", "status": 503}, ":orange-badge[:material/warning: failing]"),
    ({"kind": "undecodable"}, ":orange-badge[:material/warning: failing]"),  # it answered: not the network
    ({"kind": "malformed"}, ":orange-badge[:material/warning: failing]"),
    ({"kind": "drop"}, ":red-badge[:material/cloud_off: unreachable]"),
])
def test_the_overview_tells_a_refusal_from_an_outage(app_env, fault, badge):
    app_env.fault(**fault, count=100, path="/v1/users/flags")
    at = open_page("overview")
    assert_clean(at)
    assert any(m.value.startswith(badge) for m in at.markdown), [m.value for m in at.markdown]


def test_connections_found_since_the_last_sync_are_said_beside_the_stored_count(app_env):
    """"it saw 720" sat beside "722 stored" after two connects, which read as a mismatch."""
    from pica_core.models import Connection

    open_page("overview")  # the sandbox's first sync
    store = Store.from_url(os.environ["DATABASE_URL"])
    store.upsert_connections([Connection(id="new-1", key="test::gmail::default::" + "e" * 32 + "|usr_new",
                                         platform="gmail", identity="usr_new", identity_type="user")],
                             source="connect")
    store.engine.dispose()
    at = open_page("overview")
    assert_clean(at)
    stored = next(m for m in at.metric if m.label == "Connections stored")
    assert (stored.value, stored.proto.delta) == ("721", "1 found since the last sync")


def test_a_failing_catalog_is_not_called_reachable_and_its_numbers_say_how_old_they_are(app_env):
    """A green "reachable" sat above "Catalog: 500 … failing", and the catalog's numbers, an earlier answer's, did not
    say so (the Catalog page did)."""
    from pica_core.ui import data

    open_page("overview")  # the catalog read once
    app_env.fault("status", status=500, count=100, path="/v1/available-connectors")
    data.refresh_catalog()
    at = open_page("overview")
    assert_clean(at)
    assert any(m.value.startswith(":orange-badge[:material/warning: answering, with failures]") for m in at.markdown)
    assert {m.label: m.value for m in at.metric}["Connectors in the catalog"] == "294"
    assert any("Pica could not give the catalog just now, so this is what it answered" in w.value for w in at.warning)


def test_a_remembered_rate_limit_says_how_old_its_retry_in_is(app_env, monkeypatch):
    """The card's answer is kept 30 s: "retry in 40 s" read 25 s later did not say it was 25 s old."""
    import time

    app_env.fault("rate_limit", seconds=40, count=100, path="/v1/users/flags")
    at = open_page("overview")
    assert not any("(asked" in c.value for c in at.caption)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 12)
    at.run()
    assert_clean(at)
    assert any("retry in 40 s" in c.value and "(asked 1" in c.value and "s ago)" in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_nothing_synced_is_not_zero_needing_attention(app_env, monkeypatch):
    """Live mode, fresh database: "Need attention 0, 0% failed or degraded" read as all healthy, with no way on."""
    monkeypatch.setenv("PICA_SECRET_KEY", "sk_test_sandbox")
    monkeypatch.setenv("PICA_API_URL", app_env.url)
    at = open_page("overview")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Connections stored"] == "0" and metrics["Need attention"] == "—"
    assert any("Sync the fleet" in str(link.proto.label) for link in at.get("page_link"))
    store = Store.from_url(os.environ["DATABASE_URL"])  # a complete sync of an account with no connections: 0
    run = store.start_sync("test", page_size=300)
    store.update_sync(run.id, status="complete", pages_total=1, pages_done=1)
    store.engine.dispose()
    at = open_page("overview")
    assert {m.label: m.value for m in at.metric}["Need attention"] == "0"


def test_bad_configuration_is_one_line_not_a_traceback(app_env, monkeypatch):
    monkeypatch.setenv("PICA_SECRET_KEY", "pk_nope")
    at = open_page("overview")
    assert not at.exception
    assert at.error[0].value.startswith("Configuration error: PICA_SECRET_KEY must start with")


@pytest.mark.parametrize("page", ["overview", "connections", "fleet"])
def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(app_env, monkeypatch, page):
    from tests.conftest import free_port

    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://dash:hunter2@127.0.0.1:{free_port()}/nowhere")
    at = open_page(page)
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Could not open the database at postgresql+psycopg://dash:***@127.0.0.1:")
    assert "hunter2" not in error and "check DATABASE_URL" in error


def test_a_sqlite_folder_that_cannot_be_made_is_one_line(app_env, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'a-file' / 'dashboard.db'}")
    at = open_page("connections")
    assert not at.exception
    assert [e.value for e in at.error] == [f"Configuration error: Cannot create the database's folder "
                                           f"{tmp_path / 'a-file'} (File exists): set DATABASE_URL to a place the "
                                           "dashboard may write."]


def test_settings_injects_every_sandbox_fault_with_its_seconds(app_env):
    """The form offered six of the sandbox's seven faults, no 401, and no seconds for a latency or a rate limit."""
    at = open_page("settings")
    assert_clean(at)
    form = next(s for s in at.selectbox if s.label == "Fault")
    assert "undecodable" in form.options
    form.set_value("latency")
    next(n for n in at.number_input if n.label.startswith("Seconds")).set_value(2.5)
    next(n for n in at.number_input if n.label.startswith("For the next")).set_value(1)
    next(b for b in at.button if b.label == "Inject").click().run()
    assert_clean(at)
    [fault] = app_env.control("GET", "faults").json()["faults"]
    assert (fault["kind"], fault["seconds"], fault["count"]) == ("latency", 2.5, 1)
    assert "401" in next(s for s in at.selectbox if s.label == "Status (for status)").options
    assert any(c.value.startswith("Injected, still to fire: latency on /v1/ × 1") for c in at.caption)


def test_the_banner_names_the_standalone_sandbox_it_talks_to(app_env):
    """It said "the built-in Pica emulator" of whatever PICA_API_URL named, a dead address included."""
    at = open_page("overview")
    [banner] = [i.value for i in at.info if i.value.startswith("**Sandbox mode**")]
    assert f"talks to the sandbox at `{app_env.url}` with demo data" in banner.replace("\\", "")


def test_settings_names_a_setting_that_was_set_and_is_not_read(app_env, monkeypatch):
    monkeypatch.setenv("PICA_PAGESIZE", "50")
    at = open_page("settings")
    assert_clean(at)
    assert [w.value.replace("\\", "") for w in at.warning] == ["PICA_PAGESIZE is not a setting: did you mean PICA_PAGE_SIZE?"]


def test_settings_refuses_a_fault_path_that_would_never_fire_and_says_why(app_env):
    """`v1/vault` (no leading slash) was injected, "done", and never fired."""
    at = open_page("settings")
    next(t for t in at.text_input if t.label == "Path prefix").set_value("v1/vault")
    next(b for b in at.button if b.label == "Inject").click().run()
    assert_clean(at)
    assert app_env.control("GET", "faults").json()["faults"] == []
    [error] = at.error
    assert "path must start with / (such as /v1/vault)" in error.value.replace("\\", "")
    assert error.value.endswith("Nothing was changed.")
    assert any(c.value.startswith("No faults injected") for c in at.caption)
