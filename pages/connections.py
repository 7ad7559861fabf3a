"""Connections: look up an end user (or a key, or a platform), see every connection and its health."""

import functools
import hashlib
import time
from dataclasses import replace
from datetime import UTC, datetime

import streamlit as st

from pica_core.connections_view import (
    TRIAGE_SHOWN,
    URL_ALIASES,
    URL_PARAMS,
    alternative_chosen,
    MAX_BULK_IDENTITIES,
    Lookup,
    apply_filters,
    by_identity,
    connection_rows,
    connections_csv,
    in_its_letters,
    likely_meant,
    needing_attention,
    no_results_message,
    parse_bulk,
    pasted_identity,
    sort_for_attention,
    triage_csv,
    triage_failures,
    triage_rows,
    triage_summary,
)
from pica_core.errors import InvalidInputError
from pica_core.health import attention_summary, state_counts
from pica_core.models import IDENTITY_TYPES, STATES
from pica_core.text import count, plain
from pica_core.ui import context, data
from pica_core.ui.connections_ui import (
    TRIAGE_FAILURE,
    TRIAGE_JOB,
    TRIAGE_LATER,
    TRIAGE_LATER_BEFORE,
    TRIAGE_RESULTS,
    detail,
    follow_triage,
    own_triage,
    show_stored,
    start_triage,
    take_up_triage,
)
from pica_core.ui.layout import (
    ago,
    app_base,
    arrived,
    bring_into_view,
    chosen_in_place,
    csv_download,
    drop_unread_params,
    keep_widgets,
    public_url,
    selection_table,
    show_error,
    show_fetch_problem,
    state_label,
    state_metric_label,
    style_states,
    warn_unknown_identity_type,
    when_column,
)

settings = context.settings()
store = context.store(settings)
principal = context.principal(settings)

st.title("Connections")
st.caption("Who is connected to what, and what is broken. Deep link: `?identity=…&identityType=…`.")

catalog = data.catalog(settings).value
names = data.names_of(catalog)
logos = {c.platform: public_url(c.image, settings) for c in catalog[0]} if catalog else {}

# The sidebar's link carries no query: coming back to the page finds this session's last lookup (one cleared with
# an empty Look up stays cleared).
KEPT = "connections-query"
TAB = "connections-tab"  # the tab of the reader's last Look up or Triage, open again when they come back
OPEN_ONE = "connections-open-one"  # a new lookup (a link, a Look up): a key's one connection opens at once
ANSWER_IS_OLD = 5  # seconds: an answer cached longer says how old it is
FRESH = "connections-fresh"  # a Look up pressed: Pica is asked again, not answered from the cache
drop_unread_params(URL_PARAMS, URL_ALIASES)
if arrived() and st.query_params.to_dict():  # a link (the sidebar's carries no query): its lookup
    st.session_state[TAB] = "lookup"
    st.session_state[OPEN_ONE] = True
if st.query_params.to_dict():
    st.session_state[KEPT] = st.query_params.to_dict()
elif st.session_state.get(KEPT):
    st.query_params.from_dict(st.session_state[KEPT])

taken = take_up_triage(settings)
if taken and not taken.done.is_set() and not (arrived() and st.query_params.to_dict()):  # running: its tab
    st.session_state[TAB] = "bulk"  # (not over a link's lookup; one that has ended waits there: a new tab is
    # most often for a lookup)

# Tabs kept in the browser (a tab change that reran the page would stop a triage under way); `default` counts only
# when the page opens.
TABS = {"lookup": ":material/person_search: Look up", "bulk": ":material/checklist: Bulk triage"}
lookup_tab, bulk_tab = st.tabs(list(TABS.values()), default=TABS.get(st.session_state.get(TAB), TABS["lookup"]))

