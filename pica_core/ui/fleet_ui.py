"""Running a fleet sync from a page, with a progress bar, and what the last run did."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from ..client import AsyncPicaClient
from ..config import Settings
from ..health import state_columns
from ..store import Store, SyncRun
from ..sync import CannotResume, SyncBusy, SyncReport, page_list, pages_stored, resume_sync, sync_fleet
from ..text import count, plain
from . import jobs
from .layout import ago, safe_fragment

_OUTCOME = "sync-outcome"
_JOB = "sync-job"
SYNCING = "Syncing the fleet…"


def state_bars(counts: pd.DataFrame, by: str, *, order: list[str] | None = None, row_px: int = 22,
               legend: bool = True) -> alt.Chart:
    """Horizontal bars of connections per `by` (a column of `counts`, beside `state` and `connections`), stacked
    by state in the usual order and colours, in `order`, `row_px` a row (shorter, Vega drops every other label).
    Its legend wraps under the chart in two columns: st.bar_chart's one line was cut off in a half-width column at
    1024 px ("operational, degraded, faile")."""
    states, colors = state_columns(counts["state"])
    data = counts[counts["state"].isin(states)].assign(rank=lambda f: f["state"].map(states.index))
    return alt.Chart(data).mark_bar().encode(
        alt.Y(f"{by}:N", sort=order or "ascending", title=None, axis=alt.Axis(labelLimit=160)),
        alt.X("sum(connections):Q", title="connections"),
        color=alt.Color("state:N", sort=states, scale=alt.Scale(domain=states, range=colors),
                        legend=alt.Legend(title=None, orient="bottom", columns=2, labelLimit=0) if legend else None),
        order=alt.Order("rank:Q"),
        tooltip=[alt.Tooltip(f"{by}:N"), alt.Tooltip("state:N"), alt.Tooltip("sum(connections):Q", title="connections")],
    ).properties(height=alt.Step(row_px))


def start_sync(settings: Settings, store: Store, *, label: str = SYNCING,
               resume: int | None = None) -> jobs.Job:
    """The sync on a thread of its own: a reader who leaves the page stops the page's run, not the sync (it stopped
    at its next progress report, leaving pages for a Resume)."""

    def work(job: jobs.Job) -> SyncReport:
        def progress(done: int, total: int, rows: int) -> None:
            job.progress(done / max(1, total), f"{label} {done:,}/{count(total, 'page')} · {count(rows, 'connection')}")

        async def go() -> SyncReport:
            async with AsyncPicaClient.from_settings(settings, on_retry=job.paused) as client:
                if resume is not None:
                    return await resume_sync(client, store, resume, environment=settings.environment,
                                             progress=progress)
                return await sync_fleet(client, store, environment=settings.environment, progress=progress)

        return asyncio.run(go())

    return jobs.start(label, work, expected=(SyncBusy, CannotResume))


def run_sync(settings: Settings, store: Store, *, label: str = SYNCING,
             resume: int | None = None) -> SyncReport:
    """Raises `SyncBusy` if another sync is running, `CannotResume` if `resume` cannot be resumed."""
    return jobs.follow(start_sync(settings, store, label=label, resume=resume))


def start_own_sync(settings: Settings, store: Store, *, resume: int | None = None) -> None:
    """Start it as this session's sync, then draw the page again: `follow_own` shows it while it runs (the rest of
    the page stays usable) and `show_outcome` says how it went."""
    st.session_state[_JOB] = start_sync(settings, store, label="Resuming the sync…" if resume is not None else SYNCING,
                                        resume=resume)
    st.rerun()


def _settle(job: jobs.Job) -> None:
    try:
        st.session_state[_OUTCOME] = job.outcome()
    except (SyncBusy, CannotResume) as exc:
        st.session_state[_OUTCOME] = str(exc)
    except Exception as exc:  # noqa: BLE001 - logged on its thread; the reader gets what happened, not a traceback
        st.session_state[_OUTCOME] = f"The sync stopped: {jobs.failure(exc)}"


def own_sync() -> jobs.Job | None:
    """The sync this session started, while it runs; one that has ended leaves its outcome for `pop_outcome`."""
    return jobs.own(_JOB, _settle)


def follow_own() -> None:
    """This session's sync while it runs, wherever the reader went meanwhile (a fragment)."""
    jobs.follow_here(_JOB, "You can use this page or leave it: the sync goes on, and how it went shows here.")


