"""Fleet health: sync every connection of the account, then see what is broken, oldest first."""

import time
from datetime import timedelta

import pandas as pd
import streamlit as st

from pica_core.connections_view import Lookup, fleet_csv
from pica_core.health import attention_summary, describe_transition
from pica_core.models import STATES
from pica_core.store import utcnow
from pica_core.ui import context, data, fleet_ui
from pica_core.ui.layout import (
    ago,
    app_base,
    csv_download,
    keep_widgets,
    public_url,
    safe_fragment,
    state_label,
    state_metric_label,
    style_states,
    when_column,
)

settings = context.settings()
store = context.store(settings)
env = settings.environment

st.title("Fleet health")
names = data.platform_names(settings)
base = app_base()  # links in tables stay inside the app, whatever path it is served under

own = fleet_ui.own_sync()  # this session's, on its own thread: followed here, wherever the reader went
last = fleet_ui.latest_run(store, env)
outcome = fleet_ui.pop_outcome()
if own is not None:
    fleet_ui.follow_own()
else:
    # Resume only where it fetches less than Sync now: before page 1 arrived (a key refused, say), it is a new sync.
    resumable = last is not None and last.status not in ("running", "complete") and last.pages_total > 0
    fleet_ui.status(store, env, last, reported=getattr(outcome, "run_id", None) == getattr(last, "id", None))
    # Each as wide as its label, side by side, whatever the window; Sync now first, where it always is (a Resume
    # that appeared in its place, after a failed sync, would take the next click).
    buttons = st.container(horizontal=True)
    if buttons.button("Sync now", type="secondary" if resumable else "primary", icon=":material/sync:",
                      help="Fetches every connection of the account again."):
        fleet_ui.start_own_sync(settings, store)
    # A Resume before the rate limit the sync met lifts meets it again (and spends it for every caller): said, and
    # toned down until then, as the triage's button is.
    waits = fleet_ui.resume_waits(last) if resumable else None
    if resumable and buttons.button("Resume" + (f" (after {waits:%H:%M:%S} UTC)" if waits else ""),
                                    type="tertiary" if waits else "primary", icon=":material/replay:",
                                    help="Pica's rate limit lifts then: asking sooner meets it again." if waits else
                                    "Fetches only what the last sync did not store."):
        fleet_ui.start_own_sync(settings, store, resume=last.id)
fleet_ui.show_outcome(outcome)
if settings.sandbox:  # the command has no embedded sandbox: it must be pointed at this one
    sandbox_api = public_url(settings.api_url, settings)
    st.caption(f"The same sync runs on a schedule as `.venv/bin/python -m pica_core sync`; against this sandbox, "
               f"with `PICA_API_URL={sandbox_api}` and no `PICA_SECRET_KEY` (README, The sandbox).")
else:
    st.caption("The same sync runs on a schedule as `.venv/bin/python -m pica_core sync` (`make sync`).")

keep_widgets(["auto-refresh"])  # a reader who turned it on finds it on after a look at another page
auto = st.toggle("Auto-refresh this page every 30 s", key="auto-refresh",
                 help="Re-reads the dashboard's database (no Pica calls); run syncs on a schedule to keep it fresh.")
st.session_state["fleet-read"] = time.monotonic()


@safe_fragment(run_every=30 if auto else None)
def refresh() -> None:
    """Its timed runs read the whole page again: the status, counts, charts, tabs and lists move together."""
    if time.monotonic() - st.session_state["fleet-read"] >= 29:  # not the page's own run of it
        st.rerun(scope="app")


refresh()


def overview() -> None:
    counts = store.state_counts(env)
    total = sum(counts.values())
    complete = store.last_sync(env, statuses=("complete",))
    if not total:  # an account with none, or whose every connection was deleted: not "nothing synced"
        st.info(f"No connections in the {env} environment, as the last complete sync (#{complete.id}, "
                f"{ago(complete.finished_at or complete.started_at)}) found it." if complete else "Nothing synced yet.",
                icon=":material/cloud_download:")
        return
    # A later sync that did not complete stored what it read all the same: its changes are in the counts too.
    later = store.last_sync(env, statuses=("partial", "failed", "interrupted", "running"), stored_rows=True)
    later = later if complete and later and later.id > complete.id else None
    since = f"what sync #{later.id} ({later.status}) and lookups stored since" if later else "lookups since"
    source = (f"as the last complete sync (#{complete.id}, {ago(complete.finished_at or complete.started_at)}) "
              f"found them, and {since}" if complete else "what lookups and unfinished syncs stored: no "
              "complete sync yet")
    st.markdown(f"**{attention_summary(counts)}** · {source}")
    for column, state in zip(st.columns(4), STATES):
        column.metric(state_metric_label(state), f"{counts.get(state, 0):,}")

    by_platform = pd.DataFrame(store.counts_by("platform", env), columns=["platform", "state", "connections"])
    by_platform["platform"] = by_platform["platform"].map(lambda p: names.get(p, p))
    worst = (by_platform[by_platform.state.isin(["failed", "degraded"])].groupby("platform")["connections"].sum()
             .sort_values(ascending=False, kind="stable"))
    busiest = by_platform.groupby("platform")["connections"].sum().sort_values(ascending=False, kind="stable")
    keep = list(dict.fromkeys([*worst.index[:10], *busiest.index[:15]]))[:20]  # in this order, top to bottom
    by_type = pd.DataFrame(store.counts_by("identity_type", env), columns=["identity type", "state", "connections"])
    by_type["identity type"] = by_type["identity type"].fillna("none")
    left, right = st.columns([3, 2])
    with left:
        platforms = by_platform["platform"].nunique()
        shown = f"{len(keep)} of {platforms:,}: " if len(keep) < platforms else ""
        st.markdown(f"**States by platform** ({shown}the most broken first, then the busiest)")
        st.altair_chart(fleet_ui.state_bars(by_platform[by_platform.platform.isin(keep)], "platform", order=keep))
    with right:
        st.markdown("**States by identity type** (colours as beside)")
        # No legend: a second one did not fit in this narrower column at 1024 px, and the colours are the same.
        st.altair_chart(fleet_ui.state_bars(by_type, "identity type", row_px=44, legend=False))


