"""The Catalog page's widgets: the filter bar kept in the URL, the connector table, a connector's detail and
the coverage panel. The logic they show lives in pica_core.catalog_view; text from the API reaches the page
only through table cells, widget options or `plain()` (escaped Markdown), never as HTML."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st

from .. import catalog_view as cv
from ..config import Settings
from ..errors import PicaError
from ..models import Connector
from ..text import count
from . import data
from .layout import selection_table, show_error

# Widget keys, prefixed so that no other page's state can collide with them.
K_QUERY, K_CATEGORY, K_STATUS = "catalog.q", "catalog.category", "catalog.status"
K_AUTHKIT, K_OAUTH, K_SORT = "catalog.authkit", "catalog.oauth", "catalog.sort"
K_SELECTED = "catalog.selected"  # platform id of the open detail (set by the table, or by the URL)
K_URL_SPEC = "catalog.url_spec"  # the spec this session last read from or wrote to the URL
K_DROPPED = "catalog.dropped"
K_KEPT = "catalog.kept"  # the page's query as it last wrote it, for a return by the sidebar

AUTHKIT_LABELS = {"yes": "Enabled", "no": "Not enabled"}
OAUTH_LABELS = {"yes": "OAuth", "no": "No OAuth"}
ROW_HEIGHT = 35
CHART_CATEGORIES = 12  # bars in the coverage chart (the largest categories); a table lists them all


def _table_height(rows: int, cap: int) -> int:
    """Just tall enough for the rows (header included), at most `cap` pixels: short lists stay compact."""
    return min(cap, ROW_HEIGHT * (max(1, rows) + 1) + 3)


# --- the URL ---------------------------------------------------------------------------------------------
def url_params() -> dict[str, list[str]]:
    """The page's own query parameters, every value of each (repeated keys are lists)."""
    return {name: st.query_params.get_all(name) for name in cv.PARAMS if name in st.query_params}


def load_url_into_widgets(frame: pd.DataFrame) -> None:
    """Read on load: when the URL holds a spec this session did not write (a shared link, the first visit, the
    sidebar's clean URL, the browser's back button), it becomes the widgets' state."""
    kept = st.session_state.get(K_KEPT)
    if kept and not url_params():  # the sidebar's link carries no query: this session's last view comes back
        for name, values in kept.items():
            st.query_params[name] = values
    url_spec = cv.FilterSpec.from_params(url_params())
    if st.session_state.get(K_URL_SPEC) == url_spec and K_SORT in st.session_state:
        return  # the widgets hold it already (another page's run drops them)
    spec, dropped = url_spec.restricted_to(cv.categories(frame), cv.statuses(frame))
    dropped += cv.FilterSpec.unread(url_params())
    params = spec.to_params()  # the segmented controls hold the URL's "yes"/"no"
    st.session_state.update({
        K_QUERY: spec.query, K_CATEGORY: list(spec.categories), K_STATUS: list(spec.statuses),
        K_AUTHKIT: params.get(cv.PARAM_AUTHKIT), K_OAUTH: params.get(cv.PARAM_OAUTH), K_SORT: spec.sort,
        K_SELECTED: spec.selected, K_DROPPED: dropped, K_URL_SPEC: url_spec,
    })


def spec_from_widgets() -> cv.FilterSpec:
    """The widgets' state as a spec, normalised exactly as a URL would be (so it round-trips)."""
    state = st.session_state
    params = {cv.PARAM_QUERY: state.get(K_QUERY) or "", cv.PARAM_CATEGORY: state.get(K_CATEGORY) or [],
              cv.PARAM_STATUS: state.get(K_STATUS) or [], cv.PARAM_AUTHKIT: state.get(K_AUTHKIT) or "",
              cv.PARAM_OAUTH: state.get(K_OAUTH) or "", cv.PARAM_SORT: state.get(K_SORT) or cv.DEFAULT_SORT,
              cv.PARAM_SELECTED: state.get(K_SELECTED) or ""}
    return cv.FilterSpec.from_params(params)


def write_url(spec: cv.FilterSpec) -> None:
    """Write on change: the URL always shows the current view (other parameters are left alone)."""
    wanted = spec.to_params()
    current = url_params()
    for name in cv.PARAMS:
        value = wanted.get(name)
        as_list = [value] if isinstance(value, str) else value
        if as_list is None:
            if name in current:
                del st.query_params[name]
        elif current.get(name) != as_list:
            st.query_params[name] = value
    st.session_state[K_URL_SPEC] = spec
    st.session_state[K_KEPT] = url_params()  # a view cleared by hand stays cleared


