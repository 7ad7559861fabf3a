"""Connect: open Pica's AuthKit widget for an identity, then confirm and store the new connection."""

import uuid

import streamlit as st

from pica_core import validation
from pica_core.connect import confirm_and_store, reconnect_applies, resolve_connector
from pica_core.console import platform_of_key
from pica_core.errors import InvalidInputError
from pica_core.models import IDENTITY_TYPES
from pica_core.text import plain
from pica_core.tokens import token_headers
from pica_core.ui import context, data
from pica_core.ui.authkit import authkit_widget
from pica_core.ui.layout import ago, arrived, drop_unread_params, show_error, warn_unknown_identity_type
from pica_core.web import grant_signer

TOKEN_PATH = "/api/authkit/token"

settings = context.settings()
store = context.store(settings)
principal = context.principal(settings)
query = st.query_params
if arrived():  # what the last visit connected is not news on the next one, and its widget closed with the page
    for shown in ("connect-outcome", "connect-pending", "connect-closed", "authkit-session"):
        st.session_state.pop(shown, None)
reconnect_key = query.get("reconnect", "").strip()
key_problem = None
if reconnect_key:
    try:
        validation.connection_key(reconnect_key)
    except InvalidInputError as exc:
        key_problem, reconnect_key = exc.message, ""
catalog = data.catalog(settings)
connectors, enabled = catalog.value if catalog.value else ([], set())
# A reconnect authorises the same connector again: one AuthKit does not offer can only make a new connection.
not_offered = reconnect_key if reconnect_key and connectors and platform_of_key(reconnect_key) not in enabled else None
if not_offered:
    reconnect_key = ""
action = "reconnect" if reconnect_key else "connect"
blocked = principal.why_not(action)
# What this visit repairs: once AuthKit is open, what its session does (a link's key with another identity typed in
# became a new connection); before, the link's key if it is of the link's identity.
opened_session = st.session_state.get("authkit-session")
linked_identity = query.get("identity", "")
repairing = (opened_session["reconnect"] if opened_session else
             reconnect_key if reconnect_key and (not linked_identity or reconnect_applies(reconnect_key, linked_identity))
             else None)

st.title("Reconnect an account" if repairing else "Connect an account")
st.caption("Opens Pica's AuthKit for an end user; the connection it creates is confirmed with Pica, stored and "
           "audited. In sandbox mode the AuthKit page is the sandbox's own.")
drop_unread_params(("identity", "identityType", "connector", "reconnect"), aliases=("identity_type",))
if key_problem:  # a link's fault: nothing to correct here, and Open AuthKit makes a new connection
    st.error(f"The link's connection to reconnect is not usable: {plain(key_problem)} Open AuthKit makes a new "
             "connection instead.", icon=":material/link_off:")
if repairing:
    if not getattr(st.session_state.get("connect-outcome"), "ok", False):  # once done, the outcome says what
        st.info(f"Reconnecting {plain(repairing)}: authorise the same connector again for this identity.",
                icon=":material/link:")
        seen = store.stored_connection(repairing)
        if seen is not None and seen.state == "operational" and not opened_session:  # a link kept, or used twice
            st.warning(f"It was operational when the dashboard last saw it ({ago(seen.last_seen_at)}): it may need "
                       "no reconnect, and AuthKit may make a second connection beside it. Look it up first.",
                       icon=":material/check_circle:")
            st.page_link("pages/connections.py", label="Look it up", icon=":material/person_search:",
                         query_params={"key": repairing})
elif reconnect_key:
    st.warning(f"The link reconnects {plain(reconnect_key)}, a connection of another identity: AuthKit makes a new "
               "connection for the identity below, and leaves that one as it is.", icon=":material/person_alert:")
elif not_offered:
    name = next((c.name for c in connectors if c.platform == platform_of_key(not_offered)), platform_of_key(not_offered))
    st.warning(f"The link reconnects {plain(not_offered)}, but {plain(name)} is not enabled in "
               "AuthKit for this environment: enable it in Pica's dashboard, then open the link again. Open AuthKit "
               "below makes a new connection instead.", icon=":material/toggle_off:")
