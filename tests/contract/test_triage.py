"""Bulk triage's asking (connections_view.triage) against the sandbox: what it asks Pica, and when it stops."""

from __future__ import annotations

import asyncio

from pica_core.client import AsyncPicaClient
from pica_core.config import SANDBOX_TEST_KEY, Secret
from pica_core.connections_view import triage, triage_failures


def run(sandbox, identities, concurrency: int = 1):
    async def go():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY),
                                   max_concurrency=concurrency) as client:
            return await triage(client, identities)

    return asyncio.run(go())


def test_a_rate_limit_met_by_a_hint_stops_the_asking_too(sandbox):
    """'Nobody-X' has no connections; its lower-case spelling, asked for a hint, meets the limit: the limit is every
    user's, so the 30 after it are not asked (they were)."""
    sandbox.fault("rate_limit", count=50, path="/v1/vault", query="identity=nobody-x", seconds=120)
    before = sandbox.count()
    results = run(sandbox, [("Nobody-X", None)] + [(f"someone-{n}", None) for n in range(30)])
    assert sandbox.count() - before == 2  # Nobody-X, then nobody-x
    assert results[0].error is None and results[0].hint == ""  # no connections stands; only its hint is missing
    assert all(r.error.startswith("not looked up — Pica's rate limit was reached") for r in results[1:])
    # The page's warning names the limit though no identity's own lookup met it (it said "Pica said: ;")
    said = triage_failures([r for r in results if r.error])
    assert said.startswith("30 identities could not be looked up: not looked up — Pica's rate limit was reached"), said


def test_without_a_rate_limit_every_identity_is_asked_once_and_hinted_where_it_may_help(sandbox):
    before = sandbox.count()
    results = run(sandbox, [("Nobody-Y", "team"), ("someone-1", None)], concurrency=4)
    # Nobody-Y as team, then of any type, then in lower case; someone-1 once.
    assert sandbox.count() - before == 4 and not any(r.error for r in results)


def test_a_refused_key_stops_the_asking_as_a_rate_limit_does(sandbox):
    """Each of 40 identities met the same 401, each asked for: a refused key answers every one alike."""
    sandbox.fault("status", status=401, count=100, path="/v1/vault/connections")
    before = sandbox.count()
    results = run(sandbox, [(f"someone-{n}", None) for n in range(40)])
    assert sandbox.count() - before == 1
    assert results[0].error.startswith("401") and "Check PICA_SECRET_KEY" in results[0].error
    assert results[0].stopped_asking and not any(r.stopped_asking for r in results[1:])
    assert all(r.error.startswith("not looked up — Pica refused the key (401") for r in results[1:]), results[1].error
