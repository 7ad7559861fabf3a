"""Catalog: what Pica can connect, what is switched on for AuthKit, and what is actually used.

The filters live in the URL (`?q=…&category=…&status=…&authkit=yes&oauth=no&sort=-actions&selected=gmail`),
so a filtered view, or an open connector, can be shared as a link.
"""

from dataclasses import replace

import streamlit as st

from pica_core import catalog_view as cv
from pica_core.ui import catalog_ui as ui
from pica_core.ui import context, data
from pica_core.ui.layout import ago, drop_unread_params, public_url, show_fetch_problem

settings = context.settings()
principal = context.principal(settings)

st.title("Connector catalog")
head = st.container(horizontal=True, vertical_alignment="center")  # the button as wide as its label, whatever the window
head.caption("What Pica can connect, what is switched on for AuthKit, and what this account actually uses.",
             width="content")
head.button("Refresh", icon=":material/refresh:", on_click=data.refresh_catalog,
            help=f"Fetch the catalog from Pica again (it is cached for {settings.catalog_ttl_seconds // 60} min)")

with st.spinner("Reading the catalog from Pica…", show_time=True):  # a cold read can take its whole timeout
    fetched = data.catalog(settings)
show_fetch_problem(fetched, "the catalog", again="Press Refresh to try again.")
if fetched.value is None:
    st.caption("Nothing was loaded earlier to fall back on: once the above is dealt with, press Refresh.")
    st.stop()

connectors, enabled = fetched.value
store = context.store(settings)
usage = store.usage_by_platform(settings.environment)  # connections per platform: a GROUP BY on the local store
synced = bool(usage) or store.last_sync(settings.environment, statuses=("complete",)) is not None
frame = cv.connector_frame(connectors, enabled, usage, image_url=lambda url: public_url(url, settings))

drop_unread_params(cv.PARAMS)
ui.load_url_into_widgets(frame)
spec = ui.filter_bar(frame)
shown = cv.apply(frame, spec)

counts, export = st.columns([4, 1], vertical_alignment="center")
counts.markdown(f"Showing **{len(shown)}** of **{len(frame)}** connectors"
                + ("" if fetched.stale else f" · fetched {ago(fetched.fetched_at)}"))
export.download_button("CSV", cv.to_csv(shown, synced=synced), file_name="pica-connectors.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore", width="stretch", disabled=shown.empty,
                       help="The table as filtered and sorted")
spec = replace(spec, selected=ui.connector_table(shown, spec.selected, synced=synced))
ui.write_url(spec)

by_platform = {c.platform: c for c in connectors}
if spec.selected in by_platform:
    ui.connector_detail(settings, by_platform[spec.selected], enabled=spec.selected in enabled,
                        connections=usage.get(spec.selected, 0) if synced else None, can_connect=principal.sees("connect"),
                        can_console=principal.sees("console"))
elif spec.selected:
    ui.selection_note(spec.selected)
elif not shown.empty:
    st.caption(":material/touch_app: Select a row to see the connector's actions and links.")

st.subheader("Coverage", anchor=False)
if shown.empty:  # of nothing: clear the filters above to see it
    st.caption("No connector matches the filters, so there is nothing to count.")
else:
    ui.coverage_panel(cv.coverage(shown), whole_catalog=not spec.filtered,
                      synced=synced,
                      unknown=cv.unknown_platforms(usage, frame))