if catalog.error:
    show_error(catalog.error, what="Catalog")
choices = sorted((c for c in connectors if c.platform in enabled), key=lambda c: c.name.lower())

try:
    # Without a catalog there is nothing to find the link's connector in: the error above says why.
    preselected = resolve_connector(query.get("connector"), connectors) if connectors else None
except InvalidInputError as exc:
    show_error(exc)
    preselected = None
if preselected is not None and preselected.platform not in enabled:
    if not not_offered:  # said above, with what it means for the reconnect
        st.warning(f"{plain(preselected.name)} is not enabled in AuthKit for this environment: enable it in Pica's "
                   "dashboard first, or pick another connector.", icon=":material/toggle_off:")
    preselected = None

linked_type = query.get("identityType") or query.get("identity_type")
warn_unknown_identity_type(linked_type, "choose the right one below")
if linked_type and linked_type.strip().lower() == "any":  # a Connections link: a connection has one type
    st.warning("The link's identity type is any, and a connection is made for one type: choose it below.",
               icon=":material/link_off:")
if query.get("identity") and not (opened_session or st.session_state.get("connect-outcome")):
    try:  # said when the page opens, not only once Open AuthKit is pressed (a line break shows as nothing)
        validation.identity(query.get("identity"))
    except InvalidInputError as exc:
        st.warning(f"The link's identity cannot be used: {plain(exc.message)} Correct it below.",
                   icon=":material/link_off:")

with st.form("connect"):
    c1, c2, c3 = st.columns([3, 2, 3])  # at 1024 px 1.4 cut "organization" to "organiz"
    identity = c1.text_input("Identity", value=query.get("identity", ""), placeholder="the end user's id in your app")
    kinds = list(IDENTITY_TYPES)
    chosen_type = validation.linked_identity_type(linked_type) or "user"
    identity_type = c2.selectbox("Identity type", kinds, index=kinds.index(chosen_type))
    names = ["", *[c.name for c in choices]]
    connector_name = c3.selectbox("Connector (optional)", names,
                                  index=names.index(preselected.name) if preselected else 0,
                                  format_func=lambda n: n or "Let the user choose from the list",
                                  help="Only connectors enabled in AuthKit are listed.")
    opened = st.form_submit_button("Open AuthKit", type="primary", icon=":material/add_link:", disabled=bool(blocked),
                                   help=blocked)

if opened and not blocked:
    try:
        grant = grant_signer().issue(identity, identity_type)  # validates the identity too
    except InvalidInputError as exc:
        show_error(exc)
    else:
        # The identity typed and the connector chosen may differ from the link's; "let the user choose" may repair.
        chosen = next((c.platform for c in choices if c.name == connector_name), None)
        repairs = reconnect_applies(reconnect_key, identity, chosen)
        st.session_state["authkit-session"] = {
            "nonce": uuid.uuid4().hex, "grant": grant, "identity": identity.strip(), "identity_type": identity_type,
            "connector": connector_name or None, "reconnect": reconnect_key if repairs else None,
        }
        for shown in ("connect-outcome", "connect-pending"):
            st.session_state.pop(shown, None)
        # In one change: each change of the URL is an entry in the browser's history (three Backs to leave).
        # "Let the user choose" drops the link's connector: a reload must not bring it back.
        st.query_params.from_dict({**{k: v for k, v in st.query_params.to_dict().items() if k != "connector"},
                                   "identity": identity.strip(), "identityType": identity_type,
                                   **({"connector": connector_name} if connector_name else {})})
        st.rerun()  # the title and what is repaired follow the session just opened

