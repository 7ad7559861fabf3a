"""Widgets of the passthrough console: connection and action pickers, the request editor, the response panel,
history. Logic lives in `pica_core.console`; this module only reads widgets and renders.

Session-state keys all start with `con_`. Tables (params, headers, form fields) are `st.data_editor`s over rows
kept in `con_<table>_rows`; loading a call into the builder replaces the rows and bumps `con_<table>_ver` so that
the editor starts afresh.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from .. import console, validation
from ..access import Principal
from ..client import PicaClient
from ..config import Settings
from ..errors import InvalidInputError, PicaError
from ..health import NEEDS_ATTENTION
from ..models import IDENTITY_TYPES, ActionHit, Connection
from ..store import PassthroughCallRecord, Store
from ..text import plain, scrub, scrub_spelt
from . import data
from .connections_ui import reconnect_link, what_to_do
from .layout import (
    KEPT_SUFFIX,
    ago,
    drop_unread_params,
    guarded,
    keep_widgets,
    public_url,
    selection_table,
    show_error,
    show_fetch_problem,
    state_badge,
    warn_unknown_identity_type,
    when_column,
)

CONNECTION_MODES = ("Identity", "Connection key", "Platform")
ACTION_MODES = ("Search", "Browse all", "Raw")
HISTORY_SHOWN = 25
URL_PARAMS = ("key", "identity", "identityType", "platform", "action")  # its deep links (see apply_deep_link)
ss = st.session_state
log = logging.getLogger("pica_core.console")


# --- deep links -------------------------------------------------------------------------------------------------
def apply_deep_link() -> None:
    """Fill the pickers from ?key=, ?identity=&identityType=, ?platform= and ?action= when the URL changed
    (a link from another page), not on every rerun (the user's choices win)."""
    drop_unread_params(URL_PARAMS)
    current = {k: st.query_params.get(k) for k in URL_PARAMS}
    current = {k: v for k, v in current.items() if v}
    if not current and ss.get("con_url"):  # the sidebar's link carries no query: the session's last choice
        current = ss.pop("con_url")
        st.query_params.update(current)
    if current == ss.get("con_url"):
        return
    ss["con_url"] = current
    if current.get("identity"):
        ss["con_conn_mode"] = "Identity"
        ss["con_identity"] = current["identity"]
        itype = current.get("identityType")
        ss["con_identity_type"] = validation.linked_identity_type(itype) or "any"
        warn_unknown_identity_type(itype, "showing every type")
        if current.get("key"):
            ss["con_identity_pick"] = current["key"]
    elif current.get("key"):
        ss["con_conn_mode"] = "Connection key"
        ss["con_key"] = current["key"]
    elif current.get("platform"):
        ss["con_conn_mode"] = "Platform"
        ss["con_platform"] = current["platform"].strip().lower()  # ids are lower case; a link may not be
    if current.get("action"):
        ss["con_action_mode"] = "Browse all"
        ss["con_action_pick"] = ss["con_linked_action"] = current["action"]


def write_deep_link(chosen: ChosenConnection | None, action: ChosenAction | None) -> None:
    """Keep the chosen connection and action in the URL, so that the page can be shared or reloaded."""
    wanted: dict[str, str] = {}
    mode = ss.get("con_conn_mode")  # what was asked for stays when it finds nothing: the link is still shareable
    if mode == "Identity" and (ss.get("con_identity") or "").strip():
        wanted["identity"] = ss["con_identity"].strip()
        if ss.get("con_identity_type") not in (None, "any"):
            wanted["identityType"] = ss["con_identity_type"]
    elif mode == "Platform" and (chosen is not None or (ss.get("con_platform") or "").strip()):
        wanted["platform"] = chosen.platform if chosen is not None else ss["con_platform"].strip()
    if chosen is not None:
        wanted["key"] = chosen.key
    elif mode == "Connection key" and (ss.get("con_key") or "").strip():
        wanted["key"] = ss["con_key"].strip()
    if action is not None and not action.raw:
        wanted["action"] = action.id
    if wanted != ss.get("con_url"):
        for name in URL_PARAMS:
            if name in wanted:
                st.query_params[name] = wanted[name]
            elif name in st.query_params:
                del st.query_params[name]
        ss["con_url"] = wanted


# --- connection -------------------------------------------------------------------------------------------------
@dataclass
class ChosenConnection:
    key: str
    platform: str
    environment: str
    connection: Connection | None  # None: Pica does not list this key (the call will answer 404), or was not read
    unread: bool = False  # Pica could not be asked (the problem is shown): nothing is known of the key

    @property
    def state(self) -> str:
        return self.connection.state if self.connection else "unknown"


def _connection_label(connection: Connection, names: dict[str, str]) -> str:
    """No state in it: the browser sends the chosen label back, and a label that changed with the state chose
    nothing, so the picker fell back to another connection (the state is shown beside it)."""
    who = connection.identity or "no identity"
    return f"{names.get(connection.platform, connection.platform)} · {who} · …{connection.key.split('::')[-1][:10]}"


def _pick_from(connections: list[Connection], key: str, label: str, names: dict[str, str]) -> Connection | None:
    if not connections:
        return None
    by_key = {c.key: c for c in connections}
    if ss.get(key) not in by_key:
        ss[key] = next((c.key for c in connections if c.state == "operational"), connections[0].key)
    chosen = st.selectbox(label, list(by_key), key=key, format_func=lambda k: _connection_label(by_key[k], names))
    return by_key.get(chosen)


def pick_connection(settings: Settings) -> ChosenConnection | None:
    """By identity (then one of its connections), by pasting a key, or by platform."""
    names = data.platform_names(settings, ask=False)  # labels: ids will do when the catalog was never read
    ss.setdefault("con_conn_mode", "Identity")
    mode = st.segmented_control("Choose the connection by", CONNECTION_MODES, key="con_conn_mode", required=True,
                                label_visibility="collapsed")
    if mode == "Identity":
        left, right = st.columns([3, 1])
        identity = left.text_input("Identity", key="con_identity", placeholder="e.g. usr_6c36bac704 or ava@acme.io")
        identity_type = right.selectbox("Identity type", ["any", *IDENTITY_TYPES], key="con_identity_type")
        if not identity.strip():
            st.caption("Enter the identity your app gave the end user, team, organization or project.")
            return None
        with st.spinner(plain(f"Asking Pica for {identity.strip()}'s connections…"), show_time=True):
            fetched = data.connections(settings, identity=identity.strip(),
                                       identity_type=None if identity_type == "any" else identity_type)
        show_fetch_problem(fetched, "the connections of this identity")
        connections = fetched.value or []
        if not connections and fetched.error is None:
            st.info(f"No active connections for {plain(identity.strip())} in this {settings.environment} environment.",
                    icon=":material/link_off:")
        chosen = _pick_from(connections, "con_identity_pick", "Connection", names)
        return ChosenConnection(chosen.key, chosen.platform, chosen.environment, chosen) if chosen else None

    if mode == "Connection key":
        key = st.text_input("Connection key", key="con_key", placeholder="test::gmail::default::<32 hex>|<identity>")
        if not key.strip():
            st.caption("Paste a connection key (Connections page → copy key).")
            return None
        try:
            key = validation.connection_key(key)
        except InvalidInputError as exc:
            show_error(exc)
            return None
        fetched = data.connections(settings, keys=[key])
        show_fetch_problem(fetched, "the connection with this key")
        found = next((c for c in fetched.value or [] if c.key == key), None)
        return ChosenConnection(key, found.platform if found else console.platform_of_key(key),
                                validation.key_environment(key), found, unread=fetched.value is None)

    # The catalog's platforms by name, and one a link named that it lacks; with no catalog, an id can be typed.
    names = data.platform_names(settings)
    ss.setdefault("con_platform", None)
    platforms = sorted(set(names) | {ss["con_platform"]} - {None, ""}, key=lambda p: names.get(p, p).lower())
    platform = (st.selectbox("Platform", platforms, key="con_platform", format_func=lambda p: names.get(p, p),
                             placeholder="Choose a platform" if names else "Type a platform id (gmail, slack…)",
                             filter_mode="contains", accept_new_options=not names) or "").strip()
    if not platform:
        st.caption("Choose a platform to pick one of its connections.")
        return None
    try:
        platform = validation.platform_id(platform)
    except InvalidInputError as exc:
        show_error(exc)
        return None
    fetched = data.connections(settings, platform=platform)
    show_fetch_problem(fetched, f"the connections on {names.get(platform, platform)}")
    connections = sorted(fetched.value or [], key=lambda c: (c.state != "operational", c.identity or ""))
    if not connections and fetched.error is None:
        st.info(f"No active {plain(names.get(platform, platform))} connections in this {settings.environment} "
                "environment.",
                icon=":material/link_off:")
    chosen = _pick_from(connections, "con_platform_pick", "Connection", names)
    return ChosenConnection(chosen.key, chosen.platform, chosen.environment, chosen) if chosen else None


def show_connection(settings: Settings, principal: Principal, chosen: ChosenConnection) -> None:
    """Platform, environment and state, with a warning when the connection is degraded or failed."""
    # Side by side while they fit, each as wide as its value: fixed columns cut "Environme/nt" and "operatio…" at 800 px.
    row = st.container(horizontal=True, gap="large")
    platform, env, state, who = (row.container(width="content") for _ in range(4))
    name = data.platform_names(settings, ask=False).get(chosen.platform)
    platform.markdown(f"**Platform**  \n{plain(name or chosen.platform)}")
    env_badge = ":red-badge[live]" if chosen.environment == "live" else ":blue-badge[test]"
    env.markdown(f"**Environment**  \n{env_badge}")
    state.markdown(f"**State**  \n{state_badge(chosen.state)}")
    identity = chosen.connection.identity if chosen.connection else None
    kind = chosen.connection.identity_type if chosen.connection else None
    who.markdown(f"**Identity**  \n{plain(identity) if identity else '—'}" + (f" ({plain(kind)})" if kind else ""))
    key_row = st.container(horizontal=True, vertical_alignment="center", gap="small")
    key_row.caption(f"Key {plain(chosen.key)}")
    # Read again before the page runs (a callback): the connection list is cached for a minute, and a call that
    # answers 401 is often the first sign that the state changed.
    key_row.button("Refresh state", key="con_refresh_state", icon=":material/refresh:", type="tertiary",
                   on_click=data.refresh_connections, help="Read this connection's state from Pica again.")
    if chosen.connection is None and not chosen.unread:
        st.warning("Pica does not list an active connection with this key in this environment: the call will most "
                   "likely answer 404.", icon=":material/link_off:")
    elif chosen.state in NEEDS_ATTENTION:
        what, todo = what_to_do(chosen.connection, name or chosen.platform, settings=settings)
        st.warning(f"**This connection is {chosen.state}.** {what} {todo}", icon=":material/warning:")
        if chosen.state == "failed":
            reconnect_link(principal, chosen.connection, name or chosen.platform, settings=settings)
    if chosen.environment != settings.environment:
        st.warning(f"This is a {chosen.environment} connection but the dashboard's key is a {settings.environment} "
                   "key: Pica will answer 404 Invalid connection header.", icon=":material/swap_horiz:")


# --- action -----------------------------------------------------------------------------------------------------
@dataclass
class ChosenAction:
    id: str
    title: str | None
    method: str
    path: str  # the template
    tags: list[str] = field(default_factory=list)
    knowledge: str | None = None
    raw: bool = False

    @property
    def custom(self) -> bool:
        return "custom" in self.tags


def _hits(settings: Settings, platform: str, query: str) -> list[ActionHit] | None:
    """The actions found, or None when Pica could not be asked (the error is shown)."""
    try:
        return data.actions(settings, platform, query)
    except PicaError as exc:
        show_error(exc, what=f"Actions of {platform}")
        return None


def _select_from_table() -> None:
    table = ss.get("con_action_table")
    rows = table.selection.rows if table is not None else []
    ids = ss.get("con_action_ids") or []
    if rows and rows[0] < len(ids):
        ss["con_action_pick"] = ids[rows[0]]


def pick_action(settings: Settings, platform: str) -> ChosenAction | None:
    """Search the platform's actions, browse them all, or enter a raw method, path and action id."""
    ss.setdefault("con_action_mode", "Search")
    mode = st.segmented_control("Action", ACTION_MODES, key="con_action_mode", required=True,
                                label_visibility="collapsed")
    if mode == "Raw":
        return _raw_action(settings, platform)
    if mode == "Search":
        query = st.text_input("Search actions", key="con_action_query", placeholder="e.g. send email, list messages",
                              help="Pica's action search (available-actions/search) over this platform.")
        hits = _hits(settings, platform, query)
    else:
        hits = _hits(settings, platform, "")
        if hits:
            ss["con_action_ids"] = [h.system_id for h in hits]
            table = pd.DataFrame([{"method": h.method, "title": h.title, "path": h.path, "tags": ", ".join(h.tags)}
                                  for h in hits])
            st.dataframe(table, key="con_action_table", on_select=_select_from_table, selection_mode="single-row",
                         hide_index=True, height=min(320, 38 + 35 * len(hits)),
                         column_config={"method": st.column_config.TextColumn(width="small")})
    if hits is None:
        return None
    if not hits:
        searched = mode == "Search" and query.strip()
        st.caption(f"No actions of {plain(platform)} match." if searched
                   else f"Pica lists no actions for {plain(platform)}: choose another connection, or send any path "
                        "with an action id in **Raw**.")
        return None
    by_id = {h.system_id: h for h in hits}
    linked = ss.pop("con_linked_action", None)
    if ss.get("con_action_pick") not in by_id:
        if linked is not None and linked == ss.get("con_action_pick"):
            st.warning(f"The link's action {plain(linked)} is not one of {plain(platform)}'s actions: choose one "
                       "below.", icon=":material/link_off:")
        ss["con_action_pick"] = None
    picked = st.selectbox("Action", list(by_id), key="con_action_pick", index=None,
                          placeholder=f"Choose one of {len(hits)} actions",
                          format_func=lambda i: f"{by_id[i].method} · {by_id[i].title}")
    if picked is None:
        return None
    hit = by_id[picked]
    return ChosenAction(hit.system_id, hit.title, hit.method.upper(), hit.path, list(hit.tags), hit.knowledge)


def _raw_action(settings: Settings, platform: str) -> ChosenAction | None:
    method_col, path_col = st.columns([1, 4])
    method = method_col.selectbox("Method", console.PASSTHROUGH_METHODS, key="con_raw_method")
    path = path_col.text_input("Path", key="con_raw_path", placeholder="/gmail/v1/users/{{userId}}/messages",
                               help="The platform path after /v1/passthrough/; {{variables}} become fields.")
    action_id = st.text_input("Action id (x-pica-action-id)", key="con_raw_action_id",
                              placeholder="conn_mod_def::…")
    custom = st.checkbox("Pica custom action: add connectionKey to the body", key="con_raw_custom")
    if not path.strip() or not action_id.strip():
        st.caption("Raw mode sends any method and path with the action id you give.")
        return None
    title = ss.get("con_raw_title")
    try:  # only for the action's title and notes: raw mode sends without them when Pica cannot be asked
        known = next((h for h in data.actions(settings, platform, "") if h.system_id == action_id.strip()), None)
    except PicaError:
        known = None
    if known is not None:
        title = known.title
    return ChosenAction(action_id.strip(), title, method, path.strip(), ["custom"] if custom else [],
                        known.knowledge if known else None, raw=True)


def show_action(action: ChosenAction) -> None:
    st.markdown(f":blue-badge[{action.method}] **{plain(action.path)}**"
                + (f" — {plain(action.title)}" if action.title else ""))
    st.caption(f"Action id {plain(action.id)}" + (" · tags: " + plain(", ".join(action.tags)) if action.tags else ""))
    if action.custom:
        st.info("A Pica custom action: the console puts `\"connectionKey\"` (the chosen connection) into the body.",
                icon=":material/key:")
    if action.knowledge:
        with st.expander("Knowledge", icon=":material/menu_book:"):
            st.markdown(action.knowledge)  # Pica's documentation is Markdown (Streamlit renders no raw HTML)


def path_fields(template: str) -> dict[str, str]:
    names = console.path_variables(template)
    if not names:
        return {}
    st.markdown("**Path variables**")
    values = {}
    for column, name in zip(st.columns(min(3, len(names))) * len(names), names):
        values[name] = column.text_input(name, key=f"con_var_{name}", placeholder="me" if name == "userId" else "",
                                         help=f"Fills {{{{{name}}}}}; the value is URL-encoded.")
    return values


# --- request ----------------------------------------------------------------------------------------------------
def _table(name: str, *, name_label: str = "Name", value_label: str = "Value") -> list[tuple]:
    editor_key = f"{name}_{ss.get(f'{name}_ver', 0)}"
    if editor_key not in ss and f"{name}_saved" in ss:
        # The editor was not on screen last run, so Streamlit dropped its edits: start from what they gave.
        ss[f"{name}_rows"] = ss.pop(f"{name}_saved")
    rows = ss.setdefault(f"{name}_rows", [])
    frame = pd.DataFrame(rows, columns=["name", "value"], dtype="object")
    edited = st.data_editor(frame, key=editor_key, num_rows="dynamic", hide_index=True, width="stretch",
                            column_config={"name": st.column_config.TextColumn(name_label, width="medium"),
                                           "value": st.column_config.TextColumn(value_label, width="large")})
    records = edited.to_dict("records")
    ss[f"{name}_saved"] = records
    return console.as_pairs(records)


def set_table(name: str, pairs: list[tuple[str, str]]) -> None:
    """Replace a table's rows (the editor restarts from them)."""
    ss[f"{name}_rows"] = [{"name": k, "value": v} for k, v in pairs]
    ss[f"{name}_ver"] = ss.get(f"{name}_ver", 0) + 1
    ss.pop(f"{name}_saved", None)


# Widget values kept while their widget is off screen (another mode or body kind is showing).
KEPT = ("con_conn_mode", "con_action_mode", "con_body_kind", "con_identity", "con_identity_type", "con_key",
        "con_platform", "con_action_query", "con_raw_method",
        "con_raw_path", "con_raw_action_id", "con_raw_custom", "con_body_json", "con_body_raw", "con_authorization",
        "con_h_platform", "con_h_action", "con_h_status", "con_h_text")


def keep_widget_values() -> None:
    keep_widgets({*KEPT, *(str(k).removesuffix(KEPT_SUFFIX) for k in ss if str(k).startswith("con_var_"))})


def request_editor(chosen: ChosenConnection, action: ChosenAction, path_values: dict[str, str]) -> console.RequestDraft:
    """Params, Headers and Body tabs → a draft (not yet checked)."""
    if ss.get("con_action_seen") != action.id:  # a new action: a body that suits its method
        ss["con_action_seen"] = action.id
        if not action.raw:
            ss["con_body_kind"] = "json" if action.method in console.WRITE_METHODS or action.custom else "none"
    params_tab, headers_tab, body_tab = st.tabs(["Params", "Headers", "Body"])
    with params_tab:
        query = _table("con_params")
        st.caption("Query parameters, sent in this order (a name may repeat).")
    with headers_tab:
        headers = _table("con_headers")
        authorization = st.text_input("Authorization (optional)", key="con_authorization", type="password",
                                      help="Only if the platform needs one beyond Pica's own: never shown, "
                                           "stored or exported.")
        if authorization:
            headers.append(("Authorization", authorization))
        st.caption("x-pica-secret, x-pica-connection-key and x-pica-action-id are set by the console. Values of "
                   "Authorization-like headers are redacted in history and exports.")
    form: list[tuple] = []
    files: list[console.FilePart] = []
    with body_tab:
        ss.setdefault("con_body_kind", "none")
        kind = st.segmented_control("Body", console.BODY_KINDS, key="con_body_kind", required=True,
                                    format_func=lambda k: {"none": "None", "json": "JSON", "form": "Form-encoded",
                                                           "multipart": "Multipart", "raw": "Raw text"}[k])
        if kind == "json":
            text = st.text_area("JSON body", key="con_body_json", height=220, placeholder='{\n  "raw": "…"\n}')
            error = console.json_error(text) if text.strip() else None
            if error is not None:
                st.error(plain(error.message), icon=":material/data_object:")
                st.code(error.hint, language="text")
            elif text.strip():
                st.caption(":green[:material/check:] valid JSON")
        elif kind == "form":
            form = _table("con_form", name_label="Field")
        elif kind == "multipart":
            form = _table("con_multipart", name_label="Field")
            for upload in st.file_uploader("Files", key="con_files", accept_multiple_files=True) or []:
                files.append(console.FilePart("file", upload.name, upload.getvalue(),
                                              upload.type or "application/octet-stream"))
            st.caption("Files are sent under the field name `file`; history keeps their names and sizes only.")
        elif kind == "raw":
            st.text_area("Raw body", key="con_body_raw", height=200)
            st.caption("Sent as is: set its Content-Type in the Headers tab.")
        if action.custom:
            st.caption(f"connectionKey: {plain(chosen.key)} is added to the body when sending.")
        st.caption(f"Bodies over {console.format_size(console.MAX_REQUEST_BODY_BYTES)} are refused.")
    body_text = ss.get("con_body_json", "") if kind == "json" else ss.get("con_body_raw", "") if kind == "raw" else ""
    return console.RequestDraft(
        connection_key=chosen.key, action_id=action.id, method=action.method, path_template=action.path,
        path_values=path_values, query=query, headers=headers, body_kind=kind or "none", body_text=body_text,
        form=form, files=files, custom=action.custom)


# --- response ---------------------------------------------------------------------------------------------------
@dataclass
class ShownCall:
    """The last call of this session, kept to show it again on reruns."""

    outcome: console.CallOutcome
    view: console.ResponseView | None
    platform: str


def remember(outcome: console.CallOutcome, settings: Settings, platform: str) -> ShownCall:
    view = None
    if outcome.response is not None:
        view = console.response_view(outcome.response, display_limit=settings.display_body_limit,
                                     secret=settings.effective_secret().reveal())
    return ShownCall(outcome, view, platform)


def offer_reconnect(shown: ShownCall, chosen: ChosenConnection | None, principal: Principal,
                    settings: Settings) -> None:
    """A 401 on the chosen connection means the user must reconnect (the message above says so): the link to it."""
    if (shown.view is not None and shown.view.status == 401 and chosen is not None and chosen.connection is not None
            and chosen.key == shown.outcome.prepared.connection_key):
        reconnect_link(principal, chosen.connection, chosen.platform, settings=settings, where="-response")


def render_call(shown: ShownCall, settings: Settings, *, key: str) -> None:
    """Status, time, size, the passthrough headers and the body; upstream errors as sent, with their meaning."""
    outcome, view = shown.outcome, shown.view
    record_id = outcome.record.id if outcome.record else None
    path = scrub_spelt(outcome.prepared.display_path, settings.effective_secret().reveal())  # as History keeps it
    st.caption(f"{outcome.prepared.method} {plain(path)}"
               + (f" · history #{record_id}" if record_id else ""))
    if outcome.not_recorded:
        st.warning(plain(f"Sent, but History could not keep this call ({outcome.not_recorded}): copy what you need "
                         "from here before you send another."), icon=":material/history_toggle_off:")
    secret = settings.effective_secret().reveal()
    if outcome.error is not None:
        error = copy.copy(outcome.error)  # its path may hold the secret typed into a field: masked as above
        error.message, error.path = scrub_spelt(error.message, secret), scrub_spelt(error.path, secret)
        if not error.maybe_delivered:
            show_error(error, what="Pica did not forward the call")
        elif not console.outcome_unknown(outcome.prepared.method, error):
            show_error(error, what="No answer to the call")
        else:  # "retry" would be the wrong advice: the write may be done, and a second send do it twice
            st.warning(f"**Whether this {outcome.prepared.method} was carried out is unknown**: it went out and no "
                       "answer came back. Check on the platform before you send it again: a second send may do it "
                       "twice.", icon=":material/help:")
            error.hint = "Not a reason to send it again at once: see above."  # its own said "retry"
            show_error(error, what="No answer to the call")
        _exports(outcome.prepared, settings, key=key)
        return
    assert view is not None
    # As wide as each value, side by side while they fit: a fixed column cut "401 Unauthori…" at 1024 px.
    row = st.container(horizontal=True, gap="large")
    row.metric("Status", f"{view.status} {view.reason}", width="content")
    row.metric("Time", f"{view.elapsed_ms:.0f} ms", width="content")
    row.metric("Size", console.format_size(view.size), width="content")
    if waits := (outcome.response.waits if outcome.response else []):  # the time above is not the platform's alone
        first = scrub(waits[0][1], secret)
        st.caption(plain(f"Asked {len(waits) + 1} times (the first: {first}); the console waited "
                         f"{sum(w for w, _ in waits):.1f} s in all between them, which the time above includes."))
    if view.meaning:
        (st.error if view.status in (401, 403) or view.status >= 500 else st.warning)(
            view.meaning, icon=":material/report:")
    if view.note:
        st.info(view.note, icon=":material/content_cut:")
    body_tab, headers_tab, export_tab = st.tabs(["Body", f"Headers ({len(view.passthrough_headers)})", "Export"])
    with body_tab:
        if view.kind == "records":
            where = f" under {plain(view.records_key)}" if view.records_key else ""
            st.caption(f"{len(view.records or [])} records{where}")
            if view.around:  # the page token and counts beside them, one a line: the table would hide them
                st.code("\n".join(f"{k}: {v}" for k, v in view.around.items()), language="yaml", wrap_lines=True)
            st.dataframe(pd.DataFrame(console.flatten_records(view.records or [])), hide_index=True, width="stretch")
            with st.expander("JSON"):
                st.code(view.display, language="json")
        elif view.kind == "json":
            st.code(view.display, language="json")
        elif view.kind == "text":
            st.code(view.display, language="text")
        elif view.kind == "empty":
            st.caption("Empty body.")
        if view.size:
            st.download_button("Download body", view.body, file_name=f"response-{record_id or 'last'}.{view.extension}",
                               mime=view.content_type.split(";")[0] or None, key=f"{key}_download",
                               icon=":material/download:", on_click="ignore")
    with headers_tab:
        if view.passthrough_headers:
            st.dataframe(pd.DataFrame(sorted(view.passthrough_headers.items()), columns=["header", "value"]),
                         hide_index=True, width="stretch")
        st.caption("Pica re-emits each header of the platform's answer as `x-pica-passthrough-<name>`.")
    with export_tab:
        _exports(outcome.prepared, settings, key=key)


def _exports(prepared: console.PreparedRequest, settings: Settings, *, key: str) -> None:
    base, secret = public_url(settings.api_url, settings) or "", settings.effective_secret().reveal()
    curl_tab, python_tab = st.tabs(["curl", "Python (httpx)"])
    curl_tab.code(console.export_curl(prepared, base, secret=secret), language="bash")
    python_tab.code(console.export_httpx(prepared, base, secret=secret), language="python")
    needed = ["`PICA_SECRET_KEY`", *(f"`{variable}` ({plain(name)}'s value)"
                                       for variable, name in console.export_variables(prepared, secret))]
    in_query = any(variable.startswith("QUERY_") for variable, _ in console.export_variables(prepared, secret))
    st.caption(f"Set {', '.join(needed[:-1]) + ' and ' + needed[-1] if len(needed) > 1 else needed[0]} in your "
               "shell first: credentials are never part of an export."
               + (" The curl command adds the query's with `--url-query`, which needs curl 7.87 or later."
                  if in_query else ""))


# --- history ----------------------------------------------------------------------------------------------------
@guarded  # a callback: it runs before the page, outside the shell's handler
def load_into_builder(store: Store, call_id: int) -> None:
    """on_click: put a stored call into the builder (raw mode: its path is already filled)."""
    record = store.call(call_id)
    if record is None:
        return
    draft = console.draft_from_record(record)
    ss["con_conn_mode"] = "Connection key"
    ss["con_key"] = record.connection_key
    ss["con_action_mode"] = "Raw"
    ss["con_raw_method"] = record.method
    ss["con_raw_path"] = record.path
    ss["con_raw_action_id"] = record.action_id
    ss["con_raw_custom"] = False  # a stored body already carries its connectionKey
    ss["con_raw_title"] = record.action_title
    ss["con_action_seen"] = record.action_id
    set_table("con_params", [(k, "" if v == console.REDACTED else v) for k, v in draft.query])  # typed again
    set_table("con_headers", [(k, v) for k, v in draft.headers if v != console.REDACTED])
    ss["con_authorization"] = ""
    ss["con_body_kind"] = draft.body_kind
    if draft.body_kind == "json":
        ss["con_body_json"] = draft.body_text
    elif draft.body_kind == "raw":
        ss["con_body_raw"] = draft.body_text
    elif draft.body_kind in ("form", "multipart"):
        set_table(f"con_{draft.body_kind}", draft.form)
    redacted = [k for k, v in [*draft.headers, *draft.query] if v == console.REDACTED]
    note = f"Loaded call #{call_id} into the builder."
    if redacted:
        note += f" Enter {plain(', '.join(redacted))} again: credentials are not stored."
    if record.request_truncated:
        note += " Its body was truncated in history: paste the whole body."
    ss["con_notice"] = note
    ss["con_tab"] = "Builder"


def history_filters(store: Store) -> dict:
    platform_col, action_col, status_col, text_col = st.columns([1, 1, 1, 2])
    platforms = ["any", *store.call_platforms()]
    if ss.get("con_h_platform") not in platforms:
        ss["con_h_platform"] = "any"
    platform = platform_col.selectbox("Platform", platforms, key="con_h_platform")
    action = action_col.text_input("Action", key="con_h_action", placeholder="title or id")
    status = status_col.text_input("Status", key="con_h_status", placeholder="e.g. 429 or 4xx")
    text = text_col.text_input("Full text", key="con_h_text", placeholder="identity, query, path, bodies…")
    filters: dict = {"platform": None if platform == "any" else platform, "action": action.strip() or None,
                     "text_query": text.strip() or None, "status": None}
    try:
        filters["status"] = console.status_filter(status)
    except InvalidInputError as exc:  # the other filters still apply
        st.caption(f":orange[{plain(exc.message)} The status filter is ignored.]")
    return filters


def history_table(records: list[PassthroughCallRecord]) -> PassthroughCallRecord | None:
    """The calls as a table; the one its reader selected (any of them: the details below list the latest few)."""
    frame = pd.DataFrame([{
        "#": r.id, "when": r.at,
        # Pica's own refusal or failure (its 429, its 502) apart from the platform's answer of the same status
        "status": (f"{r.status} (Pica)" if r.error else str(r.status)) if r.status else "—",  # —: no answer came
        "method": r.method, "path": r.path, "action": r.action_title or r.action_id,
        "platform": r.platform, "identity": console.identity_of_key(r.connection_key), "ms": r.elapsed_ms,
        "size": r.response_size, "by": r.actor,
    } for r in records])
    ids = [str(r.id) for r in records]
    picked = selection_table(frame, ids, ss.get(_PICKED_CALL, ""), name="con_h_table", hide_index=True,
                             width="stretch", height=min(400, 38 + 35 * len(records)),
                             column_config={"when": when_column("when"),
                                            "ms": st.column_config.NumberColumn(format="%.0f")})
    ss[_PICKED_CALL] = picked
    return records[ids.index(picked)] if picked in ids else None


_PICKED_CALL = "con_h_picked"  # the id of the call selected in History's table


def history_entry(record: PassthroughCallRecord, settings: Settings, store: Store, *, opened: bool = False) -> bool:
    """One call: its request and response, Replay and Load buttons, exports. True when Replay was clicked."""
    icon = ":material/check_circle:" if record.status and record.status < 400 else ":material/error:"
    with st.expander(f"{plain(console.history_label(record))} · {ago(record.at)}", icon=icon, expanded=opened):
        # A write that may have been carried out already is sent again only once the reader says so: a second
        # press of Replay itself was one double-click away.
        # The tick serves one replay: the press untick it (a second press sent it a third time).
        unsure = bool(record.error and record.error.endswith(console.OUTCOME_UNKNOWN))
        approved = unsure and ss.get(_APPROVED_REPLAY) == record.id
        if approved:
            del ss[_APPROVED_REPLAY]
        again = unsure and st.checkbox("I checked on the platform: send it again", key=f"con_again_{record.id}")
        buttons = st.container(horizontal=True)  # each as wide as its label: a fifth of 1024 px read "Load …"
        replay = buttons.button("Replay", key=send_key(f"con_replay_{record.id}"), icon=":material/replay:",
                                disabled=unsure and not (again or approved),
                                help="It may have been carried out already: check, then tick the box above."
                                if unsure and not again else None,
                                on_click=_approve_replay if unsure else None, args=(record.id,) if unsure else None,
                                ) and (approved or not unsure)
        buttons.button("Load into builder", key=f"con_load_{record.id}", icon=":material/edit:",
                        on_click=load_into_builder, args=(store, record.id))
        st.caption(plain(f"{record.environment} · {record.connection_key} · action {record.action_id} · "
                         f"by {record.actor}"))
        request_col, response_col = st.columns(2)
        with request_col:
            st.markdown("**Request**")
            if record.query:
                st.caption("Query: " + plain(" & ".join(f"{k}={v}" for k, v in record.query)))
            if record.request_headers:  # as sent, one a line: a caption's markdown collapsed a value's spaces
                st.code("\n".join(f"{k}: {v}" for k, v in record.request_headers.items()), language="text")
            if record.request_body:
                st.code(console.pretty_json(record.request_body) if record.body_kind == "json" else record.request_body,
                        language="json" if record.body_kind == "json" else "text", height=200)
            if record.request_truncated:
                st.caption(f"Body cut at {console.format_size(settings.history_body_limit)} in history.")
        with response_col:
            st.markdown(f"**Response** {record.status or ''}")
            if record.error and record.error.endswith(console.OUTCOME_UNKNOWN):
                st.warning(plain(record.error), icon=":material/help:")  # Replay would send it a second time
            elif record.error:
                st.error(plain(record.error))
            if record.response_body:
                st.code(console.pretty_json(record.response_body), language="json", height=200)
            if record.response_truncated:
                st.caption(f"{console.format_size(record.response_size)}; history keeps the first "
                           f"{console.format_size(settings.history_body_limit)}.")
        try:
            prepared = console.replay_request(record, for_export=True)
        except InvalidInputError as exc:
            st.caption(f"No export: {plain(exc.message)}")
        else:
            _exports(prepared, settings, key=f"con_export_{record.id}")
    return replay


_APPROVED_REPLAY = "con_replay_approved"  # the call whose Replay was pressed with its box ticked


def _approve_replay(record_id: int) -> None:
    """on_click of a Replay that waits for a tick: this press is approved, and the box unticked for the next."""
    if ss.get(f"con_again_{record_id}"):
        ss[_APPROVED_REPLAY] = record_id
    ss[f"con_again_{record_id}"] = False


def compare_panel(records: list[PassthroughCallRecord]) -> None:
    if len(records) < 2:
        st.caption("Compare needs at least two calls in the list.")
        return
    by_id = {r.id: r for r in records}
    ids = list(by_id)
    left_col, right_col = st.columns(2)
    newest = ids[0]  # keyed by it: a new call brings the choice back to the latest two
    left_id = left_col.selectbox("Left", ids, index=1, key=f"con_cmp_left_{newest}",
                                 format_func=lambda i: console.history_label(by_id[i]))
    right_id = right_col.selectbox("Right", ids, index=0, key=f"con_cmp_right_{newest}",
                                   format_func=lambda i: console.history_label(by_id[i]))
    result = console.compare(by_id[left_id], by_id[right_id])
    st.dataframe(pd.DataFrame(result.summary).astype({"left": str, "right": str}), hide_index=True, width="stretch")
    if result.same_body:
        st.success(result.verdict, icon=":material/difference:")
    elif result.verdict:  # no body, or bodies history keeps only the first part of
        st.info(result.verdict, icon=":material/difference:")
    if result.diff:
        st.code(result.diff, language="diff", height=240)
    left_col, right_col = st.columns(2)
    left_col.code(result.left or "(empty)", language="json", height=360)
    right_col.code(result.right or "(empty)", language="json", height=360)


# --- sending ----------------------------------------------------------------------------------------------------
_LAST_CALL = "con_last_call"
CALL_WAIT_SECONDS = 120  # longer than a call with its retries takes


@dataclass
class CallInFlight:
    """A call of this session from the moment it is sent: the run that sends it fills it in, and whichever run
    draws the page next shows it. A click during a call starts a new run at once (Streamlit's fast reruns) and
    stops the sending run at its next element: what comes back must not be lost, nor the click send it again."""

    number: int  # the session's how-manyth call: sending buttons' keys end with it (`send_key`)
    label: str
    keep: Callable[[ShownCall], None]
    sent_at: float = field(default_factory=time.time)
    shown: ShownCall | None = None
    error: Exception | None = None  # a PicaError: not sent; anything else: logged, shown as such
    landed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def send_key(name: str) -> str:
    """A sending button's key, new with every call: a click queued while a call is on its way (a second, impatient
    click) belongs to the button as it was and sends nothing again."""
    last = st.session_state.get(_LAST_CALL)
    return f"{name}_{last.number if last else 0}"


def execute(prepared: console.PreparedRequest, *, settings: Settings, client: PicaClient, store: Store,
            principal: Principal, platform: str, action_title: str | None, confirmed: bool,
            keep: Callable[[ShownCall], None]) -> None:
    """Send a checked request if this person may (writes: console_write; live writes: confirmation), then draw
    the page again: `land_call` shows the answer (`keep` puts it where the page draws it)."""
    refusal = console.send_refusal(prepared.method, prepared.connection_key, can_write=principal.can("console_write"),
                                   why_not_write=principal.why_not("console_write"), live_confirmed=confirmed)
    if refusal:
        st.warning(f"Not sent: {refusal}", icon=":material/lock:")
        return
    last = st.session_state.get(_LAST_CALL)
    shown_path = scrub_spelt(prepared.display_path, settings.effective_secret().reveal())  # the secret typed in a field
    call = CallInFlight(number=(last.number if last else 0) + 1, label=f"{prepared.method} {shown_path}", keep=keep)
    st.session_state[_LAST_CALL] = call  # one write: Streamlit may stop this run at any session-state access
    with st.spinner(f"{plain(call.label)}…"):
        try:  # no Streamlit call until done: a stopped run still finishes the call and hands it over
            call.shown = remember(console.run_call(client, store, prepared, actor=principal.name, platform=platform,
                                                   action_title=action_title,
                                                   secret=settings.effective_secret().reveal(),
                                                   body_limit=settings.history_body_limit), settings, platform)
        except PicaError as exc:  # refused by the client before anything was sent
            call.error = exc
        except Exception as exc:  # the history could not be written, say: the next run must not wait in vain
            log.exception("console call failed")
            call.error = exc
        finally:
            call.done.set()
    st.rerun()


def land_call() -> None:
    """The session's last call, once, where the page shows it: waited for when another run is still sending it."""
    call = st.session_state.get(_LAST_CALL)
    if call is None or call.landed:
        return
    if not call.done.is_set():
        with st.spinner(f"{plain(call.label)}: waiting for the answer (sent {ago(call.sent_at)})…"):
            call.done.wait(CALL_WAIT_SECONDS)
        if not call.done.is_set():
            st.warning(f"{plain(call.label)} has had no answer for {CALL_WAIT_SECONDS} s: it will show here when "
                       "it comes, or find it in History.", icon=":material/hourglass_top:")
            return
    if call.shown is not None:
        call.keep(call.shown)
    elif call.error is not None:
        show_error(call.error, what="Not sent" if isinstance(call.error, PicaError) else "The call")
    call.landed = True  # after: a run stopped while keeping it leaves it for the next
