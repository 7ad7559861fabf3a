"""The connection detail panel: record, state history, meaning, recent calls, and the actions on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pandas as pd
import streamlit as st

from ..access import Principal
from ..client import AsyncPicaClient
from ..config import Settings
from ..connections_view import TriageResult, merge_tags, stored_rows, triage
from .. import validation
from ..errors import InvalidInputError, NotFoundError, PicaError
from ..health import NEEDS_ATTENTION, describe_transition, meaning, timeline
from ..models import Connection
from ..store import Store, UserConnection
from ..text import count, plain
from . import context, data, jobs
from .layout import ago, flash, show_error, state_badge, style_states, when_column


TRIAGE_JOB = "triage-job"
TRIAGE_RESULTS = "triage"
TRIAGE_FAILURE = "triage-failure"  # what stopped the last triage, shown once
TRIAGE_LATER = "triage-later"  # the pasted identities past the first 500 (a BulkInput), triaged next on request
_HAD_TRIAGE = "triage-had"  # this session has had a triage (its own, or one taken up): `take_up_triage` is done
TRIAGE_LATER_BEFORE = "triage-later-before"  # TRIAGE_LATER before the next batch began: back if that batch fails


def start_triage(settings: Settings, identities: list[tuple[str, str | None]], *,
                 into: list[TriageResult] | None = None) -> jobs.Job:
    """Bulk triage on a thread of its own (a Look up, a tab or another page stops the page's run, not it); `into`:
    earlier results, whose entries for these identities the new ones replace."""
    def work(job: jobs.Job) -> list[TriageResult]:
        async def run() -> list[TriageResult]:
            async with AsyncPicaClient.from_settings(settings, on_retry=job.paused) as client:
                return await triage(client, identities, progress=lambda done, total: job.progress(
                    done / total, f"Looked up {done:,} of {count(total, 'identity', 'identities')}…"))

        found = asyncio.run(run())
        asked = set(identities)
        return [r for r in into or [] if (r.identity, r.identity_type) not in asked] + found

    return jobs.start("Triage", work, owner=_triage_owner(settings))


def _triage_owner(settings: Settings) -> str | None:
    """Whose triage it is, across sessions (`Principal.account`), of this Pica and database; None for visitors who
    share a name and may be anyone."""
    principal = context.principal(settings)
    if principal is None or principal.account is None:
        return None
    return repr(("triage", principal.account, settings.api_url, settings.database_url))


def _settle_triage(job: jobs.Job) -> None:
    before = st.session_state.pop(TRIAGE_LATER_BEFORE, None)
    try:
        st.session_state[TRIAGE_RESULTS] = job.outcome()
    except Exception as exc:  # noqa: BLE001 - logged on its thread; the reader gets what happened, not a traceback
        if before is not None:  # a next batch: its identities are still to do, and the results so far stay
            st.session_state[TRIAGE_LATER] = before
            st.session_state[TRIAGE_FAILURE] = (f"The triage of the next identities stopped: {jobs.failure(exc)}. "
                                                "Press Triage the next to try them again.")
        else:
            st.session_state[TRIAGE_FAILURE] = (f"The triage stopped: {jobs.failure(exc)}. Press Triage to run it "
                                                "again.")


def take_up_triage(settings: Settings) -> jobs.Job | None:
    """The reader's last triage (running, or ended in the last half hour), when this session, which never had one,
    took it up: started before a reload, or in another tab. A reload lost it while it went on asking Pica. Once a
    session has had a triage it keeps to its own: results it cleared, or a failure it showed, came back."""
    if st.session_state.get(_HAD_TRIAGE):
        return None
    st.session_state[_HAD_TRIAGE] = True  # asked once: a session that found none starts its own
    job = jobs.latest(_triage_owner(settings))
    if job is not None:
        st.session_state[TRIAGE_JOB] = job
    return job


def own_triage() -> jobs.Job | None:
    """The triage this session started, while it runs; one that has ended leaves its results (or what stopped it)."""
    return jobs.own(TRIAGE_JOB, _settle_triage)


def follow_triage() -> None:
    jobs.follow_here(TRIAGE_JOB, "You can look someone up or leave this page meanwhile: the triage goes on, and its "
                                 "results show here.")


def show_stored(stored: list[UserConnection], names: dict[str, str], heading: str) -> None:
    """A lookup's connections as the dashboard last stored them, under `heading` (why they are shown)."""
    st.markdown(heading)
    st.dataframe(style_states(stored_rows(stored, names), "state when last seen"), hide_index=True, width="stretch",
                 column_config={"last seen": when_column("last seen"),
                                "key": st.column_config.TextColumn("connection key", width="medium")})


def what_to_do(conn: Connection, connector: str, *, settings: Settings) -> tuple[str, str]:
    """What the state means and what to do; for a broken connection whose connector AuthKit does not offer, that
    it must be enabled first (the advice said to use Reconnect, which was disabled for it)."""
    what, todo = meaning(conn.state)
    enabled = data.enabled_in_authkit(settings)
    if conn.state in NEEDS_ATTENTION and enabled is not None and conn.platform not in enabled:
        todo += (f" {connector} is not enabled in AuthKit for this environment, so Reconnect cannot offer it yet: "
                 "enable it in Pica's dashboard first.")
    return what, todo


def reconnect_link(principal: Principal, conn: Connection, connector: str, *, settings: Settings,
                   where: str = "") -> None:
    """Connect, set to authorise this connection's connector again for its identity (`where` tells two such links
    on one page apart); disabled, saying why, when the connector is not enabled in AuthKit (Connect could only
    say so, and offer other connectors, none of which reconnects this one)."""
    enabled = data.enabled_in_authkit(settings)
    if enabled is not None and conn.platform not in enabled:
        st.button("Reconnect", icon=":material/link:", disabled=True, key=f"link-connect{where}",
                  help=f"{connector} is not enabled in AuthKit for this environment: enable it in Pica's dashboard "
                       "first; the end user can then reconnect.")
        return
    page_link(principal, "connect", "Reconnect", ":material/link:", {
        "identity": conn.identity or "", "identityType": conn.identity_type or "", "connector": connector,
        "reconnect": conn.key}, "reconnect", where=where)


def page_link(principal: Principal, page: str, label: str, icon: str, query: dict[str, str], action: str, *,
              where: str = "") -> None:
    """A link to another page, or a disabled button saying why this role cannot use it."""
    reason = principal.why_not(action)
    if principal.sees(page) and reason is None:
        st.page_link(f"pages/{page}.py", label=label, icon=icon, query_params=query)
    else:
        st.button(label, icon=icon, disabled=True, help=reason or f"Needs access to the {page} page.",
                  key=f"link-{page}{where}")


def detail(conn: Connection, *, settings: Settings, store: Store, principal: Principal, display_name: str) -> None:
    st.subheader(plain(f"{display_name} · {conn.identity or 'no identity'}"))
    st.markdown(f"{state_badge(conn.state)} &nbsp; `{conn.environment}` &nbsp; "
                f"{'active' if conn.active else 'inactive'} &nbsp; created {ago(conn.created_at)}")
    what, todo = what_to_do(conn, display_name, settings=settings)
    (st.error if conn.state == "failed" else st.warning if conn.state == "degraded" else st.info)(
        f"**{conn.state.capitalize()}**: {what}\n\n**What to do:** {todo}")
    st.code(conn.key, language=None, wrap_lines=True)  # a long key whole, with its copy button

    actions(conn, settings=settings, store=store, principal=principal, display_name=display_name)

    history, calls, record = st.tabs(["State history", "Recent console calls", "Full record"])
    with history:
        transitions = store.transitions(conn.key)
        if not transitions:
            st.caption("No history yet: the dashboard records a state each time it syncs or looks this connection up.")
        else:
            periods = timeline(transitions)
            st.dataframe(pd.DataFrame([{
                "when": t.at, "change": describe_transition(t.from_state, t.to_state), "seen by": t.source,
            } for t in reversed(transitions)]), hide_index=True, width="stretch",
                column_config={"when": when_column("when")})
            st.caption(" · ".join(p.label for p in periods[-3:]))
    with calls:
        recent = store.search_calls(connection_key=conn.key, limit=20)
        if not recent:
            st.caption("No console calls on this connection yet.")
        else:
            st.dataframe(pd.DataFrame([{"when": c.at, "who": c.actor, "method": c.method, "path": c.path,
                                        "status": c.status, "ms": c.elapsed_ms} for c in recent]),
                         hide_index=True, width="stretch")
    with record:
        st.json(conn.wire())


def actions(conn: Connection, *, settings: Settings, store: Store, principal: Principal, display_name: str) -> None:
    links_col, tags_col = st.columns([2, 3])  # the links one under another: a narrow window cuts no label short
    with links_col:
        if st.button("Refresh from Pica", icon=":material/refresh:", key="refresh-connection"):
            try:
                with st.spinner("Asking Pica…", show_time=True):  # the page only faded for up to 15 s
                    fresh = context.client(settings).connection(conn.id)
            except NotFoundError as exc:
                if _gone_from_pica(conn, settings, store, display_name):
                    st.rerun()
                show_error(exc, what="Refresh")
            except PicaError as exc:
                show_error(exc, what="Refresh")
            else:
                result = store.upsert_connections([fresh], source="refresh")
                data.refresh_connections()
                redraw_tags(conn)
                flash(f"Refreshed: {fresh.state}" + (" (state changed)" if result.transitions else ""))
                st.rerun()
        reconnect_link(principal, conn, display_name, settings=settings)
        page_link(principal, "console", "Open in the console", ":material/terminal:", {"key": conn.key}, "console")
    # Keyed, started from the tags as shown, and drawn anew only after a save or a refresh (`redraw_tags`): a box
    # made anew whenever the tags changed dropped the reader's edit (a form's edit reaches the server only on
    # submit), and one kept past a save hid another agent's tag, which the next save then removed.
    key = f"tags-{conn.id}-{st.session_state.get(f'tags-{conn.id}.round', 0)}"
    if key not in st.session_state:
        st.session_state[f"tags-{conn.id}.shown"] = list(conn.tags)
    shown = st.session_state[f"tags-{conn.id}.shown"]
    with tags_col, st.form("tags", border=False):
        tags = st.multiselect("Tags", options=sorted({*shown, *conn.tags, "vip", "beta", "trial", "eu", "escalated"}),
                              default=shown, key=key, accept_new_options=True, disabled=not principal.can("edit_tags"),
                              help=principal.why_not("edit_tags"), max_selections=50)
        if st.form_submit_button("Save tags", disabled=not principal.can("edit_tags"),
                                 help=principal.why_not("edit_tags")):
            save_tags(conn, shown, tags, settings=settings, store=store, principal=principal, display_name=display_name)
    delete(conn, settings=settings, store=store, principal=principal, display_name=display_name)


def redraw_tags(conn: Connection) -> None:
    """The tag box drawn anew on the next run, from the tags Pica has then."""
    round_key = f"tags-{conn.id}.round"
    st.session_state[round_key] = st.session_state.get(round_key, 0) + 1


def save_tags(conn: Connection, shown: list[str], tags: list[str], *, settings: Settings, store: Store,
              principal: Principal, display_name: str) -> None:
    """The reader's change from the tags `shown` to `tags`, made on the tags Pica has now (read just before): what
    someone else changed since the page was drawn is kept, and said."""
    if not principal.can("edit_tags"):  # a disabled control is not a permission check
        st.error(principal.why_not("edit_tags"), icon=":material/lock:")
        return
    client = context.client(settings)
    try:
        tags = validation.tags(tags, existing=shown)
        with st.spinner("Reading the tags Pica has…", show_time=True):
            current = client.connection(conn.id).tags
        merged = validation.tags(merge_tags(shown, tags, current), existing=[*shown, *current])
    except InvalidInputError as exc:
        show_error(exc, what="Tags not saved")
        return
    except NotFoundError as exc:  # nothing was written: gone, as Refresh finds it, or the 404 as it came
        if _gone_from_pica(conn, settings, store, display_name):
            st.rerun()
        show_error(exc, what="Saving tags")
        return
    except PicaError as exc:
        show_error(exc, what="Saving tags")
        return
    try:
        with st.spinner("Saving at Pica…", show_time=True):
            updated = client.update_connection_tags(conn.id, merged, existing=[*shown, *current])
    except PicaError as exc:
        if isinstance(exc, NotFoundError) and _gone_from_pica(conn, settings, store, display_name):
            st.rerun()  # deleted between the read and the write
        updated = _read_after_no_answer(exc, lambda: client.connection(conn.id))
        if updated is None or sorted(updated.tags) != sorted(merged):
            _change_failed(exc, "edit_tags", conn, store=store, principal=principal, what="Saving tags",
                           unconfirmed="the tags were saved", tags=merged)
            return
    store.upsert_connections([updated], source="refresh")
    store.audit(actor=principal.name, action="edit_tags", target=conn.key, outcome="ok", before=current,
                after=updated.tags)
    data.refresh_connections()
    redraw_tags(conn)
    if set(current) != set(shown):  # the same tags in another order are no change
        flash(plain(f"Tags saved. They had changed since this page showed them (now {', '.join(current) or 'none'}): "
                    f"your change was made on top, giving {', '.join(updated.tags) or 'none'}."))
    else:
        flash("Tags saved")
    st.rerun()


_UNKNOWN = ("Pica may have received the request all the same: its answer never arrived whole, and Pica did not "
            "confirm that {what}. **Refresh from Pica** (or Look up) in a moment shows what it has: look there before "
            "trying again.")


def _change_failed(exc: PicaError, action: str, conn: Connection, *, store: Store, principal: Principal, what: str,
                   unconfirmed: str, **detail: object) -> None:
    """A change to `conn` that Pica refused or did not confirm: audited (`unknown` when it may have been made all
    the same), said, and then what to look at before trying again."""
    store.audit(actor=principal.name, action=action, target=conn.key,
                outcome="unknown" if exc.maybe_delivered else "error", error=str(exc), **detail)
    show_error(exc, what=what)
    if exc.maybe_delivered:
        st.warning(_UNKNOWN.format(what=unconfirmed), icon=":material/help:")


def _read_after_no_answer(exc: PicaError, read: Callable[[], Connection]) -> Connection | None:
    """After a change that got no answer (`exc.maybe_delivered`), the connection as Pica has it now, to see whether
    the change was made all the same; None when it cannot have been, or Pica still does not answer."""
    if not exc.maybe_delivered:
        return None
    try:
        return read()
    except PicaError:
        return None


def _no_longer_listed(conn: Connection, settings: Settings) -> bool:
    """Whether Pica answers that it no longer lists the connection's key (False when it cannot be asked)."""
    try:
        return context.client(settings).connection_by_key(conn.key, identity=conn.identity) is None
    except PicaError:
        return False


def _gone_from_pica(conn: Connection, settings: Settings, store: Store, display_name: str) -> bool:
    """After a 404 on the connection's id: whether Pica no longer lists its key either (deleted elsewhere, by the
    end user or another agent). Then the dashboard forgets it too, so that no count goes on including it, and says
    so on the next run; the history of its states stays."""
    if not _no_longer_listed(conn, settings):
        return False  # not known to be gone: the 404 stands as it came
    store.remove_connection(conn.key)
    data.refresh_connections()
    st.session_state["deleted"] = (f"This {display_name} connection no longer exists in Pica (deleted elsewhere): "
                                   f"the dashboard no longer counts it. {conn.key}")
    st.query_params.pop("connection", None)
    return True


def delete(conn: Connection, *, settings: Settings, store: Store, principal: Principal, display_name: str) -> None:
    reason = principal.why_not("delete")
    with st.expander("Delete this connection", icon=":material/delete:"):
        st.caption("Deleting removes the connection from Pica's vault: the end user must connect again. "
                   "Type the connection's platform id to confirm.")
        # Keyed on the connection: what was typed for one never confirms deleting another.
        typed = st.text_input(f"Type `{conn.platform}` to confirm", key=f"delete-confirm-{conn.id}",
                              disabled=bool(reason), help=reason)
        confirmed = typed.strip() == conn.platform
        # Enabled before the box is confirmed: a click right after typing (no Enter) commits the text and clicks
        # in one run, where a disabled button swallowed the click.
        clicked = st.button("Delete connection", type="primary", disabled=bool(reason), help=reason, key="delete-go")
        if clicked and not confirmed:
            st.error(f"Type {plain(conn.platform)} exactly to confirm: nothing was deleted.", icon=":material/edit_off:")
        elif clicked and principal.can("delete"):
            try:
                with st.spinner("Deleting at Pica…", show_time=True):
                    context.client(settings).delete_connection(conn.id)
            except NotFoundError as exc:  # deleted elsewhere meanwhile: what was asked for is done
                if not _gone_from_pica(conn, settings, store, display_name):
                    _change_failed(exc, "delete", conn, store=store, principal=principal, what="Delete",
                                   unconfirmed="the connection was deleted")
                    return
                store.audit(actor=principal.name, action="delete", target=conn.key, outcome="ok",
                            platform=conn.platform, identity=conn.identity, already_gone=True)
                st.rerun()
            except PicaError as exc:
                # No answer: it may be deleted all the same. Then it is this delete that did it, not "elsewhere".
                if not (exc.maybe_delivered and _no_longer_listed(conn, settings)):
                    _change_failed(exc, "delete", conn, store=store, principal=principal, what="Delete",
                                   unconfirmed="the connection was deleted")
                    return
            store.remove_connection(conn.key)
            store.audit(actor=principal.name, action="delete", target=conn.key, outcome="ok", platform=conn.platform,
                        identity=conn.identity)
            data.refresh_connections()
            st.session_state["deleted"] = f"Deleted the connection to {display_name}: {conn.key}."
            st.query_params.pop("connection", None)
            st.rerun()
