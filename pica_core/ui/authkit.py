"""The AuthKit widget as a Streamlit component (components v2: its JS runs in the app's page).

The JS (authkit.js) is our own implementation of the host side of the widget protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

_JS = (Path(__file__).with_name("authkit.js")).read_text(encoding="utf-8")
_CSS = ":host { display: none; }"  # nothing to show in place: the widget is a window-wide overlay

_component = st.components.v2.component("pica_authkit", js=_JS, css=_CSS)


def _ignore() -> None:
    """Trigger values reach Python only for events with a callback; the page reads them from the result."""


def authkit_widget(*, key: str, nonce: str, base_url: str, token_url: str, headers: dict[str, str],
                   title: str, selected_connection: str | None, theme: str | None) -> Any:
    """Open the widget (once per nonce) and return the component's result (`connection`, `event`)."""
    data = {
        "nonce": nonce, "baseUrl": base_url, "tokenUrl": token_url, "headers": headers, "title": title,
        "selectedConnection": selected_connection, "appTheme": theme, "companyName": "Pica integration ops",
    }
    return _component(key=key, data=data, height=0, on_connection_change=_ignore, on_event_change=_ignore)
