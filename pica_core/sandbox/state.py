"""The sandbox's in-memory state: the vault, AuthKit sessions, rate windows, faults, request log."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, UTC

from .catalog import Catalog, load_catalog
from .seed import generate_fleet, make_connection

RATE_WINDOW_SECONDS = 60
ACCOUNT = "account"  # the sandbox is one account: its test and live keys share one rate-limit window
AUTHKIT_SESSION_SECONDS = 15 * 60
MAX_CACHED_LISTINGS = 256  # filtered connection-id lists kept between vault mutations


@dataclass
class SandboxConfig:
    test_key: str = "sk_test_sandbox"
    live_key: str = "sk_live_sandbox"
    throughput: int = 500  # requests per account (its keys together) per 60 s, as Pica's default; 0: none
    connections: int = 720
    live_connections: int = 120
    seed: int = 20250719
    anchor: datetime | None = None
    max_limit: int = 1000

    def environment_of(self, secret: str | None) -> str | None:
        if secret == self.test_key:
            return "test"
        if secret == self.live_key:
            return "live"
        return None


@dataclass
class Fault:
    kind: str  # latency | rate_limit | status | hang | drop | malformed | undecodable
    count: int = 1
    path: str = ""  # prefix of the Pica path it applies to ("" = any)
    method: str = ""
    query: str = ""  # text the query string must contain, e.g. "page=3" ("" = any)
    status: int = 503
    seconds: float = 0.0

    def applies(self, method: str, path: str, query: str = "") -> bool:
        return path.startswith(self.path) and (not self.method or self.method == method) and self.query in query

    def as_dict(self) -> dict:
        return {"kind": self.kind, "count": self.count, "path": self.path, "method": self.method, "query": self.query,
                "status": self.status, "seconds": self.seconds}


FAULT_KINDS = ("latency", "rate_limit", "status", "hang", "drop", "malformed", "undecodable")


def parse_fault_header(value: str) -> Fault | None:
    """`x-sandbox-fault: 503` | `429[=seconds]` | `latency=0.3` | `hang=30` | `drop` | `malformed` | `undecodable`."""
    value = value.strip().lower()
    name, _, arg = value.partition("=")
    if name.isdigit():
        status = int(name)
        if status == 429:  # `429=5`: retry after 5 s
            return Fault("rate_limit", status=429, seconds=float(arg) if arg.replace(".", "", 1).isdigit() else 1)
        return Fault("status", status=status)
    if name in ("latency", "hang"):
        try:
            return Fault(name, seconds=float(arg or (0.5 if name == "latency" else 30)))
        except ValueError:
            return None
    if name in FAULT_KINDS:
        return Fault(name)
    return None


class SandboxState:
    """Everything the sandbox remembers; reset() puts it back to the seed."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.catalog: Catalog = load_catalog(config.seed)
        self._lock = threading.Lock()
        self.reset()

    # --- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            fleet = generate_fleet(
                self.catalog, connections=self.config.connections,
                live_connections=self.config.live_connections, seed=self.config.seed, anchor=self.config.anchor,
            )
            self.connections: dict[str, dict] = {c["id"]: c for c in fleet}
            self.order: list[str] = [c["id"] for c in fleet]  # newest first
            self._reindex()
            self._bytes: dict[str, bytes] = {}
            self._listings: dict[tuple, list[str]] = {}
            self._generation = getattr(self, "_generation", 0) + 1
            self.call_counts: dict[str, int] = {}
            self.authkit_sessions: dict[int, dict] = {}
            self.next_request_id = 7_340_000
            self.rate_windows: dict[str, tuple[float, int]] = {}
            self.faults: list[Fault] = []
            self.request_log: deque[dict] = deque(maxlen=500)
            self.request_counts: dict[str, int] = {}
            self.rng = random.Random(self.config.seed + 1)

    def _reindex(self) -> None:
        self.by_key = {c["key"]: cid for cid, c in self.connections.items()}
        self.by_identity: dict[str, list[str]] = {}
        for cid in self.order:
            identity = self.connections[cid]["identity"]
            if identity is not None:
                self.by_identity.setdefault(identity, []).append(cid)

    # --- connections ---------------------------------------------------------------------------
    def _changed(self) -> None:
        """Forget the cached listings (call with the lock held, on every vault mutation)."""
        self._generation += 1
        self._listings = {}

    def listing(self, key: tuple, compute: Callable[[], list[str]]) -> list[str]:
        """The connection ids a filter picks (`key` names the filter), computed once until the vault changes.

        Listing a 50,000-connection fleet page by page would otherwise scan the whole fleet per page.
        """
        picked = self._listings.get(key)
        if picked is None:
            generation = self._generation
            picked = compute()
            with self._lock:
                if generation == self._generation:  # no mutation while computing
                    if len(self._listings) >= MAX_CACHED_LISTINGS:
                        self._listings = {}
                    self._listings[key] = picked
        return picked

    def row_bytes(self, cid: str) -> bytes:
        cached = self._bytes.get(cid)
        if cached is None:
            cached = self._bytes[cid] = json.dumps(self.connections[cid], separators=(",", ":")).encode()
        return cached

    def rows_bytes(self, cids: list[str]) -> list[bytes]:
        """row_bytes of each id, in one pass over the cache (a page of rows per listing request)."""
        cached = self._bytes.get
        return [cached(cid) or self.row_bytes(cid) for cid in cids]

    def update_connection(self, cid: str, **changes) -> dict:
        with self._lock:
            self.connections[cid].update(changes)
            self._bytes.pop(cid, None)
            self._changed()
            return self.connections[cid]

    def delete_connection(self, cid: str) -> None:
        with self._lock:
            conn = self.connections.pop(cid)
            self.order.remove(cid)
            self.by_key.pop(conn["key"], None)
            if conn["identity"] in self.by_identity:
                self.by_identity[conn["identity"]].remove(cid)
            self._bytes.pop(cid, None)
            self._changed()

    def add_connection(self, *, platform: str, environment: str, identity: str | None,
                       identity_type: str | None) -> dict:
        with self._lock:
            conn = make_connection(
                rng=self.rng, catalog=self.catalog, platform=platform, environment=environment,
                identity=identity, identity_type=identity_type, state="operational",
                created_at=datetime.now(UTC),
            )
            self.connections[conn["id"]] = conn
            self.order.insert(0, conn["id"])
            self.by_key[conn["key"]] = conn["id"]
            if identity is not None:
                self.by_identity.setdefault(identity, []).insert(0, conn["id"])
            self._changed()
            return conn

    def find(self, id_or_key: str) -> dict | None:
        cid = id_or_key if id_or_key in self.connections else self.by_key.get(id_or_key)
        return self.connections.get(cid) if cid else None

    def next_call_number(self, cid: str) -> int:
        with self._lock:
            n = self.call_counts.get(cid, 0)
            self.call_counts[cid] = n + 1
            return n

    # --- AuthKit sessions ----------------------------------------------------------------------
    def open_authkit_session(self, identity: str | None, identity_type: str | None, environment: str) -> int:
        with self._lock:
            self.next_request_id += 1
            rid = self.next_request_id
            now = time.monotonic()
            # Sessions are kept in opening order, so in expiry order: drop the expired ones from the front
            # (rebuilding the whole dict on every token made minting O(open sessions)).
            sessions = self.authkit_sessions
            expired = []
            for k, v in sessions.items():
                if v["expires"] > now:
                    break
                expired.append(k)
            for k in expired:
                del sessions[k]
            self.authkit_sessions[rid] = {"identity": identity, "identityType": identity_type,
                                          "environment": environment, "expires": now + AUTHKIT_SESSION_SECONDS}
            return rid

    def authkit_session(self, request_id: object) -> dict | None:
        try:
            session = self.authkit_sessions.get(int(request_id))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if session and session["expires"] > time.monotonic():
            return session
        return None

    # --- rate limit ------------------------------------------------------------------------------
    def take_rate(self) -> tuple[bool, dict[str, str], int]:
        """Count one request against the account's 60 s window (its test and live keys share it); (allowed,
        rate-limit headers, seconds until the window resets)."""
        return self._rate(take=True)

    def rate_headers(self) -> dict[str, str]:
        """The account's rate-limit headers as they stand, counting nothing (an answer to no route, or to an unknown
        key: Pica's carry them too)."""
        return self._rate(take=False)[1]

    def _rate(self, *, take: bool) -> tuple[bool, dict[str, str], int]:
        limit = self.config.throughput
        now = time.monotonic()
        with self._lock:
            start, count = self.rate_windows.get(ACCOUNT, (now, 0))
            if now - start >= RATE_WINDOW_SECONDS:
                start, count = now, 0
            allowed = limit <= 0 or count < limit
            if take:
                count += allowed
                self.rate_windows[ACCOUNT] = (start, count)
        shown = limit if limit > 0 else 1_000_000
        headers = {  # the reset header is the window's length, as Pica's (the contract: always 60)
            "x-pica-rate-limit-limit": str(shown),
            "x-pica-rate-limit-remainings": str(max(0, shown - count)),
            "x-pica-rate-limit-reset": str(RATE_WINDOW_SECONDS),
        }
        return allowed, headers, max(1, math.ceil(start + RATE_WINDOW_SECONDS - now))

    # --- faults ----------------------------------------------------------------------------------
    def take_fault(self, method: str, path: str, query: str = "") -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applies(method, path, query):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- request log -------------------------------------------------------------------------------
    def log_request(self, route: str, entry: dict) -> None:
        with self._lock:
            self.request_counts[route] = self.request_counts.get(route, 0) + 1
            self.request_log.append(entry)
