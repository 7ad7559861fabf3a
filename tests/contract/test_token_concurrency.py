"""Token requests from many users at once are not queued behind the fleet sync's small concurrency bound."""

from __future__ import annotations

import asyncio
import os

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from pica_core.config import Secret, load_settings
from pica_core.tokens import GrantSigner, TokenRoute
from tests.conftest import ThreadedServer

USERS = 8


def test_token_requests_reach_pica_side_by_side(sandbox):
    settings = load_settings({"PICA_API_URL": sandbox.url, "PICA_MAX_CONCURRENCY": "2", "PICA_SECRETS_FILE": os.devnull})
    signer = GrantSigner(Secret("concurrency-test"))
    route = TokenRoute(lambda request: settings, signer)
    app = Starlette(routes=[Route("/api/authkit/token", route.handle, methods=["POST", "OPTIONS"])])
    # Pica takes 2 s per AuthKit page: a queue of 2 would let 2 users in, then make the others wait for them.
    sandbox.fault("latency", seconds=2, count=USERS, path="/v1/authkit")
    sandbox.control("DELETE", "stats")

    async def go(url: str) -> tuple[int, list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            calls = [asyncio.create_task(http.post("/api/authkit/token", content=b"{}", headers={
                "x-authkit-grant": signer.issue(f"user-{n}", "user")})) for n in range(USERS)]
            reached = 0
            while not any(call.done() for call in calls):
                reached = await asyncio.to_thread(sandbox.count, "authkit")
                if reached == USERS:
                    break
                await asyncio.sleep(0.05)
            answers = await asyncio.gather(*calls)
        return reached, [a.status_code for a in answers]

    with ThreadedServer(app) as server:
        reached, statuses = asyncio.run(go(server.url))
    assert reached == USERS  # every user's call was at Pica before the first one came back
    assert statuses == [200] * USERS