with lookup_tab:
    lookup = Lookup.from_query(st.query_params.to_dict()).platform_by_name(names)
    warn_unknown_identity_type(st.query_params.get("identityType") or st.query_params.get("identity_type"),
                               "looking up every type")
    if left_out := Lookup.left_out(st.query_params.to_dict()):
        st.warning(plain(f"The link's filters name {', '.join(left_out)}: left out. States are "
                         f"{', '.join(STATES)}; environments test and live."), icon=":material/link_off:")
    # New widgets after each Look up and for each lookup the URL holds (a link on this page): the form shows what
    # was looked up (a pasted row split, spaces trimmed), not what was typed, even for the same lookup again.
    round_ = st.session_state.setdefault("lookup-form-round", 0)
    form_id = f"{round_}-" + hashlib.blake2b(repr((lookup.identity, lookup.identity_type, lookup.platform,
                                                   lookup.key)).encode(), digest_size=6).hexdigest()
    with st.form("lookup", border=False):
        c1, c2, c3 = st.columns([3, 1.6, 2])  # at 1024 px a fourth column cut "project" to "proj…"
        identity = c1.text_input("Identity", value=lookup.identity, placeholder="usr_1a2b3c or ana@acme.io",
                                 key=f"lookup-identity-{form_id}")
        kinds = ["any", *IDENTITY_TYPES]
        identity_type = c2.selectbox("Identity type", kinds, index=kinds.index(lookup.identity_type or "any"),
                                     key=f"lookup-type-{form_id}")
        # The catalog's platforms by name, and one the link named that it lacks (kept, not dropped on Look up);
        # with no catalog to pick from, a platform id can be typed.
        platforms = sorted(set(names) | {lookup.platform} - {""}, key=lambda p: names.get(p, p).lower())
        platform = c3.selectbox("Platform", ["", *platforms], index=(platforms.index(lookup.platform) + 1)
                                if lookup.platform else 0, format_func=lambda p: names.get(p, p) or "any",
                                filter_mode="contains", accept_new_options=not names, key=f"lookup-platform-{form_id}")
        key = st.text_input("…or a connection key", value=lookup.key, placeholder="test::gmail::default::…|identity",
                            key=f"lookup-key-{form_id}")
        if st.form_submit_button("Look up", type="primary", icon=":material/search:"):
            st.session_state["lookup-form-round"], st.session_state[TAB] = round_ + 1, "lookup"
            st.session_state[OPEN_ONE] = st.session_state[FRESH] = True
            identity, pasted_type = pasted_identity(identity)  # a spreadsheet's row: its type wins
            chosen = Lookup(identity=identity.strip(), identity_type=pasted_type or (
                "" if identity_type == "any" else identity_type), platform=(platform or "").strip(), key=key.strip())
            chosen = alternative_chosen(lookup, chosen)
            st.query_params.from_dict(chosen.to_query())
            st.session_state[KEPT] = chosen.to_query()
            st.rerun()

    if st.session_state.get("deleted"):
        st.success(plain(st.session_state.pop("deleted")), icon=":material/delete:")

    if lookup.empty and lookup.identity_type:
        st.info(f"Identity type {lookup.identity_type} alone would list most of the account: add an identity or a "
                "platform, then **Look up**.", icon=":material/info:")
    elif lookup.empty and lookup.selected:  # Pica finds connections by identity, key or platform, not by id
        st.warning(f"The link names connection {plain(lookup.selected)} and nothing to find it by: Pica lists "
                   "connections by identity, key or platform. Enter one of them, then **Look up**.",
                   icon=":material/link_off:")
    elif lookup.empty:
        st.info("Enter an identity (with its type, or any), a connection key or a platform, then **Look up**.",
                icon=":material/info:")
    else:
        try:
            filters = lookup.filters()
        except InvalidInputError as exc:
            show_error(exc)
            filters = None
        # Said while Pica answers (the reads are cached without Streamlit's own spinner): a slow or hanging Pica
        # showed nothing, or the last lookup's results, faded, under the new identity.
        with st.spinner(plain(f"Looking up {lookup.describe(names)}…"), show_time=True):
            fresh = st.session_state.pop(FRESH, False)
            fetched = data.connections(settings, fresh=fresh, **filters) if filters is not None else None
        if fetched is not None:
            show_fetch_problem(fetched, "this lookup's connections")
            if fetched.value is not None and not fetched.stale and time.time() - fetched.fetched_at >= ANSWER_IS_OLD:
                st.caption(f"Pica's answer of {ago(fetched.fetched_at)}: **Look up** asks again.")
        # Pica could not be asked, and no answer of it is remembered: what the dashboard stored is all there is.
        if fetched is not None and fetched.value is None and (
                stored := store.stored_matching(environment=settings.environment, **filters)):
            show_stored(stored, names, f"**What the dashboard last stored for {plain(lookup.describe(names))}**, latest "
                                       "seen first (Pica could not be asked):")
        if fetched is not None and fetched.value is not None:
            connections = fetched.value
            # A key names one connection: its detail is what was asked for (Fleet's "open" links come this way).
            # Only for a new lookup, so that unselecting its row keeps it closed.
            if st.session_state.pop(OPEN_ONE, False) and lookup.key and not lookup.selected and len(connections) == 1:
                lookup = replace(lookup, selected=connections[0].id)
                st.query_params["connection"] = connections[0].id
            marker = (tuple(sorted(filters.items(), key=str)), fetched.fetched_at)
            if connections and st.session_state.get("stored-lookup") != marker:
                # Seen when Pica answered, which a cached answer predates: a sync since then is not undone.
                store.upsert_connections(connections, source="lookup",
                                         seen_at=datetime.fromtimestamp(fetched.fetched_at, UTC))
                st.session_state["stored-lookup"] = marker

            if not connections:
                others, same_letters = [], None
                if lookup.identity and (lookup.identity_type or lookup.platform):
                    others = data.connections(settings, identity=filters["identity"]).value or []
                lowered = lookup.identity.lower()
                if (not others and not lookup.key and lowered != lookup.identity  # of every type: the hint says which
                        and (found := data.connections(settings, identity=lowered).value)):
                    same_letters = (lowered, found)
                message, hint = no_results_message(lookup, environment=settings.environment, others=others,
                                                   names=names, same_letters=same_letters)
                st.warning(plain(message), icon=":material/search_off:")
                if lookup.key and not lookup.narrowed_key and (deleted := store.deletion(lookup.key)):
                    st.info(plain(f"It was deleted from this dashboard by {deleted.actor} on "
                                  f"{deleted.at.astimezone(UTC):%Y-%m-%d at %H:%M} UTC (the Audit log has it)."),
                            icon=":material/delete:")
                if same_letters:
                    st.page_link("pages/connections.py", label=plain(f"Look up {lowered}"), icon=":material/search:",
                                 query_params={k: v for k, v in in_its_letters(lookup, *same_letters).to_query().items()
                                               if v})
                elif meant := likely_meant(lookup):
                    st.page_link("pages/connections.py", label=plain(f"Look up {meant.describe(names)}"),
                                 icon=":material/search:", query_params=meant.to_query())
                platform = filters.get("platform")
                if platform and names and platform not in names:
                    st.caption(plain(f"{platform} is not a platform id of the catalog: ids look like gmail, "
                                     "google-drive or hubspot (the Catalog page lists them)."))
                st.caption(plain(hint))
            # "Since when?" for a connection deleted since it was seen: the dashboard's records still know it. Only
            # from Pica's own answer (a remembered one shown while Pica fails would call newer connections gone),
            # and only what was seen before that answer (a sync since may have found more).
            listed, answered = {c.key for c in connections}, datetime.fromtimestamp(fetched.fetched_at, UTC)
            gone = [] if fetched.stale else [
                s for s in store.stored_matching(environment=settings.environment, **filters)
                if s.connection_key not in listed and s.last_seen_at <= answered]
            gone_heading = (f"**Pica no longer lists {count(len(gone), 'connection')} the dashboard saw for this "
                            "lookup** (deleted, or no longer of this identity); as last seen:")
            if gone and not connections:
                show_stored(gone, names, gone_heading)
            if connections:
                counts = state_counts(c.state for c in connections)
                st.markdown(f"**{plain(lookup.describe(names))}** · {attention_summary(counts)}")
                for column, state in zip(st.columns(4), STATES):
                    column.metric(state_metric_label(state), f"{counts[state]:,}")

                f1, f2, f3 = st.columns(3)

                def clear_filters() -> None:
                    for param in ("state", "platforms", "environment"):
                        st.query_params.pop(param, None)

                def keep(name: str, param: str) -> None:
                    value = ",".join(st.session_state[name])
                    if value:
                        st.query_params[param] = value
                    else:
                        st.query_params.pop(param, None)

                # The URL holds the filters (a deep link, Back, a new lookup): the widgets show what it says.
                present = sorted({c.platform for c in connections})
                st.session_state["f-state"] = list(lookup.states)
                st.session_state["f-platform"] = [p for p in lookup.platforms if p in present]
                st.session_state["f-env"] = list(lookup.environments)
                f1.multiselect("State", STATES, key="f-state", on_change=keep, args=("f-state", "state"),
                               format_func=state_label)
                f2.multiselect("Platform", present, key="f-platform", on_change=keep, args=("f-platform", "platforms"),
                               format_func=lambda p: names.get(p, p))
                f3.multiselect("Environment", ["test", "live"], key="f-env", on_change=keep, args=("f-env", "environment"))

                # Filter by what the widgets show: a platform of the URL this identity has no connection on is dropped.
                shown = sort_for_attention(apply_filters(connections, replace(lookup, platforms=tuple(
                    st.session_state["f-platform"]))))
                stored = {row.connection_key: row for row in store.stored_connections([c.key for c in shown])}
                table = connection_rows(shown, stored, names, logos)
                # Columns every row shares (one identity, one environment) are said once, above the table.
                alike = [col for col in ("identity", "identity type", "environment")
                         if len(table) > 1 and table[col].nunique(dropna=False) == 1]
                shared = " · ".join(plain(f"{col} {table[col].iloc[0] or 'none'}") for col in alike)
                if not shown:  # an empty grid says nothing of why, and its CSV holds nothing
                    st.info(f"The filters hide all {count(len(connections), 'connection')} of this lookup.",
                            icon=":material/filter_alt_off:")
                    st.button("Clear the filters", on_click=clear_filters, icon=":material/filter_alt_off:")
                else:
                    st.caption(f"Showing {len(shown)} of {len(connections)}" + (f" · all {shared}" if shared else "")
                               + " · broken first · select a row: its details open below the table")
                    chosen = selection_table(
                        style_states(table), table["id"], lookup.selected, name="vault", hide_index=True, width="stretch",
                        column_order=[c for c in table.columns if c != "id" and c not in alike],
                        column_config={
                            "logo": st.column_config.ImageColumn("", width="small"),
                            "key": st.column_config.TextColumn("connection key", width="medium"),
                            "tags": st.column_config.ListColumn("tags"),
                            "active": st.column_config.CheckboxColumn("active"),
                            "created": when_column("created", seconds=False),
                            "first seen": when_column("first seen", seconds=False),
                            "last seen": st.column_config.DatetimeColumn("last seen", format="distance"),
                        },
                    )
                    if chosen != lookup.selected:  # a row chosen, or the chosen one unselected
                        if chosen:
                            st.query_params["connection"] = chosen
                            chosen_in_place("connection-detail", chosen)
                        else:
                            st.query_params.pop("connection", None)
                        st.rerun()
                    # Built when clicked (docs/streamlit-traps.md): a platform's thousands of rows took a second a run.
                    csv_download("Download CSV", functools.partial(connections_csv, table, shown, stored),
                                 lookup.file_name)

                if gone:
                    with st.expander(f"{count(len(gone), 'connection')} Pica no longer lists",
                                     icon=":material/history:"):
                        show_stored(gone, names, gone_heading)
                selected = next((c for c in connections if c.id == lookup.selected), None)
                if lookup.selected and selected is None:
                    st.warning(f"The link's connection {plain(lookup.selected)} is not among these: deleted, or "
                               "of another identity or environment.", icon=":material/link_off:")
                if selected is not None:
                    st.divider()
                    with st.container(key="connection-detail"):
                        if selected.id not in {c.id for c in shown}:
                            st.caption(":material/filter_alt: The filters above hide this connection's row; its "
                                       "details stay open until you choose another one.")
                        detail(selected, settings=settings, store=store, principal=principal,
                               display_name=names.get(selected.platform, selected.platform))
                    bring_into_view("connection-detail", selected.id)

