"""Settings (admins): the effective configuration, roles, and the operations that change how the dashboard behaves."""

import os

import httpx
import pandas as pd
import streamlit as st

from pica_core.caching import last_good
from pica_core.config import DEFAULT_SECRETS_PATH, read_secrets_file
from pica_core.errors import ConfigError
from pica_core.sandbox.state import FAULT_KINDS
from pica_core.settings_view import configuration_rows
from pica_core.text import plain
from pica_core.ui import context

settings = context.settings()
store = context.store(settings)
principal = context.principal(settings)
reason = principal.why_not("settings")

st.title("Settings")
if not principal.can("audit"):  # not in other roles' navigation; this guards direct use
    st.error(principal.why_not("audit"), icon=":material/lock:")
    st.stop()


def _said(response: httpx.Response) -> str:
    """The sandbox's reason for refusing, from its error body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    said = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return str(said) if isinstance(said, str) else f"{response.status_code} {response.reason_phrase}"


def audited(operation: str, outcome: str, **detail) -> None:
    store.audit(actor=principal.name, action="settings", target=operation, outcome=outcome, **detail)


st.subheader("Configuration")
st.caption("From the environment, then `.streamlit/secrets.toml`, then defaults. Change them there and restart; "
           "secrets are masked.")
try:
    secrets_file = read_secrets_file(DEFAULT_SECRETS_PATH)
except ConfigError:
    secrets_file = {}
for note in settings.ignored:  # set, and not read: a misspelt name, a setting under a [table]
    st.warning(plain(note), icon=":material/warning:")
# The values are what is read here (URLs, paths): they get the width, the names as wide as the longest.
st.dataframe(pd.DataFrame(configuration_rows(settings, os.environ, secrets_file)), hide_index=True, width="stretch",
             column_config={"setting": st.column_config.TextColumn("setting", width=235),
                            "value": st.column_config.TextColumn("value", width=220),
                            "source": st.column_config.TextColumn("source", width=110)})

st.subheader("Access")
left, right = st.columns(2)
left.markdown(f"You: **{principal.name}** · role **{principal.role}**"
              + ("" if principal.signed_in else " · sign-in not configured"))
# Without sign-in nobody is signed in to map: "everyone is a viewer" beside "role admin" read as a contradiction.
no_map = ("none (nobody signed in has a role: `*=viewer` gives everyone one)" if principal.signed_in
          else "none (it applies once sign-in is configured)")
right.markdown("Role map (`ROLE_MAP`, claim `" + settings.roles_claim + "`): "
               + (", ".join(f"`{g}` → {r}" for g, r in settings.role_map.items()) or no_map))

st.subheader("Operations")
clear = st.button("Clear the dashboard's caches", icon=":material/cached:", disabled=bool(reason), help=reason
                  or "Catalog, connections and reachability are read again from Pica on the next view.")
if clear and principal.can("settings"):
    st.cache_data.clear()
    last_good.clear()
    audited("clear caches", "ok")
    st.toast("Caches cleared")

if settings.sandbox and settings.api_url:
    st.markdown("**Sandbox** (demo controls: they change what the emulator answers)")
    sandbox_headers = {"x-pica-secret": settings.effective_secret().reveal()}

    def sandbox_control(method: str, path: str, operation: str, **kwargs) -> None:
        if not principal.can("settings"):
            return
        try:
            response = httpx.request(method, f"{settings.api_url}/control/{path}", headers=sandbox_headers,
                                     timeout=15, **kwargs)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:  # the sandbox says why
            said = _said(exc.response)
            audited(operation, "error", error=said)
            st.error(f"The sandbox refused ({operation}): {plain(said)}. Nothing was changed.", icon=":material/error:")
            return
        except httpx.HTTPError as exc:
            audited(operation, "error", error=type(exc).__name__)
            st.error(f"The sandbox did not answer ({exc.__class__.__name__}): reload the page and try again.",
                     icon=":material/error:")
            return
        audited(operation, "ok", **kwargs.get("json", {}))
        st.cache_data.clear()
        st.toast(f"Sandbox: {operation} done")

    c1, c2 = st.columns(2)
    if c1.button("Reset the sandbox to its seed data", icon=":material/restart_alt:", disabled=bool(reason),
                 help=reason):
        sandbox_control("POST", "reset", "reset sandbox")
    if c2.button("Clear injected faults", icon=":material/healing:", disabled=bool(reason), help=reason):
        sandbox_control("DELETE", "faults", "clear sandbox faults")
    with st.form("fault"):
        st.caption("Inject a fault to see how the dashboard copes with a misbehaving Pica.")
        row = st.container(horizontal=True, gap="medium")  # wraps at 1024 px instead of cutting labels
        kind = row.selectbox("Fault", FAULT_KINDS, width=170)
        status = row.selectbox("Status (for status)", [503, 500, 502, 401, 403, 404], width=170,
                               help="401 and 403: Pica refusing the key; 429 is the rate_limit fault.")
        seconds = row.number_input("Seconds (latency, hang, rate_limit)", min_value=0.0, max_value=120.0, value=0.0,
                                   step=0.5, width=230, help="0: the sandbox's default for the fault.")
        count = row.number_input("For the next N requests", min_value=1, max_value=1000, value=3, width=190)
        path = row.text_input("Path prefix", value="/v1/", help="e.g. /v1/vault or /v1/authkit", width=200)
        if st.form_submit_button("Inject", disabled=bool(reason), help=reason):
            fault = {"kind": kind, "status": status, "count": int(count), "path": path.strip()}
            sandbox_control("POST", "faults", "inject sandbox fault", json=fault | ({"seconds": seconds} if seconds else {}))
    try:  # what "Clear injected faults" would clear
        pending = httpx.get(f"{settings.api_url}/control/faults", headers=sandbox_headers, timeout=5).json()["faults"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        pending = None
    if pending:
        st.caption("Injected, still to fire: " + "; ".join(
            plain(f"{f['kind']}{' ' + str(f['status']) if f['kind'] == 'status' else ''} on {f['path'] or 'every path'}"
                  f"{' (' + f['query'] + ')' if f['query'] else ''} × {f['count']}") for f in pending))
    elif pending == []:
        st.caption("No faults injected: the sandbox answers as Pica would.")
