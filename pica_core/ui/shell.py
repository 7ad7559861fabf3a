"""The frame around every page: page config, sign-in, navigation by role, banner, safety net."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from ..access import NO_ROLE, Principal
from ..config import Settings
from ..text import plain
from . import context
from .layout import banner, note_page, show_flashes, unexpected_error

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"

# (key, file, title, icon, section); the key is the access.PAGES entry and the URL path.
PAGES = (
    ("overview", "overview.py", "Overview", ":material/dashboard:", "Monitor"),
    ("fleet", "fleet.py", "Fleet health", ":material/monitor_heart:", "Monitor"),
    ("connections", "connections.py", "Connections", ":material/link:", "Support"),
    ("connect", "connect.py", "Connect", ":material/add_link:", "Support"),
    ("catalog", "catalog.py", "Catalog", ":material/apps:", "Product"),
    ("console", "console.py", "Console", ":material/terminal:", "Engineering"),
    ("audit", "audit.py", "Audit log", ":material/policy:", "Admin"),
    ("settings", "settings.py", "Settings", ":material/settings:", "Admin"),
)


def _sign_in() -> None:
    st.title("Pica integration ops")
    st.write("Sign in with your company account to continue.")
    st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")


def _no_role(principal: Principal, settings: Settings) -> Callable[[], None]:
    def page() -> None:
        st.title("Pica integration ops")
        st.warning(f"You are signed in as **{plain(principal.name)}**, and no role of this dashboard is given to "
                   "your account: ask an admin to map one of your groups (or your email) in `ROLE_MAP`.",
                   icon=":material/lock:")
        st.caption(f"Groups are read from the `{plain(settings.roles_claim)}` claim of your sign-in.")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:")
    return page


def run() -> None:
    st.set_page_config(page_title="Pica integration ops", page_icon=":material/hub:", layout="wide")
    settings = context.settings()
    principal = context.principal(settings)
    if principal is None:
        st.navigation([st.Page(_sign_in, title="Sign in", icon=":material/login:")], position="hidden").run()
        return
    if principal.role == NO_ROLE:  # the identity provider vouched for them; nobody here gave them a role
        st.navigation([st.Page(_no_role(principal, settings), title="No access", icon=":material/lock:",
                               url_path="no-access")], position="hidden").run()
        return

    sections: dict[str, list] = {}
    for key, filename, title, icon, section in PAGES:
        if principal.sees(key):
            sections.setdefault(section, []).append(
                st.Page(str(PAGES_DIR / filename), title=title, icon=icon, url_path=key, default=key == "overview"))
    page = st.navigation(sections)
    st.set_page_config(page_title=f"{page.title} · Pica ops")  # tabs and history told apart (all had one title)
    with st.sidebar:
        mode = "Sandbox" if settings.sandbox else f"Live · {settings.environment}"
        st.caption(f":material/hub: **{mode}** · {principal.name} ({principal.role})")
        if principal.signed_in:
            st.button("Sign out", on_click=st.logout, icon=":material/logout:", type="tertiary")
    banner(settings, principal)
    show_flashes()
    note_page(page.url_path)
    try:
        page.run()
    except Exception as exc:  # the safety net: no traceback ever reaches a user
        unexpected_error(exc, f"page {page.title}")
