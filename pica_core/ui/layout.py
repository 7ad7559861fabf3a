"""Shared rendering: banners, error messages, state badges, small formatting helpers."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, UTC

import pandas as pd
import streamlit as st

from ..access import Principal
from ..caching import Fetched
from ..config import Settings
from ..exports import csv_file
from ..errors import InvalidInputError, PicaError, RateLimitedError
from ..health import STATE_COLOR, STATE_HEX, state_label  # noqa: F401  (pages use it from here)
from ..models import IDENTITY_TYPES
from ..text import plain


KEPT_SUFFIX = ".kept"
log = logging.getLogger("pica_core.ui")


def unexpected_error(exc: Exception, where: str) -> None:
    """The safety net's message: no traceback ever reaches a user (it goes to the log)."""
    log.exception("%s failed", where)
    st.error(f"This page hit an unexpected error ({type(exc).__name__}). It was logged; reload to try again.",
             icon=":material/error:")


def guarded(draw: Callable) -> Callable:
    """`draw` under the safety net, for what Streamlit runs outside the page's run and the shell's handler (a
    widget's callback, a fragment's own rerun), where an error showed Streamlit's own error box."""
    @functools.wraps(draw)
    def run(*args, **kwargs):
        try:
            return draw(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - st.rerun and st.stop are BaseExceptions and pass
            unexpected_error(exc, draw.__qualname__)

    return run


def safe_fragment(run_every: float | None = None) -> Callable[[Callable], Callable]:
    """`st.fragment` under the safety net: its timer's reruns run it alone."""
    return lambda draw: st.fragment(guarded(draw), run_every=run_every)


def banner(settings: Settings, principal: Principal) -> None:
    """The line every page starts with: which Pica this is, and what this session may do."""
    if settings.sandbox:
        # The mounted emulator, or the one PICA_API_URL names (a standalone sandbox): not Pica either way.
        where = ("the built-in Pica emulator" if settings.sandbox_mounted or not settings.api_url
                 else f"the sandbox at `{plain(settings.api_url)}`")
        st.info(f"**Sandbox mode**: this dashboard talks to {where} with demo data, not to Pica. "
                "Set `PICA_SECRET_KEY` to use your Pica account.", icon=":material/science:")
    if principal.read_only_reason:
        st.warning(principal.read_only_reason, icon=":material/lock:")
    elif not principal.signed_in and settings.sandbox:
        st.caption(":material/person: Running as a local admin: sign-in is not configured (fine for the sandbox).")


_FLASH = "flash-messages"


def flash(message: str) -> None:
    """A toast for the next run: one raised just before st.rerun() is often lost with the run it belonged to."""
    st.session_state.setdefault(_FLASH, []).append(message)


def show_flashes() -> None:
    for message in st.session_state.pop(_FLASH, []):
        st.toast(message)


def show_error(error: Exception, *, what: str | None = None) -> None:
    """A readable message and what to do next: never a traceback. Pica's words are shown as text."""
    prefix = f"{plain(what)}: " if what else ""
    if isinstance(error, InvalidInputError):
        st.error(f"{prefix}{plain(error.message)}", icon=":material/edit_off:")
    elif isinstance(error, RateLimitedError):
        st.warning(f"{prefix}{plain(error.message)}", icon=":material/hourglass_top:")
    elif isinstance(error, PicaError):
        st.error(f"{prefix}{plain(str(error))}", icon=":material/cloud_off:")
    else:
        st.error(f"{prefix}Something went wrong ({type(error).__name__}). The details are in the server log.",
                 icon=":material/error:")
        return
    hint = error.hint_now()  # the error may be remembered a while (a held failure)
    if "\n" in hint:  # an excerpt with a caret under the fault: its spacing is the point
        st.code(hint, language="text")
    else:
        st.caption(plain(hint))


def show_fetch_problem(fetched: Fetched, what: str, *, again: str = "") -> None:
    """Why `what` ("the catalog") could not be read from Pica just now, with what to do. When the last good answer
    is shown instead, a warning says how old it is (`again`: how to try again, where the page has a way)."""
    if fetched.error is None:
        return
    if isinstance(fetched.error, InvalidInputError) and fetched.error.status is None:
        show_error(fetched.error)  # refused here, before any request: Pica was not asked
        return
    if not fetched.stale:
        show_error(fetched.error, what=f"Could not read {what} from Pica")
        return
    st.warning(f"Pica could not give {plain(what)} just now, so this is what it answered "
               f"**{ago(fetched.fetched_at)}**. {again}".rstrip(), icon=":material/cloud_off:")
    # The hint as it reads now (a held failure: "retry in 2 s" shown 25 s on misled)
    st.caption(plain(" — ".join(filter(None, (str(fetched.error), fetched.error.hint_now())))))


def state_metric_label(state: str) -> str:
    """Markdown label with a coloured dot, for st.metric and prose."""
    return f":{STATE_COLOR.get(state, 'gray')}[●] {state}"


def style_states(frame, column: str = "state"):
    """A pandas Styler colouring the state column's text (dataframes cannot take markdown)."""
    def color(value: object) -> str:
        state = str(value).replace("●", "").strip()
        return f"color: {STATE_HEX.get(state, '#64748b')}; font-weight: 600"

    return frame.style.map(color, subset=[column])


def keep_widgets(names: Iterable[str]) -> None:
    """Streamlit drops the state of a widget a run does not draw. Assigned again, a value survives while its widget
    is off screen on this page (another mode, another tab); a copy under `<name>.kept` brings it back after a visit
    to another page, whose runs drop it all the same. Call before drawing the widgets."""
    state = st.session_state
    for name in names:
        if name in state:
            state[name] = state[name + KEPT_SUFFIX] = state[name]
        elif name + KEPT_SUFFIX in state:
            state[name] = state[name + KEPT_SUFFIX]


_PAGE_NOW, _PAGE_ARRIVED = "page.now", "page.arrived"


def note_page(url_path: str) -> None:
    """The shell, before each run of a page: which page runs, and whether the session just came to it."""
    st.session_state[_PAGE_ARRIVED] = st.session_state.get(_PAGE_NOW) != url_path
    st.session_state[_PAGE_NOW] = url_path


def arrived() -> bool:
    """This run opens the page (a link, the sidebar, a first visit), rather than rerunning it."""
    return st.session_state.get(_PAGE_ARRIVED, True)


def bring_into_view(container_key: str, subject: str) -> None:
    """Scroll the browser to the container keyed `container_key` when the page was just opened on it, or when
    `subject` (what it shows: a connection's id) is new to it: a link from another page opens on its detail, not on
    a table with the detail below the fold. Not on reruns about the same subject (an edit, a refresh), nor for one
    `chosen_in_place`."""
    if st.session_state.get(_in_view(container_key)) == subject and not arrived():
        return
    chosen_in_place(container_key, subject)
    target = json.dumps(f".st-key-{container_key}")
    st.html(f"<script>document.querySelector({target})?.scrollIntoView({{block: 'start'}})</script>",
            unsafe_allow_javascript=True, width="content")


def chosen_in_place(container_key: str, subject: str) -> None:
    """The reader chose `subject` where they are looking (a table's row): `bring_into_view` leaves the page where
    it is, so the next row is one click away."""
    st.session_state[_in_view(container_key)] = subject


def _in_view(container_key: str) -> str:
    """The session key for what the container last showed in view."""
    return f"{container_key}.in-view"


def drop_unread_params(reads: Sequence[str], aliases: Sequence[str] = (), *, say: bool = True) -> list[str]:
    """Take out of the address, and name, the parameters this page does not read (`reads`, or `aliases` of them): a
    misspelt filter (`?actor=` for `?who=`) left the page showing everything, with no word that the link meant less.
    Returns them as `name=value`; `say=False` leaves saying so to the page (`say_ignored`)."""
    unread = [name for name in st.query_params if name not in reads and name not in aliases]
    named = [f"{name}={st.query_params.get(name, '')[:40]}" for name in unread]
    for name in unread:
        del st.query_params[name]
    if say:
        say_ignored(named, reads)
    return named


def say_ignored(unread: Sequence[str], reads: Sequence[str], unknown: Sequence[str] = (), knows: str = "") -> None:
    """One line for what a link held that the page did not use: parameters it does not read (`unread`; it reads
    `reads`) and values it does not know (`unknown`, not what `knows` names)."""
    parts = [f"{', '.join(unread)}: this page's links take {', '.join(reads)}"] if unread else []
    if unknown:
        parts.append(f"{', '.join(unknown)}, which {knows} does not know" if parts
                     else f"what {knows} does not know: {', '.join(unknown)}")
    if parts:
        st.warning(plain(f"Ignored {'; and '.join(parts)}."), icon=":material/link_off:")


def warn_unknown_identity_type(value: str | None, then: str) -> None:
    """A link whose identityType is none of Pica's: said once, with what the page does instead."""
    if value and value.strip().lower() not in (*IDENTITY_TYPES, "any"):
        st.warning(f"The link's identity type {plain(value)} is not one of {', '.join(IDENTITY_TYPES)}: {then}.",
                   icon=":material/link_off:")


def csv_download(label: str, make_csv: Callable[[], str], file_name: str, **options) -> None:
    """A CSV download, built when clicked (`make_csv`: a large one took a second on every run of its page), as the
    file Excel reads right (`csv_file`)."""
    st.download_button(label, lambda: csv_file(make_csv()), file_name=file_name, mime="text/csv",
                       icon=":material/download:", on_click="ignore", **options)


def when_column(label: str, *, seconds: bool = True):
    """A table's date column, written the same way on every page and said to be UTC."""
    return st.column_config.DatetimeColumn(f"{label} (UTC)", format="YYYY-MM-DD HH:mm" + (":ss" if seconds else ""),
                                           timezone="UTC")


def state_badge(state: str | None) -> str:
    """Markdown badge for prose and headers."""
    state = state or "unknown"
    return f":{STATE_COLOR.get(state, 'gray')}-badge[{state}]"


def ago(moment: datetime | float | None, now: float | None = None) -> str:
    if moment is None:
        return "never"
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.timestamp()
    seconds = max(0, (now or time.time()) - moment)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def public_url(url: str | None, settings: Settings) -> str | None:
    """A mounted-sandbox asset URL as the browser can load it.

    The server reaches the sandbox at the address it listens on (127.0.0.1, or the one interface it is bound to),
    which a remote browser may not (a proxy, a published port); image cells need absolute URLs, so rewrite to the
    origin the browser used for this page. A standalone sandbox's URL is what it is.
    """
    if not (url and settings.sandbox_mounted and settings.api_url and url.startswith(settings.api_url)):
        return url
    from urllib.parse import urlsplit

    internal = urlsplit(settings.api_url)
    browser = urlsplit(st.context.url or "")
    if not browser.scheme or not browser.netloc:
        return url
    return f"{browser.scheme}://{browser.netloc}{url[len(f'{internal.scheme}://{internal.netloc}'):]}"


def app_base() -> str:
    """The path the app is served under, for links in tables: '/' unless `server.baseUrlPath` sets one."""
    return "/" + (st.get_option("server.baseUrlPath") or "").strip("/")


def selection_table(frame: pd.DataFrame, ids: Sequence[str], selected: str, *, name: str, **options) -> str:
    """A single-row-select st.dataframe of rows `ids` showing `selected`; returns the id now selected ("" = none).

    A selection is a row position, so the table is keyed on its rows: a selection never outlives the rows it
    pointed at. The widget keeps its own selection (and the reader's sorting) while its key stays; so when
    `selected` moved from outside (a new lookup dropped it, a link chose another) while the widget did not, the
    key moves on to show it, and only then: a click keeps the table as the reader sorted it. Only a change of the
    selection since the last run moves `selected`, so an item opened from the URL stays selected while its row is
    filtered out of view.
    """
    ids = tuple(ids)
    rows_key = f"{name}." + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
    memory = f"{name}:last-selection"  # (widget key, rows) of the last run
    last_key, last_rows = st.session_state.get(memory, ("", []))
    key = last_key if last_key.startswith(rows_key + ".") else f"{rows_key}.0"
    if key == last_key:
        state = st.session_state.get(key)
        rows_now = list(state["selection"]["rows"]) if state else last_rows
        shown = ids[rows_now[0]] if rows_now and rows_now[0] < len(ids) else ""
        if rows_now == last_rows and shown != selected:
            key = f"{rows_key}.{int(key.rsplit('.', 1)[1]) + 1}"
    default = [ids.index(selected)] if selected in ids else []
    event = st.dataframe(frame, key=key, on_select="rerun", selection_mode="single-row",
                         selection_default={"selection": {"rows": default, "columns": []}}, **options)
    rows = list(event.selection.rows)
    if rows != (last_rows if key == last_key else default):
        selected = ids[rows[0]] if rows and rows[0] < len(ids) else ""
    st.session_state[memory] = (key, rows)
    return selected