with bulk_tab:
    st.caption("Paste identities, one per line (`identity` or `identity,type`), or upload a CSV with an "
               "`identity` column (and optionally `identityType`). Up to 500 at a time.")
    keep_widgets(["bulk-text"])  # Streamlit drops a widget's value when its page is left
    text = st.text_area("Identities", key="bulk-text", height=140,
                        placeholder="usr_1a2b3c,user\nteam-growth-acme-4,team")
    upload = st.file_uploader("CSV file", type=["csv", "txt"])
    # One at a time (each costs Pica calls); a click sent before the button showed disabled still counts: refused.
    running = own_triage() is not None
    if st.button("Triage", type="primary", icon=":material/checklist:", disabled=running,
                 help="A triage is under way: its results show below." if running else None) and not running:
        st.session_state[TAB] = "bulk"
        parsed = parse_bulk(text, upload.getvalue() if upload else b"")
        st.session_state["triage-problems"] = parsed.problems
        st.session_state["triage-file"] = upload.name if upload else None
        st.session_state[TRIAGE_LATER] = parsed
        st.session_state.pop(TRIAGE_RESULTS, None)
        if parsed.identities:
            st.session_state[TRIAGE_JOB] = start_triage(settings, parsed.identities)
            st.rerun()  # the button disabled while it runs
        elif (not parsed.problems and upload is not None and not text.strip()  # Excel's empty "CSV UTF-8": a BOM
              and not upload.getvalue().decode("utf-8-sig", "replace").strip()):
            st.info(plain(f"Nothing to triage: {upload.name} is empty."), icon=":material/info:")
        elif not parsed.problems and (upload is not None or text.strip()):  # a header row, and nothing under it
            where = upload.name if upload is not None and not text.strip() else "the pasted text"
            st.info(plain(f"Nothing to triage: {where} has no identities under its header row."),
                    icon=":material/info:")
        elif not parsed.problems:
            st.info("Nothing to triage: paste identities above or upload a CSV file.", icon=":material/info:")
    if running:  # started here, maybe before the reader looked someone up or left the page
        follow_triage()
    if failure := st.session_state.pop(TRIAGE_FAILURE, None):
        st.warning(plain(failure), icon=":material/error:")
    triaged_file = st.session_state.get("triage-file")
    if triaged_file and (upload is None or upload.name != triaged_file):  # a file is not kept across pages
        st.caption(plain(f"What follows includes {triaged_file}, which is no longer loaded here: upload it again "
                         "before pressing Triage to look its identities up again."))
    for problem in st.session_state.get("triage-problems", []):
        st.warning(plain(problem), icon=":material/edit_off:")  # it quotes the line as typed
    results = st.session_state.get(TRIAGE_RESULTS)
    # When the rate limit the last triage met lifts: asking before then meets it again, for any identities.
    lifts = max((r.retry_at for r in results or [] if r.error and r.retry_at), default=None)
    soon = lifts is not None and lifts > datetime.now(UTC)
    wait = f" (after {lifts:%H:%M:%S} UTC)" if soon else ""
    if (bulk := st.session_state.get(TRIAGE_LATER)) and bulk.later:  # past the first 500: added on, not retyped
        st.info(plain(bulk.later_note), icon=":material/pending:")
        if st.button(f"Triage the next {min(len(bulk.later), MAX_BULK_IDENTITIES):,}{wait}",
                     icon=":material/playlist_add:", key="triage-next", disabled=running,
                     type="tertiary" if soon else "secondary", help="A triage is under way." if running else
                     "Pica's rate limit lifts then: asking sooner meets it again." if soon else
                     "Their results are added to those below.") and not running:
            st.session_state[TRIAGE_LATER_BEFORE] = bulk  # back in its place should the batch fail
            st.session_state[TRIAGE_LATER] = bulk = bulk.next_batch()
            st.session_state[TRIAGE_JOB] = start_triage(settings, bulk.identities,
                                                        into=st.session_state.get(TRIAGE_RESULTS))
            st.rerun()
    if results:
        table = triage_rows(results, names)
        states = state_counts(s for s, key in zip(table["state"], table["key"]) if key)  # its connections' rows
        identities = by_identity(results)  # what the summary counts: the By identity tab's rows
        failed = [r for r in identities if r.error]
        st.markdown(f"**{count(len(identities), 'identity', 'identities')}** · {attention_summary(states)} · "
                    f"{sum(1 for r in identities if not r.connections and not r.error):,} with none · "
                    f"{len(failed):,} failed to load")
        if failed:
            st.warning(plain(triage_failures(failed)), icon=":material/cloud_off:")
            again = [(r.identity, r.identity_type) for r in results if r.error]  # as asked, not as merged
            if st.button(f"Look up the {count(len(again), 'identity', 'identities')} that failed again{wait}",
                         icon=":material/replay:",
                         key="triage-again", type="tertiary" if soon else "secondary", disabled=running,
                         help="A triage is under way." if running else
                         "Pica's rate limit lifts then: asking sooner meets it again." if soon else None) \
                    and not running:  # one triage at a time: a second orphaned the first and asked twice
                st.session_state[TRIAGE_JOB] = start_triage(settings, again, into=results)
                st.rerun()
        by_identity, every = st.tabs(["By identity", "Every connection"])
        with by_identity:
            # What the support agent reads first, where each is broken or why nothing is known (the note), next to
            # the identity: after the counts, both were cut at 1280 px and off screen at 1024.
            st.dataframe(triage_summary(identities, names, base=app_base()), hide_index=True, width="stretch",
                         column_order=("open", "identity", "identity type", "broken on", "note", "need attention",
                                       "connections"), column_config={
                "open": st.column_config.LinkColumn("lookup", display_text="open", width="small"),
                "identity type": st.column_config.TextColumn("type", width="small"),
                "connections": st.column_config.TextColumn("connections", width=100),
                "need attention": st.column_config.TextColumn("need attention", width=120),
                "broken on": st.column_config.TextColumn("broken on", width="medium"),
                "note": st.column_config.TextColumn("note", width="medium")})
        with every:
            broken_only = st.toggle("Only those that need attention", key="triage-broken-only")
            shown_rows = needing_attention(table) if broken_only else table
            st.dataframe(style_states(shown_rows), hide_index=True, width="stretch", column_order=TRIAGE_SHOWN,
                         column_config={"note": st.column_config.TextColumn("note", width="large")})
            # What this tab shows, under it: below both tabs, it followed this tab's toggle while the other showed.
            csv_download("Download CSV" + (" (those that need attention)" if broken_only else ""),
                         functools.partial(triage_csv, shown_rows), "triage.csv", key="triage-csv")