session = st.session_state.get("authkit-session")
if session:
    theme = getattr(getattr(st.context, "theme", None), "type", None)
    result = authkit_widget(
        key="authkit-widget", nonce=session["nonce"], base_url=settings.authkit_url or "/sandbox/authkit",
        token_url=TOKEN_PATH, headers=token_headers(session["grant"], session["identity"]),
        title=f"{'Reconnect' if session['reconnect'] else 'Connect'} an account for {session['identity']}",
        selected_connection=session["connector"], theme=theme,
    )
    success = result.get("connection") if result else None
    if success and success.get("nonce") == session["nonce"] and not session.get("stored"):
        with st.spinner(plain(f"Confirming the new connection of {session['identity']} with Pica…")):
            outcome = confirm_and_store(context.client(settings), store, success.get("record"),
                                        identity=session["identity"], identity_type=session["identity_type"],
                                        actor=principal.name, reconnect_key=session["reconnect"],
                                        session=session["nonce"])
        st.session_state["connect-outcome"] = outcome  # before "stored": a rerun must never see one without the other
        st.session_state["connect-pending"] = {k: session[k] for k in ("identity", "identity_type", "reconnect", "nonce")}
        session["stored"] = True
        data.refresh_connections()
    event = result.get("event") if result else None
    if event and event.get("nonce") == session["nonce"]:
        if event.get("type") == "error":
            session["error"] = event.get("message") or "AuthKit reported an error."
        elif event.get("type") == "close":
            st.session_state.pop("authkit-session", None)
            if not session.get("stored"):
                st.session_state["connect-closed"] = session.get("error") or "closed"
                st.session_state["connect-closed-for"] = {"identity": session["identity"],
                                                          "identityType": session["identity_type"]}
            st.rerun()
    if session.get("error") and not session.get("stored"):
        st.error(f"AuthKit: {plain(session['error'])}", icon=":material/error:")
        st.caption("Nothing was stored: open AuthKit again once what the message names is resolved.")
    elif not session.get("stored"):
        st.info(f"AuthKit is open for **{plain(session['identity'])}** ({session['identity_type']}).",
                icon=":material/open_in_new:")

outcome = st.session_state.get("connect-outcome")
if outcome is not None:
    if outcome.ok:
        conn = outcome.connection
        connector_names = {c.platform: c.name for c in connectors}
        st.success(f"{plain(connector_names.get(conn.platform, conn.platform))} is connected for "
                   f"**{plain(conn.identity)}** "
                   f"({plain(conn.identity_type or 'no type')}).", icon=":material/check_circle:")
        st.code(conn.key, language=None, wrap_lines=True)
        if outcome.note:
            st.warning(plain(outcome.note), icon=":material/content_copy:")
        # The identity is named just above: a link naming it again ran past the page's edge when it was long.
        st.page_link("pages/connections.py", label="See this identity's connections", icon=":material/link:",
                     query_params={"identity": conn.identity or "", "identityType": conn.identity_type or "",
                                   "connection": conn.id})
    else:
        st.error(plain(outcome.message), icon=":material/gpp_bad:")
        pending = st.session_state.get("connect-pending")
        if outcome.unconfirmed and pending:
            st.code(outcome.key, language=None, wrap_lines=True)
            if st.button("Confirm it with Pica again", icon=":material/refresh:", key="connect-confirm-again"):
                with st.spinner("Confirming with Pica…"):
                    st.session_state["connect-outcome"] = confirm_and_store(
                        context.client(settings), store, {"key": outcome.key}, identity=pending["identity"],
                        identity_type=pending["identity_type"], actor=principal.name,
                        reconnect_key=pending["reconnect"], session=pending["nonce"])
                data.refresh_connections()
                st.rerun()
closed = st.session_state.pop("connect-closed", None)
last_lookup = st.session_state.pop("connect-closed-for", None) or {}
last_identity = last_lookup.get("identity", "the user")
if closed and outcome is None:
    if closed == "closed":
        # Closed while a connection was being made (the OAuth window finishing), it may exist all the same.
        st.info(f"The widget was closed before it reported a connection. If {plain(last_identity)} authorised one "
                "just before, it may exist all the same: look them up before opening AuthKit again, which would make "
                "a second one.", icon=":material/close:")
        st.page_link("pages/connections.py", label="Look them up", icon=":material/person_search:",
                     query_params=last_lookup)
    else:
        st.error(f"AuthKit closed after an error: {plain(closed)}", icon=":material/error:")
