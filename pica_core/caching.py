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
        self._lock = threading.Lock()

    def fetch(self, key: Any, load: Callable[[], tuple[T, float]]) -> Fetched[T]:
        """Run `load` (returning value and when it was fetched); on a Pica error fall back to the last good."""
        try:
            value, fetched_at = load()
        except PicaError as exc:
            with self._lock:
                remembered = self._values.get(key)
            if remembered is None:
                return Fetched(None, None, exc)
            return Fetched(remembered[0], remembered[1], exc)
        with self._lock:
            self._values[key] = (value, fetched_at)
        return Fetched(value, fetched_at)

    def peek(self, key: Any) -> Any | None:
        """The last good value for `key`, without asking again (None if there was none)."""
        with self._lock:
            remembered = self._values.get(key)
        return remembered[0] if remembered else None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


last_good = LastGood()
