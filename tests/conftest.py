"""Shared fixtures: a real sandbox on a loopback port, databases (SQLite and PostgreSQL), app settings."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from pica_core.config import SANDBOX_TEST_KEY, Secret
from pica_core.sandbox import SandboxConfig, create_app

ROOT = Path(__file__).resolve().parent.parent
# A developer's own .streamlit/secrets.toml must not leak into the tests.
os.environ["PICA_SECRETS_FILE"] = str(ROOT / "tests" / "no-such-secrets.toml")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """An ASGI app served by uvicorn on a loopback port, in a background thread."""

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Sandbox:
    url: str
    app: object

    @property
    def state(self):
        return self.app.state.sandbox

    def control(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(method, f"{self.url}/control/{path}", headers={"x-pica-secret": SANDBOX_TEST_KEY},
                                 timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def fault(self, kind: str, **spec) -> None:
        self.control("POST", "faults", json={"kind": kind, **spec})

    def stats(self) -> dict:
        return self.control("GET", "stats").json()

    def count(self, route: str | None = None) -> int:
        stats = self.stats()
        return stats["total"] if route is None else stats["by_route"].get(route, 0)

    def requests(self, limit: int = 50) -> list[dict]:
        return self.control("GET", "requests", params={"limit": limit}).json()["requests"]

    def reset(self) -> None:
        self.control("POST", "reset")
        self.control("DELETE", "faults")
        self.control("POST", "settings", json={"throughput": 0})

    def set_state(self, id_or_key: str, state: str) -> dict:
        return self.control("POST", f"connections/{id_or_key}/state", json={"state": state}).json()


@pytest.fixture(scope="session")
def sandbox_server():
    app = create_app(SandboxConfig(throughput=0))
    with ThreadedServer(app) as server:
        yield Sandbox(server.url, app)


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    """The session's sandbox, reset to its seed, with no faults and no rate limit."""
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.control("DELETE", "faults")


@pytest.fixture
def secret() -> Secret:
    return Secret(SANDBOX_TEST_KEY)


# --- databases ---------------------------------------------------------------------------------------------
def _postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return url
    except Exception:
        return None


_PG = None


def _pg() -> str | None:
    global _PG
    if _PG is None:
        _PG = _postgres_url() or ""
    return _PG or None


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh database of each kind: a SQLite file, and a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = _pg()
    if url is None:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required (REQUIRE_POSTGRES) but not reachable at TEST_DATABASE_URL")
        pytest.skip("PostgreSQL not reachable (set TEST_DATABASE_URL); .ci/run starts one")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def app_env(monkeypatch, sandbox: Sandbox, tmp_path):
    """Environment for running the dashboard's pages against the test sandbox and a fresh SQLite file."""
    for name in list(os.environ):
        if name.startswith(("PICA_", "AUTHKIT_", "ALLOW_LIVE", "ROLE", "DATABASE_URL")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PICA_API_URL", sandbox.url)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("PICA_RETRY_DEADLINE_SECONDS", "5")
    import streamlit as st

    st.cache_data.clear()
    from pica_core.caching import last_good

    last_good.clear()
    return sandbox
