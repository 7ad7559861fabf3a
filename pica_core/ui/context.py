"""Per-session context for pages: settings, the client, the store and the signed-in principal."""

from __future__ import annotations

import hashlib
from typing import NoReturn

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from ..access import Principal, principal_for
from ..client import PicaClient, RetryPolicy
from ..config import Settings, load_settings
from ..errors import ConfigError
from ..store import Store, unopenable


def settings() -> Settings:
    """Settings for this run; a bad setting stops the page with one line saying what to fix."""
    try:
        loaded = load_settings()
    except ConfigError as exc:
        _stop_for(exc)
    return loaded.with_sandbox_port(int(st.get_option("server.port") or 8501), st.get_option("server.address"))


def _fingerprint(settings: Settings) -> str:
    return hashlib.sha256(settings.effective_secret().reveal().encode()).hexdigest()[:16]


# How long a page keeps retrying a read before it says what went wrong: someone is watching a spinner that cannot
# say it is retrying. A longer Retry-After is reported at once ("retry in 20 s"); syncs keep the whole budget.
PAGE_RETRY_SECONDS = 10.0


@st.cache_resource(show_spinner=False)
def _client(api_url: str, fingerprint: str, _settings: Settings) -> PicaClient:
    budget = min(_settings.retry_deadline_seconds, PAGE_RETRY_SECONDS)
    return PicaClient.from_settings(_settings, retry=RetryPolicy(_settings.max_retries, budget))


def client(current: Settings | None = None) -> PicaClient:
    current = current or settings()
    tuning = (current.timeout_seconds, current.page_size, current.max_retries, current.retry_deadline_seconds,
              current.sandbox)
    return _client(current.api_url or "", _fingerprint(current) + repr(tuning), current)


@st.cache_resource(show_spinner=False)
def _store(database_url: str) -> Store:
    return Store.from_url(database_url)


def store(current: Settings | None = None) -> Store:
    """The store; a database that cannot be opened stops the page with one line, as a bad setting does."""
    url = (current or settings()).database_url
    try:
        return _store(url)
    except ConfigError as exc:
        _stop_for(exc)
    except SQLAlchemyError as exc:
        st.error(f"{unopenable(url, exc)}, then reload.", icon=":material/database:")
        st.stop()


def _stop_for(exc: ConfigError) -> NoReturn:
    """A bad setting stops the page with one line saying what to fix."""
    st.error(f"Configuration error: {exc}", icon=":material/settings_alert:")
    st.stop()


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # st.secrets raises when there is no secrets file at all
        return False


def principal(current: Settings | None = None) -> Principal | None:
    current = current or settings()
    claims = st.user.to_dict() if auth_configured() else None
    return principal_for(auth_configured=auth_configured(), claims=claims, sandbox=current.sandbox,
                         allow_live_writes=current.allow_live_writes, claim=current.roles_claim,
                         role_map=current.role_map)
