"""Passthrough console: build a request on a real connection, send it through Pica, read it, replay it later.

Deep links: ?platform=<id> (from the catalog), ?key=<connection key>, ?identity=…&identityType=… (from Connections),
?action=<action id>. The logic is in pica_core.console; the widgets in pica_core.ui.console_ui.
"""

import streamlit as st

from pica_core import console
from pica_core.errors import InvalidInputError
from pica_core.ui import console_ui as ui
from pica_core.ui import context, data
from pica_core.text import count, plain, scrub
from pica_core.ui.layout import show_error

settings = context.settings()
client = context.client(settings)
store = context.store(settings)
principal = context.principal(settings)
secret = settings.effective_secret().reveal()  # only to mask it, should a request or an answer contain it
ss = st.session_state

st.title("Passthrough console")
st.caption("Try an action on a user's real connection before shipping code that relies on it: pick the connection "
           "and the action, send, read the platform's answer; every call lands in History.")
ui.keep_widget_values()
ui.apply_deep_link()
if notice := ss.pop("con_notice", None):
    st.info(notice, icon=":material/edit:")
ui.land_call()

ss.setdefault("con_tab", "Builder")
builder_tab, history_tab = st.tabs(["Builder", "History"], key="con_tab", on_change="rerun")

with builder_tab:
    action, refused = None, False  # refused: this run's Send was refused (the response below is an earlier call's)
    with st.container(border=True):
        st.markdown("##### :material/link: Connection")
        chosen = ui.pick_connection(settings)
        if chosen is not None:
            ui.show_connection(settings, principal, chosen)
    if chosen is not None:
        with st.container(border=True):
            name = data.platform_names(settings, ask=False).get(chosen.platform, chosen.platform)
            st.markdown(f"##### :material/bolt: Action on {plain(name)}")
            action = ui.pick_action(settings, chosen.platform)
            if action is not None:
                ui.show_action(action)
                path_values = ui.path_fields(action.path)
    ui.write_deep_link(chosen, action)

    if chosen is not None and action is not None:
        with st.container(border=True):
            st.markdown("##### :material/tune: Request")
            draft = ui.request_editor(chosen, action, path_values)
            try:
                prepared, problem = console.prepare(draft), None
            except InvalidInputError as exc:  # it may quote what was typed: a header name holding the secret
                prepared, problem = None, InvalidInputError(scrub(exc.message, secret) or "",
                                                            hint=scrub(exc.hint, secret))
            if prepared is not None:
                st.code(scrub(console.preview(prepared), secret), language="http", wrap_lines=True)  # whole at 1024
            else:
                st.caption(f":orange[:material/pending: Not ready: {plain(problem.message)}]")
            confirmed = False
            if console.needs_live_confirmation(draft.method, chosen.key):
                confirmed = st.checkbox(f"I confirm: send this {draft.method.upper()} to a **live** connection "
                                        "(it may change the user's real data).", key="con_confirm_live")
            write_refusal = console.send_refusal(draft.method, chosen.key, can_write=principal.can("console_write"),
                                                 why_not_write=principal.why_not("console_write"),
                                                 live_confirmed=confirmed)
            clicked = st.button("Send", type="primary", key=ui.send_key("con_send"), icon=":material/send:",
                                disabled=write_refusal is not None, help=write_refusal)
            if write_refusal and not principal.can("console_write"):
                st.caption(f":material/lock: {write_refusal}")
        if clicked:
            if problem is not None:
                show_error(problem, what="Not sent")
                refused = True
            else:
                ui.execute(prepared, settings=settings, client=client, store=store, principal=principal,
                           platform=chosen.platform, action_title=action.title, confirmed=confirmed,
                           keep=lambda shown: ss.update(con_last=shown))

    if (last := ss.get("con_last")) is not None:
        with st.container(border=True):
            st.markdown("##### :material/inbox: Response")
            if refused:  # under "Not sent", the answer below read as this request's
                st.caption(":orange[:material/history: The answer to the last call sent, not to the request above: "
                           "that one was not sent.]")
            ui.render_call(last, settings, key="con_last")
            ui.offer_reconnect(last, chosen, principal, settings)

with history_tab:
    if history_tab.open:  # the History tab's queries and previews only when it is shown
        filters = ui.history_filters(store)
        records = store.search_calls(**filters, limit=200)
        if (replayed := ss.get("con_replayed")) is not None:
            with st.container(border=True):
                st.markdown(f"##### :material/replay: Replay of #{ss.get('con_replayed_of')}")
                ui.render_call(replayed, settings, key="con_replayed")
        if not records:
            st.info("No calls match." if any(filters.values()) else "No calls yet: send one from the Builder tab.",
                    icon=":material/history:")
        else:
            more = " (the latest 200: narrow the filters)" if len(records) == 200 else ""
            st.caption(f"{count(len(records), 'call')}{more}. Bodies are kept up to {console.format_size(settings.history_body_limit)}; "
                       "credentials are never stored.")
            picked = ui.history_table(records)
            shown_records = records[:ui.HISTORY_SHOWN]
            if picked is not None and picked not in shown_records:  # an older call, opened from the table
                shown_records = [picked, *shown_records]
            live_writes = any(r.environment == "live" and r.method != "GET" for r in shown_records)
            confirm_replay = live_writes and st.checkbox("I confirm replays of writes on **live** connections.",
                                                          key="con_h_confirm")
            if len(records) > ui.HISTORY_SHOWN:
                st.caption(f"Details of the latest {ui.HISTORY_SHOWN} (select an older call in the table to see it "
                           "here too):")
            else:
                st.caption("Select a call in the table to open its details.")
            replay_messages = st.container()  # above the list, where a refused replay is seen
            to_replay = [r for r in shown_records if ui.history_entry(r, settings, store, opened=r is picked)]
            if to_replay:
                record, prepared = to_replay[0], None
                with replay_messages:
                    try:
                        prepared = console.replay_request(record)
                    except InvalidInputError as exc:
                        show_error(exc, what=f"Replay of #{record.id}")
                    if prepared is not None:
                        ui.execute(prepared, settings=settings, client=client, store=store, principal=principal,
                                   platform=record.platform, action_title=record.action_title,
                                   confirmed=bool(confirm_replay),
                                   keep=lambda shown, of=record.id: ss.update(con_replayed=shown, con_replayed_of=of))
            with st.expander("Compare two responses", icon=":material/compare_arrows:", expanded=False):
                ui.compare_panel(records)