# --- the filter bar --------------------------------------------------------------------------------------
def filter_bar(frame: pd.DataFrame) -> cv.FilterSpec:
    """Search first, then the filters in a row; returns the spec the widgets now hold."""
    # Rows that wrap rather than columns that cut: at 1024 px fixed columns hid a status pill ("Not available")
    # and cut labels short ("Name (A→Z", "Not", "N").
    search, sort = st.columns([5, 2], vertical_alignment="bottom")
    search.text_input("Search connectors", key=K_QUERY, placeholder="Search by name, platform id or description",
                      icon=":material/search:", label_visibility="collapsed")
    sort.selectbox("Sort by", list(cv.SORTS), key=K_SORT, format_func=cv.SORTS.get, label_visibility="collapsed")
    filters = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
    filters.multiselect("Category", cv.categories(frame), key=K_CATEGORY, placeholder="Any category",
                        width=340)  # two or three chosen categories in view: 240 px showed one and a sliver
    filters.pills("Status", cv.statuses(frame), key=K_STATUS, selection_mode="multi",
                 format_func=lambda s: cv.STATUS_LABELS.get(s, s))
    filters.segmented_control("AuthKit", list(AUTHKIT_LABELS), key=K_AUTHKIT, format_func=AUTHKIT_LABELS.get,
                              help="Whether the connector is switched on for AuthKit in this environment")
    filters.segmented_control("Auth", list(OAUTH_LABELS), key=K_OAUTH, format_func=OAUTH_LABELS.get,
                            help="Whether connecting goes through an OAuth consent screen")
    dropped = st.session_state.pop(K_DROPPED, None)
    if dropped:
        # A warning, as on Connections: a reader of a mistyped link believes the view is filtered as it asked.
        st.warning(f"The link asked for {', '.join(cv.plain(d) for d in dropped)}, which this catalog does not "
                   "know: ignored.", icon=":material/link_off:")
    return spec_from_widgets()


# --- the table -------------------------------------------------------------------------------------------
def _column_config(frame: pd.DataFrame) -> dict:
    most = int(frame["connections"].max()) if not frame.empty else 0
    return {
        "logo": st.column_config.ImageColumn(" ", width=36),
        "name": st.column_config.TextColumn("Connector", width=150),
        "platform": st.column_config.TextColumn("Platform id", width=140),
        "category": st.column_config.TextColumn("Category", width=140),
        "status": st.column_config.SelectboxColumn("Status", options=cv.statuses(frame), width=70,
                                                   format_func=lambda s: cv.STATUS_LABELS.get(s, s)),
        "authkit": st.column_config.CheckboxColumn("AuthKit", width=64, help="Enabled for AuthKit"),
        "oauth": st.column_config.CheckboxColumn("OAuth", width=60),
        "actions": st.column_config.NumberColumn("Actions", format="%d", width=64,
                                                 help="Number of actions (Pica's `tools` count)"),
        "connections": st.column_config.ProgressColumn("Connections", format="%d", min_value=0,
                                                       max_value=max(1, most), width=120,
                                                       help="Connections in the stored fleet (last sync)"),
        "description": st.column_config.TextColumn("Description", width="large"),
    }


def clear_filters() -> None:
    """The search and every filter back to none (the sort stays): a button's callback, before the widgets draw."""
    st.session_state.update({K_QUERY: "", K_CATEGORY: [], K_STATUS: [], K_AUTHKIT: None, K_OAUTH: None})


def connector_table(shown: pd.DataFrame, selected: str, *, synced: bool = True) -> str:
    """The filtered table. Selecting a row opens its detail; returns the platform id now selected ("" = none).
    Before any fleet sync (`synced`), without its Connections: a column of zeros read as nothing used."""
    if shown.empty:  # an empty grid says nothing of why
        st.info("No connector matches the search and filters.", icon=":material/search_off:")
        st.button("Clear the search and filters", on_click=clear_filters, icon=":material/filter_alt_off:")
        return selected  # an open detail stays open, as when the filters only hide its row
    selected = selection_table(shown, shown["platform"], selected, name="catalog.table", hide_index=True,
                               column_config={**_column_config(shown), **({} if synced else {"connections": None})},
                               height=_table_height(len(shown), 493),
                               row_height=ROW_HEIGHT)
    st.session_state[K_SELECTED] = selected
    return selected


