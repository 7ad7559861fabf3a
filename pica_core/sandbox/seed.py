"""Deterministic demo fleet: identities of every type, connections in every state.

Same seed → same identities, ids, keys, platforms and states. Creation dates are
spread over the months before the anchor date (today by default), so the demo
always looks current while every count stays the same.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC

from .catalog import POPULAR, Catalog

IDENTITY_TYPES = ("user", "team", "organization", "project")
STATE_WEIGHTS = (("operational", 0.78), ("degraded", 0.09), ("failed", 0.09), ("unknown", 0.04))

_FIRST = ("ava", "ben", "chloe", "diego", "emma", "farah", "gus", "hana", "ivan", "jade", "kofi", "lena",
          "mateo", "nina", "omar", "priya", "quinn", "rosa", "sven", "tara", "uma", "vik", "wen", "yara", "zoe")
_LAST = ("nguyen", "okafor", "schmidt", "rossi", "tanaka", "silva", "kowalski", "haddad", "berg", "moreau")
_COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne",
              "soylent", "wonka", "vandelay", "pied-piper", "aperture", "monarch", "oscorp", "gringotts")
_TEAMS = ("growth", "support", "revops", "platform", "design", "finance", "sales-emea", "sales-na",
          "data", "security", "marketing", "success")
_PROJECTS = ("onboarding-bot", "crm-sync", "invoice-agent", "inbox-triage", "churn-radar", "lead-scoring",
             "meeting-notes", "support-copilot", "billing-recon", "hiring-pipeline")


@dataclass
class Identity:
    identity: str
    identity_type: str


def _identity(rng: random.Random, kind: str, n: int) -> str:
    if kind == "user":
        if n % 3 == 0:
            return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@{rng.choice(_COMPANIES)}.io"
        return f"usr_{rng.getrandbits(40):010x}"
    if kind == "team":
        return f"team-{rng.choice(_TEAMS)}-{rng.choice(_COMPANIES)}-{n}"
    if kind == "organization":
        return f"org_{rng.choice(_COMPANIES)}_{rng.getrandbits(24):06x}"
    return f"proj-{rng.choice(_PROJECTS)}-{rng.getrandbits(20):05x}"


def key_identity(identity: str) -> str:
    """The identity as Pica writes it into a connection key: spaces and colons become '-'."""
    return identity.replace(" ", "-").replace(":", "-")


def connection_key(environment: str, platform: str, hex32: str, identity: str | None) -> str:
    key = f"{environment}::{platform}::default::{hex32}"
    return f"{key}|{key_identity(identity)}" if identity else key


def make_connection(
    *,
    rng: random.Random,
    catalog: Catalog,
    platform: str,
    environment: str,
    identity: str | None,
    identity_type: str | None,
    state: str,
    created_at: datetime,
    tags: list[str] | None = None,
) -> dict:
    """A connection object exactly as GET /v1/vault/connections returns it (V2 shape)."""
    connector = catalog.by_platform.get(platform)
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "platformVersion": "1.0.0",
        "name": None,
        "type": "api",
        "key": connection_key(environment, platform, f"{rng.getrandbits(128):032x}", identity),
        "environment": environment,
        "platform": platform,
        "identity": identity,
        "identityType": identity_type,
        "description": connector.description if connector else None,
        "state": state,
        "tags": tags or [],
        "version": "1.0.0",
        "active": True,
        "createdAt": created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def generate_fleet(
    catalog: Catalog,
    *,
    connections: int = 720,
    live_connections: int = 120,
    seed: int = 20250719,
    anchor: datetime | None = None,
) -> list[dict]:
    """`connections` test-environment connections plus `live_connections` live ones, newest first."""
    rng = random.Random(seed)
    anchor = (anchor or datetime.now(UTC)).replace(hour=12, minute=0, second=0, microsecond=0)
    span = timedelta(days=300).total_seconds()

    popular = [p for p in POPULAR if p in catalog.by_platform]
    others = sorted(p for p in catalog.authkit_enabled["test"] if p not in popular)
    long_tail = rng.sample(sorted(c.platform for c in catalog.connectors if c.platform not in popular), 30)
    platforms = popular + others + [p for p in long_tail if p not in others]
    # Popular platforms carry most connections, as in any real account.
    weights = [10.0 / (1 + i * 0.25) if i < len(popular) else 0.6 for i in range(len(platforms))]

    def fleet(env: str, count: int) -> list[dict]:
        n_identities = max(72, count // 10)
        identities = [
            Identity(_identity(rng, IDENTITY_TYPES[i % 4], i), IDENTITY_TYPES[i % 4]) for i in range(n_identities)
        ]
        rows = []
        for n in range(count):
            who = identities[n % n_identities] if n < n_identities else rng.choice(identities)
            platform = rng.choices(platforms, weights)[0]
            state = rng.choices([s for s, _ in STATE_WEIGHTS], [w for _, w in STATE_WEIGHTS])[0]
            created = anchor - timedelta(seconds=rng.random() * span)
            tags = rng.choice([[], [], [], ["beta"], ["vip"], ["trial"], ["eu"], ["vip", "eu"]])
            rows.append(make_connection(
                rng=rng, catalog=catalog, platform=platform, environment=env, identity=who.identity,
                identity_type=who.identity_type, state=state, created_at=created, tags=tags,
            ))
        # Every state on at least one popular platform, whatever the weights drew.
        for row, state in zip(rows[:4], ("operational", "degraded", "failed", "unknown")):
            row["state"] = state
        return rows

    rows = fleet("test", connections) + fleet("live", live_connections)
    rows.sort(key=lambda r: r["createdAt"], reverse=True)
    return rows
