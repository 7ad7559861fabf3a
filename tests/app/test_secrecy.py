"""The secret key never reaches a page, the database, the console history or the logs, whatever the dashboard did."""

from __future__ import annotations

import logging
import os
import secrets

import pytest
from sqlalchemy import create_engine, inspect, text

from pica_core.ui.shell import PAGES
from tests.app.conftest import assert_clean, open_page, press_sync


@pytest.fixture
def secret_env(app_env, monkeypatch):
    """The test sandbox accepting a fresh, unguessable key, which the dashboard uses as its PICA_SECRET_KEY."""
    key = f"sk_test_{secrets.token_hex(16)}"
    config = app_env.state.config
    original = config.test_key
    config.test_key = key
    monkeypatch.setenv("PICA_SECRET_KEY", key)
    monkeypatch.setenv("ALLOW_LIVE_WRITES", "true")  # a configured key is "live mode": let it write
    yield key
    config.test_key = original


def texts(at) -> str:
    """Every string an AppTest run rendered, widgets' values, labels and help included."""
    parts = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def test_the_secret_is_nowhere_after_using_every_page(secret_env, app_env, caplog):
    caplog.set_level(logging.DEBUG)
    conn = next(c for c in app_env.state.connections.values() if c["platform"] == "gmail" and c["environment"] == "test")
    rendered = []
    for page in [p[1][:-3] for p in PAGES]:
        at = open_page(page)
        assert_clean(at)
        rendered.append(texts(at))
    at = open_page("fleet")
    press_sync(at)
    rendered.append(texts(at))
    at = open_page("connections", query={"key": conn["key"], "connection": conn["id"]})
    rendered.append(texts(at))
    at = open_page("console", query={"key": conn["key"]})
    rendered.append(texts(at))

    everything = "\n".join(rendered)
    assert conn["key"] in everything and "Sync #" in everything  # the walk does see what the pages show
    assert secret_env not in everything
    assert secret_env not in caplog.text

    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as db:
        for table in inspect(engine).get_table_names():
            for row in db.execute(text(f'SELECT * FROM "{table}"')):
                assert secret_env not in repr(tuple(row)), table
    engine.dispose()
