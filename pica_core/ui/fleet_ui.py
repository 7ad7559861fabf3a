"""Running a fleet sync from a page, with a progress bar."""

from __future__ import annotations

import asyncio

import streamlit as st

from ..client import AsyncPicaClient
from ..config import Settings
from ..store import Store
from ..sync import SyncReport, resume_sync, sync_fleet


def run_sync(settings: Settings, store: Store, *, label: str = "Syncing the fleet…",
             resume: int | None = None) -> SyncReport:
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int, rows: int) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{label} {done}/{total} pages · {rows} connections")

    async def go() -> SyncReport:
        async with AsyncPicaClient.from_settings(settings) as client:
            if resume is not None:
                return await resume_sync(client, store, resume, progress=progress)
            return await sync_fleet(client, store, environment=settings.environment, progress=progress)

    report = asyncio.run(go())
    bar.empty()
    return report


def report_message(report: SyncReport) -> None:
    if report.status == "complete":
        st.success(report.summary().capitalize(), icon=":material/sync:")
    else:
        st.warning(report.summary().capitalize(), icon=":material/sync_problem:")
        for page, error in sorted(report.errors.items())[:5]:
            st.caption(f"Page {page}: {error}")
