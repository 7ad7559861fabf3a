"""The connector catalog as a table: a filter spec that lives in the URL, rows, search, filters, sorting,
coverage aggregates and CSV export. Plain Python and pandas (no Streamlit), so it is unit-tested directly.

The page keeps a `FilterSpec` in the query string (`?q=…&category=CRM&category=AI&authkit=yes&sort=-actions`),
so a filtered view can be shared as a link: `FilterSpec.from_params(url)` reads it, `.to_params()` writes it back
(defaults omitted, so an unfiltered view has a clean URL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from . import exports
from .models import CONNECTOR_STATUSES, ActionHit, Connector
from .text import plain  # noqa: F401  (re-exported: the catalog UI escapes API text with it)

UNCATEGORIZED = "Uncategorized"
STATUS_LABELS = {"generally_available": "GA", "beta": "Beta", "alpha": "Alpha", "not_available": "Not available"}

# Sort keys as they appear in the URL ("-" = descending) and their labels in the page.
SORTS = {
    "name": "Name (A→Z)",
    "platform": "Platform id (A→Z)",
    "category": "Category, then name",
    "status": "Status (GA first)",
    "-actions": "Most actions",
    "-connections": "Most connections",
    "connections": "Fewest connections",
}
DEFAULT_SORT = "name"

# Query-string names; other pages' parameters in the same URL are left alone.
PARAM_QUERY, PARAM_CATEGORY, PARAM_STATUS = "q", "category", "status"
PARAM_AUTHKIT, PARAM_OAUTH, PARAM_SORT, PARAM_SELECTED = "authkit", "oauth", "sort", "selected"
PARAMS = (PARAM_QUERY, PARAM_CATEGORY, PARAM_STATUS, PARAM_AUTHKIT, PARAM_OAUTH, PARAM_SORT, PARAM_SELECTED)

_TRUE, _FALSE = {"yes", "true", "1", "on"}, {"no", "false", "0", "off"}

# The table's columns, in order; the CSV export's too, bar the logo. What product reads first next to the name (is
# it in AuthKit, is it used), the platform id last: at 1024 px the table shows about 800 px of it.
COLUMNS = ("logo", "name", "category", "authkit", "connections", "status", "actions", "oauth", "platform",
           "description")


def _values(params: Mapping[str, str | Sequence[str]], name: str) -> list[str]:
    """Every value of a parameter: repeated keys (`?category=A&category=B`) arrive as a list."""
    raw = params.get(name)
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else list(raw)
    return [item.strip() for item in items if item and item.strip()]


def _last(params: Mapping[str, str | Sequence[str]], name: str) -> str:
    values = _values(params, name)
    return values[-1] if values else ""


def _tristate(value: str) -> bool | None:
    value = value.lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class FilterSpec:
    """What the catalog table shows: search, filters, order, and which connector's detail is open."""

    query: str = ""
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    authkit: bool | None = None  # None = either
    oauth: bool | None = None
    sort: str = DEFAULT_SORT
    selected: str = ""  # platform id of the connector whose detail is open

    @classmethod
    def from_params(cls, params: Mapping[str, str | Sequence[str]]) -> FilterSpec:
        """Parse query parameters; unknown or malformed values fall back to "no filter", never an error."""
        sort = _last(params, PARAM_SORT)
        return cls(
            query=" ".join(_last(params, PARAM_QUERY).split())[:200],
            categories=_unique(_values(params, PARAM_CATEGORY)),
            statuses=_unique(_values(params, PARAM_STATUS)),
            authkit=_tristate(_last(params, PARAM_AUTHKIT)),
            oauth=_tristate(_last(params, PARAM_OAUTH)),
            sort=sort if sort in SORTS else DEFAULT_SORT,
            selected=_last(params, PARAM_SELECTED).lower(),  # platform ids are lower case (Gmail: gmail)
        )

    @staticmethod
    def unread(params: Mapping[str, str | Sequence[str]]) -> list[str]:
        """What `from_params` had to ignore in a link: a yes/no that is neither, an unknown sort."""
        ignored = [f"{name}={value}" for name in (PARAM_AUTHKIT, PARAM_OAUTH)
                   if (value := _last(params, name)) and _tristate(value) is None]
        if (sort := _last(params, PARAM_SORT)) and sort not in SORTS:
            ignored.append(f"sort={sort}")
        return ignored

    def to_params(self) -> dict[str, str | list[str]]:
        """Query parameters for this spec (defaults left out); `from_params(to_params())` gives it back."""
        params: dict[str, str | list[str]] = {}
        if self.query:
            params[PARAM_QUERY] = self.query
        if self.categories:
            params[PARAM_CATEGORY] = list(self.categories)
        if self.statuses:
            params[PARAM_STATUS] = list(self.statuses)
        if self.authkit is not None:
            params[PARAM_AUTHKIT] = "yes" if self.authkit else "no"
        if self.oauth is not None:
            params[PARAM_OAUTH] = "yes" if self.oauth else "no"
        if self.sort != DEFAULT_SORT:
            params[PARAM_SORT] = self.sort
        if self.selected:
            params[PARAM_SELECTED] = self.selected
        return params

    @property
    def filtered(self) -> bool:
        """Whether any search or filter narrows the rows (sorting and selection do not)."""
        return bool(self.query or self.categories or self.statuses) or self.authkit is not None \
            or self.oauth is not None

    def restricted_to(self, categories: Iterable[str], statuses: Iterable[str]) -> tuple[FilterSpec, list[str]]:
        """The spec without categories/statuses the catalog does not have, and what was dropped (from a stale
        or hand-edited link)."""
        # A link typed by hand says crm for CRM, and GA (the label shown) for generally_available. An exact
        # spelling wins: Pica's catalog has both CRM and crm (the later taxonomy's), and they are two categories.
        def resolver(known: Iterable[str], labels: Mapping[str, str]) -> Callable[[str], str | None]:
            ordered = list(known)  # read once (an iterator is spent by the first value), in order: the last wins
            exact = set(ordered)
            folded = {label.casefold(): k for k in ordered for label in (labels.get(k, k), k)}
            return lambda value: value if value in exact else folded.get(value.casefold())

        category_of, status_of = resolver(categories, {}), resolver(statuses, STATUS_LABELS)
        resolved = [(c, category_of(c)) for c in self.categories]
        resolved_statuses = [(s, status_of(s)) for s in self.statuses]
        dropped = [f"{PARAM_CATEGORY}={c}" for c, known in resolved if known is None]
        dropped += [f"{PARAM_STATUS}={s}" for s, known in resolved_statuses if known is None]
        spec = replace(self, categories=_unique(known for _, known in resolved if known is not None),
                       statuses=_unique(known for _, known in resolved_statuses if known is not None))
        return spec, dropped


