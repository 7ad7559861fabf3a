"""Overview: which Pica this is, whether it answers, and the headline numbers."""

import time

import pandas as pd
import streamlit as st

from pica_core.health import NEEDS_ATTENTION, attention_summary, state_columns
from pica_core.models import STATES
from pica_core.sync import SyncBusy
from pica_core.text import count, plain
from pica_core.ui import context, data, fleet_ui
from pica_core.ui.layout import ago, show_fetch_problem

settings = context.settings()
store = context.store(settings)

st.title("Overview")
st.caption("Pica integration ops: connections, connectors and actions of this Pica account at a glance.")

mode, reach, sync_col = st.columns(3)
with mode, st.container(border=True):
    st.markdown("**Mode**")
    if settings.sandbox:
        st.markdown(":blue-badge[:material/science: Sandbox] demo data, no Pica account needed")
    else:
        st.markdown(f":green-badge[:material/cloud: Live] `{settings.api_url}` · {settings.environment} key")
with reach, st.container(border=True):
    st.markdown("**Pica**")
    # Filled last: a Pica that hangs kept every number below off the page until its timeout, the database's too.
    reach_slot = st.empty()
    reach_slot.caption(":material/pending: Asking Pica…")
with sync_col, st.container(border=True):
    st.markdown("**Fleet sync**")
    last = store.last_sync(settings.environment)
    st.markdown(f"Last sync: **{ago(last.finished_at or last.started_at) if last else 'never'}**"
                + (f" · it saw {count(last.rows_seen, 'connection')}" if last else "")
                + (f" · :orange[{last.status}]" if last and last.status != "complete" else ""))
    if last and last.status not in ("complete", "running"):  # what went wrong, and Resume, are on Fleet health
        st.page_link("pages/fleet.py", label="Open Fleet health", icon=":material/sync_problem:",
                     help="What the sync missed, and Resume.")

# Sandbox mode shows data on first visit; live mode syncs when someone asks (it costs Pica calls).
if settings.sandbox and last is None:  # the run read just above
    try:
        if store.sync_in_progress(settings.environment):  # started by a visit here that moved on, or elsewhere
            raise SyncBusy
        fleet_ui.run_sync(settings, store, label="Loading the sandbox's connections…")
        st.rerun()
    except SyncBusy:  # it goes on on its own thread: its connections are there on the next visit
        st.info("The sandbox's connections are loading: reload in a moment.", icon=":material/sync:")

counts = store.state_counts(settings.environment)
total = sum(counts.values())

st.subheader("Headline numbers")
# Side by side while they fit, then on a second row: four columns at 1024 px cut every label ("Connectors in the c…").
row = st.container(horizontal=True, gap="medium")
c1, c2, c3, c4 = (row.container(width=210) for _ in range(4))
catalog_problem = st.container()  # under the numbers; filled once Pica answered, after the database's numbers
complete = store.last_sync(settings.environment, statuses=("complete",))
# Beside the sync card's "it saw N": lookups and Connect since make the two differ, which read as a mismatch.
found = store.found_since(complete.finished_at, settings.environment) if complete and complete.finished_at else 0
c3.metric("Connections stored", f"{total:,}", f"{found:,} found since the last sync" if found else None,
          delta_color="off", delta_arrow="off", help="In the dashboard's database: what the last complete sync and "
          "the lookups since have seen. Connections that sync no longer found are left out (Fleet health lists them).")
attention = sum(counts.get(s, 0) for s in NEEDS_ATTENTION)
if total or complete:  # an account with no connections: 0
    c4.metric("Need attention", f"{attention:,}", f"{attention / max(1, total):.0%} failed or degraded",
              delta_color="off", delta_arrow="off")
else:  # nothing known is not "0 need attention": that reads as all healthy
    c4.metric("Need attention", "—", "nothing synced yet", delta_color="off", delta_arrow="off")
    if last is None and not settings.sandbox:  # a failed sync has its own link above; the sandbox loads its own
        st.page_link("pages/fleet.py", label="Sync the fleet on Fleet health to see what needs attention",
                     icon=":material/cloud_download:")

if total:
    st.caption(attention_summary(counts))
    states, colors = state_columns(STATES)
    st.bar_chart(pd.DataFrame({state: [counts.get(state, 0)] for state in states}, index=["connections"]),
                 horizontal=True, height=160, color=colors, stack=True)

# A row that wraps, each link as wide as its label: two fixed columns cut the labels at 800 px.
links = st.container(horizontal=True, gap="medium")
links.page_link("pages/connections.py", label="Look up an end user's connections", icon=":material/person_search:")
links.page_link("pages/fleet.py", label="Fleet health: what is broken, oldest first", icon=":material/monitor_heart:")
links.page_link("pages/catalog.py", label="Connector catalog and coverage", icon=":material/apps:")
if context.principal(settings).sees("console"):
    links.page_link("pages/console.py", label="Test an action in the console", icon=":material/terminal:")

# What needs Pica, last: the catalog's numbers, then whether it answers.
catalog = data.catalog(settings)
if catalog.value:
    connectors, enabled = catalog.value
    c1.metric("Connectors in the catalog", len(connectors))
    c2.metric("Enabled in AuthKit", len(enabled), f"{len(enabled) / max(1, len(connectors)):.0%} of the catalog",
              delta_color="off", delta_arrow="off")  # a share, not a change
else:
    c1.metric("Connectors in the catalog", "—")
    c2.metric("Enabled in AuthKit", "—")
with catalog_problem:  # with the age of the numbers shown, when they are an earlier answer's
    show_fetch_problem(catalog, "the catalog")
answer, latency, error, asked_at = data.reachability(settings)
with reach_slot.container():
    if error is None and catalog.error is not None:  # it answers, but the catalog read failed: not all is well
        st.markdown(f":orange-badge[:material/warning: answering, with failures] answered in {latency:.0f} ms; "
                    "the catalog read failed (under the numbers)")
    elif error is None:
        st.markdown(f":green-badge[:material/check_circle: reachable] answered in {latency:.0f} ms")
    elif answer == "unreachable":
        st.markdown(":red-badge[:material/cloud_off: unreachable]")
    else:  # it answered: the key, the rate limit or Pica itself is the problem, not the network
        st.markdown(f":orange-badge[:material/warning: {answer}] answered in {latency:.0f} ms")
    if error is not None:  # remembered 30 s: "retry in 40 s" read 25 s later needs its age
        st.caption(plain(error) + (f" (asked {ago(asked_at)})" if time.time() - asked_at >= 5 else ""))
