"""Running a fleet sync from a page, with a progress bar, and what the last run did."""

from __future__ import annotations

import asyncio

import streamlit as st

from ..client import AsyncPicaClient
from ..config import Settings
from ..store import Store, SyncRun
from ..sync import SyncBusy, SyncReport, page_list, resume_sync, sync_fleet
from .layout import ago

_OUTCOME = "sync-outcome"


def run_sync(settings: Settings, store: Store, *, label: str = "Syncing the fleet…",
             resume: int | None = None) -> SyncReport:
    """Raises `SyncBusy` if another sync is running, `ValueError` if `resume` cannot be resumed."""
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int, rows: int) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{label} {done}/{total} pages · {rows} connections")

    async def go() -> SyncReport:
        async with AsyncPicaClient.from_settings(settings) as client:
            if resume is not None:
                return await resume_sync(client, store, resume, progress=progress)
            return await sync_fleet(client, store, environment=settings.environment, progress=progress)

    try:
        return asyncio.run(go())
    finally:
        bar.empty()


def run_sync_and_rerun(settings: Settings, store: Store, *, resume: int | None = None) -> None:
    """Run it, then rerun the page so everything on it reads the new data; `show_outcome` says how it went."""
    try:
        st.session_state[_OUTCOME] = run_sync(settings, store, resume=resume)
    except (SyncBusy, ValueError) as exc:
        st.session_state[_OUTCOME] = str(exc)
    st.rerun()


def show_outcome() -> None:
    outcome = st.session_state.pop(_OUTCOME, None)
    if isinstance(outcome, SyncReport):
        report_message(outcome)
    elif outcome:
        st.warning(outcome, icon=":material/sync_lock:")


def report_message(report: SyncReport) -> None:
    if report.status == "complete":
        st.success(report.summary().capitalize(), icon=":material/sync:")
    else:
        st.warning(report.summary().capitalize(), icon=":material/sync_problem:")
        for page, error in sorted(report.errors.items())[:5]:
            st.caption(f"Page {page}: {error}")


def last_run(run: SyncRun | None) -> None:
    """The latest run of the environment: how far it got, and what a resume would fetch."""
    if run is None:
        st.markdown("No sync yet: **Sync now** copies every connection of the account into the dashboard's database.")
        return
    if run.status == "running":
        st.markdown(f"Sync **#{run.id}** is running (started {ago(run.started_at)}): {run.pages_done}/"
                    f"{run.pages_total} pages, {run.rows_seen} connections so far.")
        st.caption("It runs in another session or from the command line: reload to follow it.")
        return
    st.markdown(f"Last sync **#{run.id}** {ago(run.finished_at or run.started_at)}: **{run.status}**, "
                f"{run.rows_seen} connections from {run.pages_total} pages.")
    pages = run.failed_pages
    count = f"{len(pages)} page{'s' if len(pages) != 1 else ''}"
    if run.status == "interrupted" and not run.pages_total:
        st.warning(f"Sync #{run.id} stopped before its first page arrived. **Resume** starts it again.",
                   icon=":material/sync_problem:")
    elif run.status == "interrupted":
        st.warning(f"Sync #{run.id} stopped before it finished: {count} not stored ({page_list(pages)}). "
                   "What was stored is kept; **Resume** fetches the rest.", icon=":material/sync_problem:")
    elif run.status == "failed":
        st.warning(f"Sync #{run.id} failed before its first page arrived. **Resume** starts it again.",
                   icon=":material/sync_problem:")
    elif pages:
        st.warning(f"Sync #{run.id} is partial: {count} to fetch again ({page_list(pages)}). What was "
                   "stored is kept; **Resume** fetches only those pages.", icon=":material/sync_problem:")
    if run.status != "complete" and run.error:
        st.caption(run.error)
