"""Connection state health: what each state means, what to do, and timelines from transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterable, Mapping, Sequence

from .models import STATES
from .text import count

STATE_COLOR = {"operational": "green", "degraded": "orange", "failed": "red", "unknown": "gray"}  # markdown
STATE_HEX = {"operational": "#16a34a", "degraded": "#d97706", "failed": "#dc2626", "unknown": "#64748b"}  # text
STATE_FILL = {"operational": "#16a34a", "degraded": "#f59e0b", "failed": "#dc2626", "unknown": "#94a3b8"}  # bars
NEEDS_ATTENTION = ("failed", "degraded")


def state_columns(present: Iterable[str]) -> tuple[list[str], list[str]]:
    """The states among `present` in the usual order, and their bar colours (for a chart's columns)."""
    ordered = [s for s in STATES if s in set(present)]
    return ordered, [STATE_FILL[s] for s in ordered]

MEANING = {
    "operational": ("Working.", "Nothing to do."),
    "degraded": (
        "Pica's OAuth token refresh failed; an automatic retry is pending. Calls may fail intermittently "
        "(429 or 5xx from the platform).",
        "Wait for the retry; if it stays degraded for more than a few hours, ask the user to reconnect.",
    ),
    "failed": (
        "The platform refused the connection's credentials (expired or revoked token): calls through it fail "
        "until the user connects again.",
        "The user must reconnect: use Reconnect to open the Connect flow for the same identity and connector.",
    ),
    "unknown": (
        "Pica could not determine the state (no recent call or check).",
        "Run a test call from the console, or refresh after the next sync.",
    ),
}


def state_label(state: str | None) -> str:
    """Text for tables and options: a dot and the state (pica_core.ui.layout.style_states colours it)."""
    return f"● {state or 'unknown'}"


def meaning(state: str | None) -> tuple[str, str]:
    """(what it means, what to do)."""
    return MEANING.get(state or "unknown", MEANING["unknown"])


def counted_state(state: str | None) -> str:
    """The state a connection is counted and filtered under: a state Pica adds after the contract is unknown here."""
    return state if state in STATES else "unknown"


def state_counts(states: Iterable[str | None]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state in states:
        counts[counted_state(state)] += 1
    return counts


def attention_summary(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    attention = sum(counts.get(s, 0) for s in NEEDS_ATTENTION)
    return f"{count(total, 'connection')} ({attention:,} {'needs' if attention == 1 else 'need'} attention)"


@dataclass(frozen=True)
class Period:
    state: str
    start: datetime
    end: datetime | None  # None: still in this state
    started_earlier: bool = False  # the start is the first sighting: it may have been in this state before

    @property
    def label(self) -> str:
        start = f"{self.start:%Y-%m-%d %H:%M}" + (" or earlier" if self.started_earlier else "")
        return f"{self.state} since {start} UTC" if self.end is None else (
            f"{self.state} from {start} to {self.end:%Y-%m-%d %H:%M} UTC")


def first_sighting_may_be_late(source: str | None) -> bool:
    """A connection first seen in a state may have been in it before, unless the dashboard made it (Connect)."""
    return source != "connect"


def timeline(transitions: Sequence) -> list[Period]:
    """Periods in each state, oldest first, from transition rows (to_state, at; from_state None: a first sighting)."""
    periods: list[Period] = []
    for index, row in enumerate(transitions):
        end = transitions[index + 1].at if index + 1 < len(transitions) else None
        started_earlier = (getattr(row, "from_state", "") is None
                           and first_sighting_may_be_late(getattr(row, "source", None)))
        periods.append(Period(row.to_state, row.at, end, started_earlier))
    return periods


def describe_transition(from_state: str | None, to_state: str) -> str:
    if from_state is None:
        return f"first seen {to_state}"
    if to_state == "operational":
        return f"recovered ({from_state} → operational)"
    return f"{from_state} → {to_state}"
