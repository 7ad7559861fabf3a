"""Long work (a fleet sync, a bulk triage) on a thread of its own, followed by the page that started it.

Streamlit stops a script run at its next element when the reader clicks anything or leaves the page; work done in
the run stopped with it (a sync at its next progress report, a triage thrown away by a Look up). A job keeps going
whatever the page does; the session keeps the job, and the page follows it again, with its progress bar, on the
next run that finds it unfinished. Nothing on the job's thread calls Streamlit.
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

    def progress(self, fraction: float, text: str) -> None:
        self.fraction, self.text = min(1.0, max(0.0, fraction)), text

    def paused(self, seconds: float, error: Exception) -> None:
        """The client's `on_retry`: it waits `seconds` before asking again, for `error` (a rate limit, say)."""
        self.pause = (seconds, getattr(error, "message", str(error)), time.monotonic())

    def shown(self) -> tuple[float, str]:
        """The progress bar's (fraction, text) now."""
        text = self.text or self.label
        if self.pause and (left := self.pause[0] - (time.monotonic() - self.pause[2])) >= 1:
            text += f" · waiting {left:.0f} s ({plain(self.pause[1])})"
        return self.fraction, text


def start(label: str, work: Callable[[Job], Any], *, expected: tuple[type[BaseException], ...] = ()) -> Job:
    """Run `work(job)` on a daemon thread; its result or error lands on the job (`expected` errors are not logged)."""
    job = Job(label)

    def run() -> None:
        try:
            job.result = work(job)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever follows the job
            if not isinstance(exc, expected):
                log.exception("%s failed", label)
            # As an Exception: a CancelledError or SystemExit raised again on the page would pass its handlers
            job.error = exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")
        finally:
            job.done.set()

    threading.Thread(target=run, name=label, daemon=True).start()
    return job


def follow(job: Job) -> Any:
    """A progress bar until the job is done; its result, or its error raised. A run stopped here stops only the
    following."""
    if not job.done.is_set():
        bar = st.progress(*job.shown())
        while not job.done.wait(0.25):
            bar.progress(*job.shown())
        bar.empty()
    if job.error is not None:
        raise job.error
    return job.result


def failure(exc: BaseException) -> str:
    """An unexpected error of a job, for the reader (the traceback is in the log)."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
