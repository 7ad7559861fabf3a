"""Last-good values: when Pica is unreachable, show what we had, with its age."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from collections.abc import Callable

from .errors import PicaError

T = TypeVar("T")


@dataclass
class Fetched(Generic[T]):
    value: T | None
    fetched_at: float | None  # epoch seconds of the value shown
    error: PicaError | None = None  # set when the value is a stale fallback (or missing)

    @property
    def stale(self) -> bool:
        return self.error is not None and self.value is not None

    def age_seconds(self, now: float | None = None) -> float | None:
        return None if self.fetched_at is None else (now or time.time()) - self.fetched_at


class LastGood:
    """A process-wide memory of the last successful answer per key."""

    def __init__(self) -> None:
        self._values: dict[Any, tuple[Any, float]] = {}
        self._failures: dict[Any, tuple[PicaError, float]] = {}  # key → (error, monotonic time to ask again)
        self._lock = threading.Lock()

    def fetch(self, key: Any, load: Callable[[], tuple[T, float]], *, hold_failure: float = 0) -> Fetched[T]:
        """Run `load` (returning value and when it was fetched); on a Pica error fall back to the last good.
        `hold_failure`: for that many seconds after a failure, answer with it without running `load` again (a
        failed answer is not cached, so every run of every page asked again, a timeout each)."""
        with self._lock:
            held = self._failures.get(key)
        if held is not None and time.monotonic() < held[1]:
            return self._fallback(key, held[0])
        try:
            value, fetched_at = load()
        except PicaError as exc:
            wait = getattr(exc, "retry_after", None)  # a rate limit says when asking again is of use
            hold = min(hold_failure, wait) if wait is not None and wait >= 0 else hold_failure
            if hold > 0:
                with self._lock:
                    self._failures[key] = (exc, time.monotonic() + hold)
            return self._fallback(key, exc)
        with self._lock:
            self._values[key] = (value, fetched_at)
            self._failures.pop(key, None)
        return Fetched(value, fetched_at)

    def _fallback(self, key: Any, exc: PicaError) -> Fetched[Any]:
        with self._lock:
            remembered = self._values.get(key)
        return Fetched(None, None, exc) if remembered is None else Fetched(remembered[0], remembered[1], exc)

    def ask_again(self, kind: str) -> None:
        """The next `fetch` of each key starting with `kind` runs its load, a failure held or not (a Refresh)."""
        with self._lock:
            for key in [k for k in self._failures if isinstance(k, tuple) and k[:1] == (kind,)]:
                del self._failures[key]

    def peek(self, key: Any) -> Any | None:
        """The last good value for `key`, without asking again (None if there was none)."""
        with self._lock:
            remembered = self._values.get(key)
        return remembered[0] if remembered else None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._failures.clear()


last_good = LastGood()
