"""Audit log (admins): every write made through the dashboard, who made it, on what, and how it went."""

from datetime import datetime, time, UTC

import pandas as pd
import streamlit as st

from pica_core.exports import audit_csv
from pica_core.text import count
from pica_core.ui import context
from pica_core.ui.layout import when_column

settings = context.settings()
store = context.store(settings)
principal = context.principal(settings)

st.title("Audit log")
st.caption("Connects, reconnects, tag edits, deletions, console calls other than GET and settings changes. "
           "Append-only; newest first.")

if not principal.can("audit"):  # the page is not in other roles' navigation; this guards direct use
    st.error(principal.why_not("audit"), icon=":material/lock:")
    st.stop()

filters = st.container(horizontal=True)  # a row that wraps: fixed columns cut "any" and the date at 1024 px
actor = filters.text_input("Who", placeholder="email", width=220)
action = filters.selectbox("Action", ["", "connect", "reconnect", "edit_tags", "delete", "console_call", "settings"],
                           format_func=lambda a: a or "any", width=180)
outcome = filters.selectbox("Outcome", ["", "ok", "error", "refused", "unknown"], format_func=lambda o: o or "any", width=130)
since = filters.date_input("Since", value=None, width=160)
target = filters.text_input("Target contains", placeholder="connection key, identity…", width=260)

events = store.audit_events(
    actor=actor.strip() or None, action=action or None, outcome=outcome or None, target=target.strip() or None,
    since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
)
if not events:
    st.info("No audit events match.", icon=":material/policy:")
else:
    # The detail before the target: a connection key is ~90 characters, and after it the detail sat off screen at
    # 1280 px.
    frame = pd.DataFrame([{"when": e.at, "who": e.actor, "action": e.action, "outcome": e.outcome,
                           "detail": e.detail, "target": e.target} for e in events])
    st.caption(count(len(frame), "event") + (" (the newest 1,000)" if len(frame) == 1000 else ""))
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "when": when_column("when"),
        "detail": st.column_config.JsonColumn("detail", width="large"),
    })
    st.download_button("Download CSV", audit_csv(events), file_name="audit-log.csv", mime="text/csv",
                       icon=":material/download:")
