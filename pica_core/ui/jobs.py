"""Long work (a fleet sync, a bulk triage) on a thread of its own, followed by the page that started it.

Streamlit stops a script run at its next element when the reader clicks anything or leaves the page; work done in
the run stopped with it (a sync at its next progress report, a triage thrown away by a Look up). A job keeps going
whatever the page does; the session keeps the job (`own`), and the page follows it from a fragment (`follow_here`)
on every run that finds it unfinished, so the page around it stays whole and usable. Nothing on the job's thread
calls Streamlit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ..text import plain
from .layout import safe_fragment

log = logging.getLogger("pica_core.ui")


@dataclass
class Job:
    label: str
    done: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    text: str = ""  # how far it got, from the work's own progress reports
    pause: tuple[float, str, float] | None = None  # seconds, why, since (monotonic): a rate limit's wait
    result: Any = None
    error: BaseException | None = None
    ended_at: float | None = None  # monotonic

    def progress(self, fraction: float, text: str) -> None:
        self.fraction, self.text = min(1.0, max(0.0, fraction)), text

    def paused(self, seconds: float, error: Exception) -> None:
        """The client's `on_retry`: it waits `seconds` before asking again, for `error` (a rate limit, say)."""
        self.pause = (seconds, getattr(error, "message", str(error)), time.monotonic())

    def outcome(self) -> Any:
        """Its result, or its error raised (once done)."""
        if self.error is not None:
            raise self.error
        return self.result

    def shown(self) -> tuple[float, str]:
        """The progress bar's (fraction, text) now."""
        text = self.text or self.label
        if self.pause and (left := self.pause[0] - (time.monotonic() - self.pause[2])) >= 1:
            text += f" · waiting {left:.0f} s ({plain(self.pause[1])})"
        return self.fraction, text


_LATEST: dict[str, Job] = {}  # the last job each owner started (`latest`)
_LATEST_GUARD = threading.Lock()


def start(label: str, work: Callable[[Job], Any], *, expected: tuple[type[BaseException], ...] = (),
          owner: str | None = None) -> Job:
    """Run `work(job)` on a daemon thread; its result or error lands on the job (`expected` errors are not logged).
    `owner`: who started it and what it is, for `latest`."""
    job = Job(label)
    if owner:
        with _LATEST_GUARD:
            _LATEST[owner] = job

    def run() -> None:
        try:
            job.result = work(job)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever follows the job
            if not isinstance(exc, expected):
                log.exception("%s failed", label)
            # As an Exception: a CancelledError or SystemExit raised again on the page would pass its handlers
            job.error = exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")
        finally:
            job.ended_at = time.monotonic()
            job.done.set()

    threading.Thread(target=run, name=label, daemon=True).start()
    return job


def latest(owner: str | None, *, ended_within: float = 1800) -> Job | None:
    """The last job `owner` started, while it runs or for `ended_within` seconds after: a session's own jobs end with
    the session, and a reload (a new session) lost a triage that went on asking Pica all the same."""
    with _LATEST_GUARD:
        job = _LATEST.get(owner or "")
    if job is None or (job.ended_at is not None and time.monotonic() - job.ended_at > ended_within):
        return None
    return job


def follow(job: Job) -> Any:
    """A progress bar until the job is done; its result, or its error raised. A run stopped here stops only the
    following."""
    if not job.done.is_set():
        bar = st.progress(*job.shown())
        while not job.done.wait(0.25):
            bar.progress(*job.shown())
        bar.empty()
    return job.outcome()


def own(key: str, settle: Callable[[Job], None]) -> Job | None:
    """The session's job under `key` while it runs. One that has ended is settled first (`settle(job)` keeps its
    outcome for the page to show) and forgotten."""
    job = st.session_state.get(key)
    if job is not None and job.done.is_set():
        settle(job)
        del st.session_state[key]
        return None
    return job


@safe_fragment(run_every=1)
def follow_here(key: str, caption: str) -> None:
    """The session's job under `key` (`own`), its progress read every second in a fragment: the page around it is
    whole and works meanwhile. Once it ends the whole page runs again, settles it and shows what changed."""
    job = st.session_state.get(key)
    if job is None or job.done.is_set():
        st.rerun(scope="app")
    st.progress(*job.shown())
    st.caption(caption)


def failure(exc: BaseException) -> str:
    """An unexpected error of a job, for the reader (the traceback is in the log)."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