# --- a connector's detail --------------------------------------------------------------------------------
def _badges(connector: Connector, enabled: bool) -> str:
    status = cv.STATUS_LABELS.get(connector.status, cv.plain(connector.status))
    color = {"generally_available": "green", "beta": "orange", "alpha": "violet"}.get(connector.status, "gray")
    parts = [f":{color}-badge[{status}]",
             ":blue-badge[:material/key: OAuth]" if connector.oauth else ":gray-badge[No OAuth]",
             ":green-badge[:material/check: AuthKit]" if enabled else ":gray-badge[Not in AuthKit]"]
    return " ".join(parts)


def connector_detail(settings: Settings, connector: Connector, *, enabled: bool, connections: int | None,
                     can_connect: bool, can_console: bool) -> None:
    with st.container(border=True):
        head, links = st.columns([3, 2], vertical_alignment="top")
        with head:
            st.subheader(cv.plain(connector.name), anchor=False)
            st.markdown(_badges(connector, enabled))
            st.markdown(cv.plain(connector.description) or "_No description._")
        with links:
            if can_connect:
                # AuthKit only offers the integrations switched on for it: the link waits for that.
                st.page_link("pages/connect.py", label=f"Connect {cv.plain(connector.name)}", icon=":material/add_link:",
                             query_params={"connector": connector.name}, disabled=not enabled,
                             help=None if enabled else "Not enabled for AuthKit: switch it on in Pica's dashboard "
                                                       "to connect it.")
            if can_console:
                st.page_link("pages/console.py", label="Try it in the console", icon=":material/terminal:",
                             query_params={"platform": connector.platform})
            if not (can_connect or can_console):
                st.caption("Connecting and the console need the operator or engineer role.")
        facts = st.columns(5)
        for column, (label, value) in zip(facts, (
                ("Platform id", connector.platform), ("Key", connector.key or "—"),
                ("Version", connector.version or "—"), ("Platform version", connector.platform_version or "—"),
                ("Connections", "— (no fleet sync yet)" if connections is None else str(connections)))):
            column.caption(label)
            column.markdown(f"**{cv.plain(value)}**")
        actions_panel(settings, connector)


def actions_panel(settings: Settings, connector: Connector) -> None:
    """The connector's actions (title, method, path), searchable."""
    try:
        everything = cv.action_frame(data.actions(settings, connector.platform))
    except PicaError as exc:
        show_error(exc, what="Actions")
        return
    query = st.text_input("Search actions", key=f"catalog.actions.{connector.platform}",
                          placeholder="Search actions by title, method or path", icon=":material/search:",
                          label_visibility="collapsed", disabled=everything.empty)
    if everything.empty:
        st.caption("Pica lists no actions for this connector.")
        return
    truncated = len(everything) >= data.ACTIONS_LIMIT
    if query.strip() and truncated:
        # Only part of the list came back: ask Pica's search, which sees every action (cached per query).
        try:
            hits = cv.action_frame(data.actions(settings, connector.platform, query))
        except PicaError as exc:
            show_error(exc, what="Action search")
            return
    else:
        hits = cv.filter_actions(everything, query)
    shown_of = f"{len(hits)} of {connector.tools or len(everything)}" if query.strip() else f"{len(hits)}"
    st.caption(f"{shown_of} actions" + (" (the first ones Pica returned: search to find others)"
                                         if truncated and not query.strip() else ""))
    st.dataframe(hits, hide_index=True, height=_table_height(len(hits), 353), column_config={
        "title": st.column_config.TextColumn("Action", width="large"),
        "method": st.column_config.TextColumn("Method", width="small"),
        "path": st.column_config.TextColumn("Path", width="large"),
        "id": st.column_config.TextColumn("Action id", width="medium"),
    })


