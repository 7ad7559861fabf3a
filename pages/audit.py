"""Audit log (admins): every write made through the dashboard, who made it, on what, and how it went."""

import functools
from datetime import UTC, date, datetime, time

import pandas as pd
import streamlit as st

from pica_core.exports import audit_csv
from pica_core.text import count
from pica_core.ui import context
from pica_core.ui.layout import arrived, csv_download, drop_unread_params, keep_widgets, say_ignored, when_column

settings = context.settings()
store = context.store(settings)
principal = context.principal(settings)

st.title("Audit log")
st.caption("Connects, reconnects, tag edits, deletions, console calls other than GET and settings changes. "
           "Append-only; newest first.")

if not principal.can("audit"):  # the page is not in other roles' navigation; this guards direct use
    st.error(principal.why_not("audit"), icon=":material/lock:")
    st.stop()

ACTIONS = ["", "connect", "reconnect", "edit_tags", "delete", "console_call", "settings"]
OUTCOMES = ["", "ok", "error", "refused", "unknown"]
SHOWN = 1000  # the table's newest; the CSV holds every match
# URL parameter → widget key. The filters are in the URL (a view to share or bookmark) and kept across pages.
PARAMS = {"who": "audit-who", "action": "audit-action", "outcome": "audit-outcome", "since": "audit-since",
          "target": "audit-target"}


def read_url() -> list[str]:
    """The URL's filters into the widgets; the parameters it cannot use, named."""
    state, ignored = st.session_state, []
    for param, key in PARAMS.items():
        raw = st.query_params.get(param, "")
        if param == "since":
            try:
                state[key] = date.fromisoformat(raw) if raw else None
            except ValueError:
                state[key] = None
                ignored.append(f"since={raw[:40]}")
        elif param in ("action", "outcome"):
            known = ACTIONS if param == "action" else OUTCOMES
            state[key] = raw if raw in known else ""
            if raw not in known:
                ignored.append(f"{param}={raw[:40]}")
        else:
            state[key] = raw[:200]
    return ignored


unread = drop_unread_params(list(PARAMS), say=False)
WRITTEN = "audit-url"  # the filters this session last put in the URL
in_url = {param: st.query_params[param] for param in PARAMS if param in st.query_params}
# A link opened (its filters, not the ones this session had), or the browser's Back and Forward between this page's
# own entries (a URL that is not the one this page last wrote); otherwise the widgets hold the truth.
if in_url and (arrived() or in_url != st.session_state.get(WRITTEN, in_url)):
    ignored = read_url()
else:
    ignored = []
    keep_widgets(PARAMS.values())  # back from another page: the filters the reader had
say_ignored(unread, list(PARAMS), ignored, knows="this log")  # one line for both

filters = st.container(horizontal=True)  # a row that wraps: fixed columns cut "any" and the date at 1024 px
actor = filters.text_input("Who", placeholder="email", width=220, key=PARAMS["who"])
action = filters.selectbox("Action", ACTIONS, format_func=lambda a: a or "any", width=180, key=PARAMS["action"])
outcome = filters.selectbox("Outcome", OUTCOMES, format_func=lambda o: o or "any", width=130, key=PARAMS["outcome"])
since = filters.date_input("Since", value=None, width=160, key=PARAMS["since"])
target = filters.text_input("Target contains", placeholder="connection key, identity…", width=260,
                            key=PARAMS["target"])
shown_filters = {param: value for param, value in (
    ("who", actor.strip()), ("action", action), ("outcome", outcome), ("since", since.isoformat() if since else ""),
    ("target", target.strip())) if value}
if shown_filters != in_url:
    st.query_params.from_dict(shown_filters)
st.session_state[WRITTEN] = shown_filters

matching = functools.partial(
    store.audit_events, actor=actor.strip() or None, action=action or None, outcome=outcome or None,
    target=target.strip() or None, since=datetime.combine(since, time.min, tzinfo=UTC) if since else None)
events = matching(limit=SHOWN + 1)
if not events:
    filtered = any((actor.strip(), action, outcome, since, target.strip()))
    st.info("No audit events match." if filtered else "Nothing audited yet: writes made through the dashboard show "
            "here.", icon=":material/policy:")
else:
    cut = len(events) > SHOWN
    events = events[:SHOWN]
    # The detail before the target: a connection key is ~90 characters, and after it the detail sat off screen at
    # 1280 px.
    frame = pd.DataFrame([{"when": e.at, "who": e.actor, "action": e.action, "outcome": e.outcome,
                           "detail": e.detail, "target": e.target} for e in events])
    st.caption(f"The newest {SHOWN:,} events of more; the CSV holds every one that matches, and Since narrows the "
               "table." if cut else count(len(frame), "event"))
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "when": when_column("when"),
        "detail": st.column_config.JsonColumn("detail", width="large"),
    })
    # Every match, read when clicked (the table's newest 1,000 were all the CSV held, and it did not say)
    csv_download("Download CSV" + (" (every match)" if cut else ""), lambda: audit_csv(matching(limit=None)),
                 "audit-log.csv")
