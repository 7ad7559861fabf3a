"""The AuthKit token route: POST /api/authkit/token (and its OPTIONS preflight).

The AuthKit page calls it from the browser with the headers the widget was given and no
cookie, so the route cannot know who is asking from a session. The Connect page therefore
puts a short-lived grant, signed with a server-side key, in those headers: it names the
identity and identity type the dashboard chose. Setting `x-user-id` by hand mints nothing.

With a valid grant the route calls Pica as the official generator does (users/flags, then
every page of POST /v1/authkit, bounded concurrency, retries) and answers the merged token
object directly. Every failure is a real HTTP error with a JSON body and the CORS headers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets as pysecrets
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import validation
from .client import AsyncPicaClient, RetryPolicy
from .config import Secret, Settings
from .errors import (
    AuthError,
    InvalidInputError,
    InvalidResponseError,
    PicaError,
    PicaTimeoutError,
    RateLimitedError,
    UpstreamUnavailableError,
)

log = logging.getLogger("pica_core.tokens")

GRANT_HEADER = "x-authkit-grant"
MAX_BODY_BYTES = 4096
ALLOWED_HEADERS = ("Content-Type", "Authorization", "x-user-id", GRANT_HEADER)
ALLOWED_METHODS = "POST, OPTIONS"
# Pica calls in flight for all token requests together. PICA_MAX_CONCURRENCY (4) paces a fleet sync; here it
# would pace every user opening the widget: 76 tokens/s with Pica 50 ms away where the Node reference made 399
# (bench/token_route.py --latency-ms 50). Each user is still held to the per-identity limit.
TOKEN_CALLS_IN_FLIGHT = 64
# Someone waits in the widget for each token: one retry at most, within 10 s. The reads' budget (30 s, 3 retries)
# kept them 30 s before a 504 when Pica hung.
TOKEN_RETRY = RetryPolicy(max_retries=1, deadline_seconds=10.0)


@dataclass(frozen=True)
class Grant:
    identity: str
    identity_type: str | None
    expires_at: float


class GrantError(Exception):
    pass


class GrantSigner:
    """HMAC-signed grants: base64url(payload).base64url(sha256 mac)."""

    def __init__(self, key: Secret | None = None, ttl_seconds: int = 300) -> None:
        raw = key.reveal() if key else pysecrets.token_hex(32)  # per-process key unless configured
        self._key = hashlib.sha256(raw.encode()).digest()
        self.ttl_seconds = ttl_seconds

    def __repr__(self) -> str:
        return f"GrantSigner(ttl_seconds={self.ttl_seconds})"

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def issue(self, identity: str, identity_type: str | None, *, now: float | None = None) -> str:
        identity = validation.identity(identity)
        identity_type = validation.identity_type(identity_type)
        payload = json.dumps({"i": identity, "t": identity_type, "exp": int((now or time.time()) + self.ttl_seconds),
                              "n": pysecrets.token_hex(6)}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def verify(self, token: str | None, *, now: float | None = None) -> Grant:
        if not token:
            raise GrantError("No grant: open the widget from the dashboard's Connect page.")
        try:
            encoded, mac = token.strip().split(".")
            payload = _unb64(encoded)
        except (ValueError, TypeError):
            raise GrantError("The grant is malformed.") from None
        if not mac.isascii() or not hmac.compare_digest(mac, self._mac(payload)):  # compare_digest takes ASCII only
            raise GrantError("The grant's signature is invalid.")
        data = json.loads(payload)
        if data["exp"] < (now or time.time()):
            raise GrantError("The grant has expired: open the widget again.")
        return Grant(data["i"], data.get("t"), float(data["exp"]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_headers(grant: str, identity: str) -> dict[str, str]:
    """The widget's token headers: the grant, and `x-user-id` as the seed guide sends it (informative only).

    Header values must be Latin-1 for the browser's fetch(); a non-ASCII identity travels in the grant alone.
    """
    headers = {GRANT_HEADER: grant}
    if identity.isascii():
        headers["x-user-id"] = identity
    return headers


class RateLimiter:
    """Fixed 60 s windows per name (here: per granted identity)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, name: str) -> float | None:
        """None if allowed, else seconds until the window resets."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic()
        start, count = self._windows.get(name, (now, 0))
        if now - start >= 60:
            start, count = now, 0
        if count >= self.per_minute:
            return max(1.0, start + 60 - now)
        self._windows[name] = (start, count + 1)
        if len(self._windows) > 10_000:  # forget idle windows
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 60}
        return None


class TokenRoute:
    """The route's handler; `settings_for(request)` gives the settings (sandbox mode needs the port)."""

    def __init__(self, settings_for: Callable[[Request], Settings], signer: GrantSigner,
                 per_minute: int = 30) -> None:
        self._settings_for = settings_for
        self.signer = signer
        self.limiter = RateLimiter(per_minute)
        self._clients: dict[tuple[int, str], AsyncPicaClient] = {}

    def _client(self, settings: Settings) -> AsyncPicaClient:
        # httpx.AsyncClient belongs to one event loop: keep one per loop and API URL.
        key = (id(asyncio.get_running_loop()), settings.api_url or "")
        client = self._clients.get(key)
        if client is None:
            retry = RetryPolicy(min(settings.max_retries, TOKEN_RETRY.max_retries),
                                min(settings.retry_deadline_seconds, TOKEN_RETRY.deadline_seconds))
            client = self._clients[key] = AsyncPicaClient.from_settings(
                settings, page_size=100, retry=retry, max_concurrency=TOKEN_CALLS_IN_FLIGHT,
                timeout=min(settings.timeout_seconds, TOKEN_RETRY.deadline_seconds))  # a first wait within it too
        return client

    def cors_headers(self, request: Request, settings: Settings) -> dict[str, str]:
        origin = settings.authkit_allowed_origin
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": "600",
            "Cache-Control": "no-store",
        }
        if origin != "*":
            headers["Vary"] = "Origin"
        if request.headers.get("access-control-request-private-network", "").lower() == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"
        return headers

    async def handle(self, request: Request) -> Response:
        settings = self._settings_for(request)
        cors = self.cors_headers(request, settings)

        def error(status: int, message: str, **extra: Any) -> Response:
            headers = {**cors, **extra.pop("headers", {})}
            return JSONResponse({"error": message, "status": status, **extra}, status, headers=headers)

        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        if request.method != "POST":
            return error(405, f"{request.method} is not allowed: POST a JSON body.", headers={"Allow": ALLOWED_METHODS})
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error(413, f"Body too large: at most {MAX_BODY_BYTES} bytes.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error(413, f"Body too large: at most {MAX_BODY_BYTES} bytes.")
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):  # RecursionError: a few KB of nested brackets
            return error(400, "Malformed body: send a JSON object (the widget sends {}).")
        if not isinstance(payload, dict):
            return error(400, "Malformed body: send a JSON object (the widget sends {}).")
        try:
            grant = self.signer.verify(request.headers.get(GRANT_HEADER))
        except GrantError as exc:
            return error(401, str(exc))
        wait = self.limiter.take(grant.identity)
        if wait is not None:
            return error(429, f"Too many token requests for this identity: retry in {wait:.0f} s.",
                         headers={"Retry-After": str(int(wait))})
        try:
            token = await self._client(settings).authkit_token_json(grant.identity, grant.identity_type)
        except RateLimitedError as exc:
            retry = f"{exc.retry_after:.0f}" if exc.retry_after is not None else "60"
            return error(429, f"Pica's rate limit was reached: open AuthKit again in {retry} s.",
                         headers={"Retry-After": retry})
        except AuthError:
            return error(502, "Pica refused the dashboard's secret key: an admin must check PICA_SECRET_KEY.")
        except PicaTimeoutError:
            return error(504, "Pica did not answer in time: retry.")
        except UpstreamUnavailableError as exc:
            return error(502, f"Pica is unavailable ({exc.status or 'no answer'}): retry in a moment.")
        except InvalidInputError as exc:
            if exc.status is None:  # refused here, before asking Pica: the grant's identity
                return error(400, exc.message)
            # Pica's own 400/409/422 to the dashboard's request: not the widget's, whose request was right
            return error(502, f"Pica refused the token request ({exc.status}): {exc.message}. Retry; if it keeps "
                              "failing, an admin must check Pica's status and the dashboard's log.")
        except InvalidResponseError:  # the contract's words mean nothing to whoever waits in the widget
            return error(502, "Pica's answer to the token request was not understood: retry; if it keeps failing, "
                              "an admin must check that PICA_API_URL points at Pica.")
        except PicaError as exc:  # anything else Pica answered is the gateway's failure, not the widget's request
            return error(502, f"Pica answered an error ({exc.status or 'no status'}): {exc.message}")
        log.info("minted an AuthKit token for identity type %s", grant.identity_type)
        return Response(token, media_type="application/json", headers=cors)
