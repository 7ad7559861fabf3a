"""LastGood: the last good answer when Pica fails, and a failure held so that every run does not ask again."""

from __future__ import annotations

import time

from pica_core.caching import LastGood
from pica_core.errors import RateLimitedError, UpstreamUnavailableError


def loader(results: list):
    """A load that answers, or raises, each of `results` in turn; counts its calls."""
    def load():
        load.calls += 1
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result, time.time()
    load.calls = 0
    return load


def test_a_failure_is_held_then_asked_again(monkeypatch):
    memory, now = LastGood(), [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    down = UpstreamUnavailableError("503")
    load = loader(["good", down, "better"])
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).value == "good"
    held = memory.fetch(("catalog", "a"), load, hold_failure=30)
    assert (held.value, held.error, load.calls) == ("good", down, 2)  # the last good, with why
    now[0] += 29
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).error is down and load.calls == 2  # held: not asked
    now[0] += 2
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).value == "better" and load.calls == 3


def test_a_rate_limit_is_held_no_longer_than_its_wait_and_a_refresh_asks_at_once(monkeypatch):
    memory, now = LastGood(), [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    load = loader([RateLimitedError("429", retry_after=5), UpstreamUnavailableError("503"), "good"])
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).value is None
    now[0] += 6
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).error is not None and load.calls == 2
    memory.ask_again("catalog")  # the reader's Refresh
    assert memory.fetch(("catalog", "a"), load, hold_failure=30).value == "good" and load.calls == 3


def test_without_a_hold_every_fetch_asks():
    memory = LastGood()
    load = loader([UpstreamUnavailableError("503"), UpstreamUnavailableError("503")])
    memory.fetch("k", load)
    memory.fetch("k", load)
    assert load.calls == 2


def test_a_held_rate_limit_reads_its_wait_as_a_clock_time_once_it_is_not_new():
    from datetime import UTC, datetime, timedelta

    limited = RateLimitedError("429", retry_after=40)
    assert limited.hint_now() == "Pica's rate limit was reached: retry in 40 s."  # just now
    limited.received_at = datetime.now(UTC) - timedelta(seconds=25)  # held since
    assert limited.hint_now() == f"Pica's rate limit was reached: retry after {limited.retry_at:%H:%M:%S} UTC."
