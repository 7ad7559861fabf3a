"""Cached reads for pages: a warm rerun makes no upstream call; a failed read falls back to the
last good answer (with its age) where there is one.

Cache keys are the API URL and a fingerprint of the key, never the key itself.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import streamlit as st

from ..caching import Fetched, last_good
from ..client import PicaClient
from ..config import Settings, load_settings
from ..errors import AuthError, ConfigError, InvalidResponseError, PicaError, RateLimitedError
from ..models import ActionHit, Connection, Connector
from . import context

try:
    _DEFAULTS = load_settings()
except ConfigError:  # the pages report it; caches just use default TTLs
    _DEFAULTS = Settings()

CATALOG_TTL = _DEFAULTS.catalog_ttl_seconds
# A catalog read that failed (a timeout: 15 s) is not asked again for this long by any page: each run of every page
# that shows names asked again, and waited again. The catalog page's Refresh asks at once.
CATALOG_FAILURE_HOLD = 30.0
ACTIONS_LIMIT = 100  # actions asked of Pica's search per platform and query
CONNECTIONS_TTL = _DEFAULTS.connections_ttl_seconds


def _key(settings: Settings) -> tuple[str, str]:
    return settings.api_url or "", context._fingerprint(settings)


@st.cache_data(ttl=CATALOG_TTL, show_spinner=False)
def _catalog(api_url: str, fingerprint: str, _client: PicaClient) -> tuple[tuple[list[Connector], set[str]], float]:
    # The two lists at once: one after the other, a Refresh waited for both Pica's answers in turn.
    with ThreadPoolExecutor(max_workers=1) as pool:
        every = pool.submit(_client.connectors)
        enabled = {c.platform for c in _client.connectors(authkit=True)}
        return (every.result(), enabled), time.time()


def catalog(settings: Settings) -> Fetched[tuple[list[Connector], set[str]]]:
    """(every connector, platforms enabled in AuthKit), cached; the last good one if Pica fails."""
    client = context.client(settings)
    return last_good.fetch(_catalog_key(settings), lambda: _catalog(*_key(settings), client),
                           hold_failure=CATALOG_FAILURE_HOLD)


def platform_names(settings: Settings, *, ask: bool = True) -> dict[str, str]:
    """Each catalog platform's name by its id ("gmail" → "Gmail"); none when the catalog cannot be read (the page
    that needs the catalog itself says why). `ask=False`: only from a catalog read before, never asking Pica, for
    a page that can show ids instead (a failing catalog endpoint cost each Console run a timeout)."""
    return names_of(catalog(settings).value if ask else _remembered_catalog(settings))


def enabled_in_authkit(settings: Settings) -> set[str] | None:
    """The platforms enabled in AuthKit, from a catalog read before (never asking Pica); None when none was."""
    remembered = _remembered_catalog(settings)
    return remembered[1] if remembered else None


def _remembered_catalog(settings: Settings) -> tuple[list[Connector], set[str]] | None:
    """The catalog `catalog(settings)` last read, without asking Pica (None if it never did)."""
    return last_good.peek(_catalog_key(settings))


def _catalog_key(settings: Settings) -> tuple[str, ...]:
    """Where `catalog` keeps its last good answer."""
    return ("catalog", *_key(settings))


def names_of(catalog_value: tuple[list[Connector], set[str]] | None) -> dict[str, str]:
    """The names by id of a catalog already read (`catalog(settings).value`)."""
    return {c.platform: c.name for c in catalog_value[0]} if catalog_value else {}


def refresh_catalog() -> None:
    """Forget the catalog and the connectors' actions: the next view reads them from Pica again."""
    _catalog.clear()
    _actions.clear()
    last_good.ask_again("catalog")


@st.cache_data(ttl=30, show_spinner=False)
def _reachability(api_url: str, fingerprint: str, _client: PicaClient) -> tuple[str, float, str | None, float]:
    started = time.perf_counter()
    try:
        _client.user_flags()
    except PicaError as exc:
        return reach_label(exc), (time.perf_counter() - started) * 1000, f"{exc} — {exc.hint}", time.time()
    return "reachable", (time.perf_counter() - started) * 1000, None, time.time()


def reach_label(error: PicaError) -> str:
    """What a failed call says of Pica: a refusal or a rate limit is an answer, not an outage."""
    if isinstance(error, AuthError):
        return "refused the key"
    if isinstance(error, RateLimitedError):
        return "rate limited"
    return "failing" if error.status or isinstance(error, InvalidResponseError) else "unreachable"  # an odd answer


def reachability(settings: Settings) -> tuple[str, float, str | None, float]:
    """(reachable | refused the key | rate limited | failing | unreachable, latency in ms, error text, when asked
    in epoch seconds); cached 30 s."""
    return _reachability(*_key(settings), context.client(settings))


@st.cache_data(ttl=CONNECTIONS_TTL, show_spinner=False)
def _connections(api_url: str, fingerprint: str, filters: tuple, sync_ended: tuple,
                 _client: PicaClient) -> tuple[list[Connection], float]:
    return _client.connections(**dict(filters)), time.time()


def connections(settings: Settings, *, fresh: bool = False, **filters) -> Fetched[list[Connection]]:
    """Vault connections matching the filters (every page), cached for CONNECTIONS_CACHE_TTL or until a fleet sync
    ends (from any session or process): after one, an answer cached before it would show states it replaced.
    `fresh`: ask Pica now (a Look up pressed: support asks again because something just changed)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in filters.items() if v not in (None, "")))
    client = context.client(settings)
    last = context.store(settings).last_sync(settings.environment)
    # When it ended too: a resume keeps its run's id, and its end would not have made a cached answer old.
    args = (*_key(settings), frozen, (last.id, last.finished_at) if last else (), client)
    if fresh:
        _connections.clear(*args)  # this lookup's answer only
    return last_good.fetch(("connections", *_key(settings), frozen), lambda: _connections(*args))


def refresh_connections() -> None:
    _connections.clear()


@st.cache_data(ttl=CATALOG_TTL, show_spinner=False)
def _actions(api_url: str, fingerprint: str, platform: str, query: str, _client: PicaClient) -> list[ActionHit]:
    return _client.search_actions(platform, query, limit=ACTIONS_LIMIT)


def actions(settings: Settings, platform: str, query: str = "") -> list[ActionHit]:
    """Actions of a platform (search endpoint: it carries ids and paths), cached."""
    return _actions(*_key(settings), platform, query.strip(), context.client(settings))