overview()


def opening(row) -> Lookup:
    """The Connections lookup that opens this stored connection."""
    return Lookup.opening(row.connection_key, identity=row.user_id, identity_type=row.identity_type,
                          connection_id=row.pica_id)


def shown(rows: list, total: int, which: str) -> None:
    """Says when a list holds only the first rows of more (the Export tab has them all)."""
    if len(rows) < total:
        st.caption(f"The {which} {len(rows):,} of {total:,}; the Export tab's CSV holds every connection.")


day_ago = utcnow() - timedelta(hours=24)
attention = store.attention(env)
changes = store.transitions_since(day_ago, env)
missing = store.not_seen(env)
totals = store.fleet_totals(day_ago, env)

# The counts beside the tabs, not in their labels: a label that changes sends the browser back to the first tab
# (after a sync, an auto-refresh). The key lets the browser put the reader's tab back when the tabs move (a sync's
# outcome shown above them, then gone). Tabs that remember the choice across pages (on_change) rerun the page on
# each click, and a download clicked during that rerun (Export's, at once) was lost.
st.markdown(f"**{totals['attention']:,}** failing or degraded · **{totals['changes']:,}** changed in the last "
            f"24 h · **{totals['not_seen']:,}** not seen in the last sync")
broken_tab, changed_tab, missing_tab, export_tab = st.tabs([
    "Failing and degraded", "Changed in the last 24 h", "Not seen in the last sync", "Export"], key="fleet-tabs")
with broken_tab:
    if attention:
        shown(attention, totals["attention"], "oldest")
        st.caption("Select a row to open its connection here; **open** opens it in another tab.")
        # A state the dashboard found on first sight began before then: its age is a lower bound.
        # Who to contact before when exactly: at 1024 px the identity sat past the "since" date, off screen.
        table = pd.DataFrame([{
            "open": opening(r).link(base), "state": state_label(r.state),
            "for": ("≥ " if r.since_is_lower_bound else "") + ago(r.state_since).replace(" ago", ""),
            "platform": names.get(r.platform, r.platform), "identity": r.user_id, "identity type": r.identity_type,
            "since": r.state_since, "created": r.created_at, "key": r.connection_key} for r in attention])
        # The state and the platform in full at 1280 px ("● degrad", "Microsoft Dynar…" when left to share).
        picked = st.dataframe(style_states(table), hide_index=True, width="stretch", column_config={
            "state": st.column_config.TextColumn("state", width=110),
            "platform": st.column_config.TextColumn("platform", width="medium"),
            "since": when_column("since"), "created": when_column("created"),
            "open": st.column_config.LinkColumn("details", display_text="open", width="small")},
            on_select="rerun", selection_mode="single-row", key=f"attention-{attention[0].id}-{len(attention)}")
        if picked.selection.rows:  # a row chosen: its connection, in this tab ("open" opens another)
            row = attention[picked.selection.rows[0]]
            st.switch_page("pages/connections.py", query_params=opening(row).to_query())
        if any(r.since_is_lower_bound for r in attention):
            st.caption("≥: already in that state when the dashboard first saw the connection, so for at least that "
                       "long (and at most since it was created). Oldest first; among those found at the same moment (a sync, "
                       "or its resume), failed before degraded.")
    elif last is None:
        st.caption("Nothing synced yet.")
    else:
        st.success("Nothing failed or degraded in the last sync.", icon=":material/check_circle:")
with changed_tab:
    if changes:
        shown(changes, totals["changes"], "latest")
        st.dataframe(pd.DataFrame([{
            "open": Lookup(key=t.connection_key).link(base), "when": t.at,
            "change": describe_transition(t.from_state, t.to_state),
            "platform": names.get(t.platform, t.platform), "identity": t.user_id, "seen by": t.source,
            "key": t.connection_key} for t in changes]), hide_index=True, width="stretch", column_config={
            "when": when_column("when"),
            "open": st.column_config.LinkColumn("details", display_text="open", width="small")})
    else:
        st.caption("No state changed in the last 24 hours.")
with missing_tab:
    if missing:
        shown(missing, totals["not_seen"], "longest gone")
        st.caption("Stored before but absent from the last complete sync (and not seen since): deleted in Pica or "
                   "moved to another environment. They are left out of the counts above.")
        st.dataframe(style_states(pd.DataFrame([{
            "platform": names.get(r.platform, r.platform), "identity": r.user_id, "last state": state_label(r.state),
            "last seen": r.last_seen_at, "key": r.connection_key} for r in missing]), "last state"),
            hide_index=True, width="stretch", column_config={"last seen": when_column("last seen")})
    else:
        st.caption("Every stored connection was seen in the last complete sync or since.")
with export_tab:
    # Built when clicked, not on every run of the page: 50,000 connections take about a second.
    csv_download(f"Download every stored connection ({store.fleet_size(env):,}, CSV)",
                 lambda: fleet_csv(store.fleet_export(env), names), "fleet.csv")
    if totals["not_seen"]:
        st.caption(f"With the {totals['not_seen']:,} not seen in the last sync, which the counts above leave out.")