# --- rows ------------------------------------------------------------------------------------------------
def connector_frame(connectors: Iterable[Connector], enabled: Iterable[str], usage: Mapping[str, int],
                    image_url: Callable[[str | None], str | None] = lambda url: url) -> pd.DataFrame:
    """One row per connector, in COLUMNS order. `usage` is connections per platform (from the stored fleet);
    `image_url` turns a logo URL into one the browser can load."""
    enabled = set(enabled)
    rows = [{
        "logo": image_url(c.image),
        "name": c.name,
        "platform": c.platform,
        "category": (c.category or "").strip() or UNCATEGORIZED,
        "status": c.status,
        "authkit": c.platform in enabled,
        "oauth": bool(c.oauth),
        "actions": int(c.tools or 0),
        "connections": int(usage.get(c.platform, 0)),
        "description": c.description or "",
    } for c in connectors]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"oauth": bool, "authkit": bool, "actions": "int64", "connections": "int64"})


def _every_word(frame: pd.DataFrame, columns: Sequence[str], query: str) -> pd.Series:
    """Rows where every word of the query appears, case-insensitively, in one of the columns."""
    mask = pd.Series(True, index=frame.index)
    words = query.casefold().split()
    if frame.empty or not words:
        return mask
    haystack = frame[list(columns)].astype(str).agg("\n".join, axis=1).str.casefold()
    for word in words:
        mask &= haystack.str.contains(word, regex=False)
    return mask


def search_mask(frame: pd.DataFrame, query: str) -> pd.Series:
    """Rows where every word of the query appears in the name, platform or description."""
    return _every_word(frame, ("name", "platform", "description"), query)


def _sorted(frame: pd.DataFrame, sort: str) -> pd.DataFrame:
    name = frame["name"].str.casefold()
    if sort == "status":
        rank = {status: i for i, status in enumerate(CONNECTOR_STATUSES)}
        keys = {"_k": frame["status"].map(lambda s: rank.get(s, len(rank))), "_n": name}
        ascending = [True, True]
    elif sort == "category":  # alphabetically, "Uncategorized" last
        category = frame["category"].str.casefold().where(frame["category"] != UNCATEGORIZED, "\uffff")
        keys, ascending = {"_k": category, "_n": name}, [True, True]
    elif sort == "platform":
        keys, ascending = {"_k": frame["platform"], "_n": name}, [True, True]
    elif sort.lstrip("-") in ("actions", "connections"):
        keys, ascending = {"_k": frame[sort.lstrip("-")], "_n": name}, [not sort.startswith("-"), True]
    else:
        keys, ascending = {"_k": name, "_n": frame["platform"]}, [True, True]
    ordered = frame.assign(**keys).sort_values(["_k", "_n"], ascending=ascending, kind="stable")
    return ordered.drop(columns=["_k", "_n"])