RUN_STATUSES = ("running", "complete", "partial", "failed", "interrupted")


def pop_outcome() -> SyncReport | str | None:
    """What this session's last click on Sync now or Resume did (shown once)."""
    return st.session_state.pop(_OUTCOME, None)


def resume_waits(run: SyncRun) -> datetime | None:
    """Until when a Resume of `run` would meet the rate limit it met (None: it need not wait)."""
    return run.retry_at if run.retry_at is not None and run.retry_at > datetime.now(UTC) else None


def show_outcome(outcome: SyncReport | str | None) -> None:
    if isinstance(outcome, SyncReport):
        report_message(outcome)
    elif outcome:
        st.warning(plain(outcome), icon=":material/sync_lock:")  # an error's text, which may hold anything


def report_message(report: SyncReport) -> None:
    if report.status == "complete":
        st.success(_sentence(report.summary()), icon=":material/sync:")
    else:
        st.warning(_sentence(report.summary(resume="**Resume**")), icon=":material/sync_problem:")
        for page, error in sorted(report.errors.items())[:5]:
            st.caption(f"Page {page}: {plain(error)}")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize() would lowercase the rest ("Pica's", "**Resume**")


def latest_run(store: Store, environment: str) -> SyncRun | None:
    """The environment's latest run as it stands: one its process left 'running' when it died reads as ended."""
    run = store.last_sync(environment, statuses=RUN_STATUSES)
    if run is not None and run.status == "running" and not store.sync_in_progress(environment):
        run = store.sync_run(run.id)
    return run


def status(store: Store, environment: str, run: SyncRun | None, *, reported: bool = False) -> None:
    """The latest run; while one runs (in another tab, session or process), followed every 2 s, and the whole
    page read again once it ends. `reported`: this session just showed its outcome, so only the status line."""
    if run is not None and run.status == "running":
        _follow(store, environment, run.id)
    else:
        last_run(run, brief=reported)


@safe_fragment(run_every=2)
def _follow(store: Store, environment: str, run_id: int) -> None:
    run = latest_run(store, environment)
    if run is None or run.id != run_id or run.status != "running":
        st.rerun(scope="app")  # it ended: the counts, tables and buttons change with it
    last_run(run)


def last_run(run: SyncRun | None, *, brief: bool = False) -> None:
    """The latest run of the environment: how far it got, and what a resume would fetch."""
    if run is None:
        st.markdown("No sync yet: **Sync now** copies every connection of the account into the dashboard's database.")
        return
    if run.status == "running":
        st.markdown(f"Sync **#{run.id}** is running (started {ago(run.started_at)}): {run.pages_done:,}/"
                    f"{count(run.pages_total, 'page') if run.pages_total else '? pages'}, "
                    f"{count(run.rows_seen, 'connection')} so far.")
        st.progress(min(1.0, run.pages_done / run.pages_total) if run.pages_total else 0.0)
        st.caption("Started in another session, from the command line, or here before a reload: this page follows "
                   "it until it ends.")
        return
    st.markdown(f"Last sync **#{run.id}** {ago(run.finished_at or run.started_at)}: **{run.status}**, "
                f"{count(run.rows_seen, 'connection')} from {pages_stored(run.pages_done, run.pages_total)}.")
    if brief:
        return
    pages = run.failed_pages
    missing = count(len(pages), "page")
    if run.status == "interrupted" and not run.pages_total:
        st.warning(f"Sync #{run.id} stopped before its first page arrived: nothing was stored. **Sync now** starts "
                   "again.", icon=":material/sync_problem:")
    elif run.status == "interrupted":
        st.warning(f"Sync #{run.id} stopped before it finished: {missing} not stored ({page_list(pages)}). "
                   "What was stored is kept; **Resume** fetches the rest.", icon=":material/sync_problem:")
    elif run.status == "failed":
        st.warning(f"Sync #{run.id} failed before its first page arrived: nothing was stored. **Sync now** starts "
                   "again once what Pica answered is resolved.", icon=":material/sync_problem:")
    elif pages:
        st.warning(f"Sync #{run.id} is partial: {missing} to fetch again ({page_list(pages)}). What was "
                   "stored is kept; **Resume** fetches only those pages.", icon=":material/sync_problem:")
    if run.status != "complete" and run.error:
        st.caption(plain(run.error))  # Pica's words, as text