# --- coverage --------------------------------------------------------------------------------------------
def category_chart(by_category: pd.DataFrame):
    """Horizontal bars, one per category (largest first), split into AuthKit-enabled and not."""
    import altair as alt

    order = by_category["category"].tolist()
    long = by_category.melt(id_vars=["category", "total"], value_vars=["AuthKit-enabled", "Not enabled"],
                            var_name="AuthKit", value_name="connectors")
    return (alt.Chart(long).mark_bar().encode(
        x=alt.X("connectors:Q", stack="zero", title=None, axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("category:N", sort=order, title=None, axis=alt.Axis(labelLimit=160)),
        color=alt.Color("AuthKit:N", scale=alt.Scale(domain=["AuthKit-enabled", "Not enabled"],
                                                       range=["#16a34a", "#cbd5e1"]),
                        legend=alt.Legend(orient="bottom", title=None)),
        order=alt.Order("AuthKit:N", sort="ascending"),
        tooltip=["category:N", "AuthKit:N", "connectors:Q", alt.Tooltip("total:Q", title="all connectors")],
    ))


def coverage_panel(coverage: cv.Coverage, *, whole_catalog: bool, synced: bool,
                   unknown: Mapping[str, int]) -> None:
    scope = "the whole catalog" if whole_catalog else f"the {count(coverage.connectors, 'connector')} shown"
    st.caption(f"Coverage of {scope}. Usage counts connections in the stored fleet (the last fleet sync).")
    # Side by side while they fit, then wrapped: four columns cut "Without connec…" and "720 connecti…" at 800 px.
    row = st.container(horizontal=True, gap="medium")
    a, b, c, d = (row.container(width=170) for _ in range(4))
    a.metric("Connectors", coverage.connectors)
    b.metric("AuthKit-enabled", coverage.authkit_enabled, f"{coverage.authkit_share:.0%}", delta_color="off",
             delta_arrow="off")
    if synced:
        c.metric("In use", coverage.used, count(coverage.connections, "connection"), delta_color="off",
                 delta_arrow="off")
        d.metric("Without connections", coverage.unused_count)
    else:  # nothing known of usage: 0 in use and all without read as a fact
        c.metric("In use", "—", "no fleet sync yet", delta_color="off", delta_arrow="off")
        d.metric("Without connections", "—")
        st.info("Usage comes from the stored fleet, and no fleet sync has run yet.", icon=":material/sync:")
        st.page_link("pages/fleet.py", label="Sync the fleet on Fleet health", icon=":material/cloud_download:")
    # One under the other: side by side, the table's Share was cut at 1280 px and off the table at 1024.
    chart, usage = st.container(), st.container()
    with chart:
        st.markdown("**Connectors per category**")
        if coverage.by_category.empty:
            st.caption("No connectors.")
        else:
            by_category = coverage.by_category
            # The chart sizes itself (a band per category); st.altair_chart's height= would squeeze the labels.
            st.altair_chart(category_chart(by_category.head(CHART_CATEGORIES)), width="stretch")
            rest = by_category.iloc[CHART_CATEGORIES:]
            if not rest.empty:
                st.caption(f"The {CHART_CATEGORIES} largest categories; {len(rest)} more hold "
                           f"{int(rest['total'].sum())} connectors.")
                with st.expander(f"All {len(by_category)} categories"):
                    st.dataframe(by_category, hide_index=True, column_config={
                        "category": st.column_config.TextColumn("Category"),
                        "total": st.column_config.NumberColumn("Connectors", format="%d")})
    with usage:
        st.markdown("**Most used**")
        if coverage.most_used.empty:
            st.caption("No connections stored for these connectors.")
        else:
            # The counts narrow, the connector's name the rest of the width.
            st.dataframe(coverage.most_used, hide_index=True, width="stretch", column_config={
                "name": st.column_config.TextColumn("Connector"),
                "platform": None,
                "connections": st.column_config.NumberColumn("Connections", format="%d", width=90),
                "share": st.column_config.ProgressColumn("Share", format="percent", min_value=0, max_value=1,
                                                         width=90),
            })
        with st.expander(f"{count(coverage.unused_count, 'connector')} with no connection"):
            st.dataframe(coverage.unused, hide_index=True, column_config={
                "name": st.column_config.TextColumn("Connector"),
                "platform": st.column_config.TextColumn("Platform id"),
                "category": st.column_config.TextColumn("Category"),
                "authkit": st.column_config.CheckboxColumn("AuthKit"),
            })
        if unknown:
            st.caption(f":material/help: {sum(unknown.values())} stored connections are on platforms the catalog "
                       f"does not list: {', '.join(cv.plain(p) for p in list(unknown)[:5])}"
                       + ("…" if len(unknown) > 5 else ""))


def selection_note(selected: str) -> None:
    st.caption(f":material/help: No connector with the platform id {cv.plain(selected)} in the catalog.")