def apply(frame: pd.DataFrame, spec: FilterSpec) -> pd.DataFrame:
    """The rows the spec shows, in its order, re-indexed 0..n-1 (so a table selection is a position)."""
    mask = search_mask(frame, spec.query)
    if spec.categories:
        mask &= frame["category"].isin(spec.categories)
    if spec.statuses:
        mask &= frame["status"].isin(spec.statuses)
    if spec.authkit is not None:
        mask &= frame["authkit"] == spec.authkit
    if spec.oauth is not None:
        mask &= frame["oauth"] == spec.oauth
    return _sorted(frame[mask], spec.sort).reset_index(drop=True)


def categories(frame: pd.DataFrame) -> list[str]:
    """The categories present, alphabetically, "Uncategorized" last."""
    present = set(frame["category"]) if not frame.empty else set()
    return sorted(present - {UNCATEGORIZED}, key=str.casefold) + ([UNCATEGORIZED] if UNCATEGORIZED in present else [])


def statuses(frame: pd.DataFrame) -> list[str]:
    """Pica's statuses in their documented order, then any other status the catalog carries."""
    present = set(frame["status"]) if not frame.empty else set()
    return list(CONNECTOR_STATUSES) + sorted(present - set(CONNECTOR_STATUSES))


# --- coverage --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coverage:
    connectors: int
    authkit_enabled: int
    used: int  # connectors with at least one stored connection
    connections: int  # stored connections on these connectors
    by_category: pd.DataFrame = field(repr=False)  # category, AuthKit-enabled, Not enabled, total
    most_used: pd.DataFrame = field(repr=False)  # name, platform, connections (descending), share
    unused: pd.DataFrame = field(repr=False)  # connectors with no connection, by name

    @property
    def authkit_share(self) -> float:
        return self.authkit_enabled / self.connectors if self.connectors else 0.0

    @property
    def unused_count(self) -> int:
        return self.connectors - self.used


def coverage(frame: pd.DataFrame, top: int = 10) -> Coverage:
    """Connectors per category (split by AuthKit), the AuthKit-enabled share, and usage of the given rows."""
    enabled = int(frame["authkit"].sum())
    grouped = (frame.assign(enabled=frame["authkit"].astype(int), other=(~frame["authkit"]).astype(int))
               .groupby("category", sort=False)[["enabled", "other"]].sum())
    grouped["total"] = grouped["enabled"] + grouped["other"]
    grouped = (grouped.reset_index()
               .assign(_c=lambda f: f["category"].str.casefold())
               .sort_values(["total", "_c"], ascending=[False, True], kind="stable")
               .drop(columns="_c")
               .rename(columns={"enabled": "AuthKit-enabled", "other": "Not enabled"})
               .reset_index(drop=True))
    used = frame[frame["connections"] > 0]
    total_connections = int(frame["connections"].sum())
    most = (used.assign(_n=used["name"].str.casefold())
            .sort_values(["connections", "_n"], ascending=[False, True], kind="stable")
            .head(top)[["name", "platform", "connections"]].reset_index(drop=True))
    most["share"] = most["connections"] / total_connections if total_connections else 0.0
    unused = (frame[frame["connections"] == 0]
              .assign(_n=lambda f: f["name"].str.casefold()).sort_values("_n", kind="stable")
              [["name", "platform", "category", "authkit"]].reset_index(drop=True))
    return Coverage(connectors=len(frame), authkit_enabled=enabled, used=len(used), connections=total_connections,
                    by_category=grouped, most_used=most, unused=unused)


def unknown_platforms(usage: Mapping[str, int], frame: pd.DataFrame) -> dict[str, int]:
    """Platforms with stored connections that the catalog does not list (renamed or withdrawn connectors)."""
    known = set(frame["platform"])
    return {platform: count for platform, count in sorted(usage.items()) if platform not in known and count}


# --- export ---------------------------------------------------------------------------------------------
def to_csv(frame: pd.DataFrame, *, synced: bool = True) -> bytes:
    """The table as shown (same rows and order; its columns bar the logo's address, this dashboard's, which led
    every row) as UTF-8 CSV; before any fleet sync (`synced`), its connections left empty: nothing is known of
    them, and 0 says none."""
    frame = frame.drop(columns=["logo"])
    if not synced:
        frame = frame.assign(connections=None)
    return exports.csv_file(exports.frame_csv(frame))


# --- actions ---------------------------------------------------------------------------------------------
def action_frame(hits: Iterable[ActionHit]) -> pd.DataFrame:
    return pd.DataFrame([{"title": h.title, "method": (h.method or "").upper(), "path": h.path, "id": h.system_id}
                         for h in hits], columns=["title", "method", "path", "id"])


def filter_actions(frame: pd.DataFrame, query: str) -> pd.DataFrame:
    """Actions whose title, method or path contains every word of the query (case-insensitive)."""
    return frame[_every_word(frame, ("title", "method", "path"), query)].reset_index(drop=True)
