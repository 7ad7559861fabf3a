"""The Pica client: every endpoint of the contract, sync and async, one implementation.

`PicaClient` (sync, for pages) and `AsyncPicaClient` (for concurrent work: fleet sync, the
token route) share everything but the I/O loop: each endpoint is described once as an
`Operation`, and each client runs operations with its own transport. Pagination, retries
and error mapping live here, once.

Retries: reads (and the AuthKit token pages, as the official generator does) retry on
transport errors, timeouts, 429 and 5xx with jittered exponential backoff, honouring
Retry-After / x-pica-rate-limit-reset, within a total deadline. Passthrough writes are
never retried; a passthrough GET is retried only when Pica itself (not the upstream) failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, Generic, Required, TypeVar
from collections.abc import Callable, Iterator, Mapping, Sequence

import httpx
from pydantic import ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import from_json, to_json
from typing_extensions import TypedDict  # pydantic needs this one's TypedDict before Python 3.12

from . import validation
from .config import (
    ACTION_HEADER,
    CONNECTION_HEADER,
    PASSTHROUGH_HEADER_PREFIX,
    RATE_RESET_HEADER,
    SECRET_HEADER,
    Secret,
    Settings,
)
from .transport import lean_transport_for
from .errors import (
    LONGEST_WAIT,
    AuthError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PicaError,
    PicaTimeoutError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from .text import scrub
from .models import (
    Action,
    ActionHit,
    Connection,
    Connector,
    Knowledge,
    PassthroughResponse,
    UserFlags,
)

log = logging.getLogger("pica_core.client")
# httpx logs each request's URL whole at INFO: a platform's credential in a console call's query, a secret typed
# into its path. Its warnings still show.
logging.getLogger("httpx").setLevel(logging.WARNING)

AUTHKIT_PAGE_SIZE = 100  # what the official token generator asks for
FLAGS_TTL_SECONDS = 60.0
USER_AGENT = "pica-integration-ops-dashboard/1.0"
SANDBOX_REFUSED_HINT = ("The sandbox refused its own key, so a fault is injected: clear it (Settings → "
                        "Clear injected faults) or wait until it has run out.")

T = TypeVar("T")
Parse = Callable[[Any], Any]


def _as_is(data: Any) -> Any:
    return data


_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")  # \u0000 after an even number of backslashes


def _without_nul(body: bytes) -> bytes:
    """Pica's JSON with each NUL character (escaped: JSON has it no other way) as U+FFFD. PostgreSQL's text cannot
    hold NUL and SQLite's JSON functions end a string at it: a connection whose identity held one failed its sync
    batch, and every resume of it. The search is one scan of the bytes; a body without one is returned as it is."""
    return _ESCAPED_NUL.sub(rb"\1\\ufffd", body) if b"\\u0000" in body else body


@dataclass
class Operation(Generic[T]):
    """One Pica call, described without doing any I/O."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json_body: Any = None
    parse: Parse = _as_is  # paginated: gets the rows of every page
    paginated: bool = False
    row_model: type | None = None  # paginated: the rows' model or TypedDict (the envelope is validated in one pass)
    page_size: int | None = None
    retry: bool = True
    expect_json: bool = True
    raw: bool = False  # `parse` gets the body's bytes, not decoded JSON

    def page_params(self, page: int, limit: int) -> dict[str, Any]:
        return {**self.params, "limit": limit, "page": page}


@dataclass
class PageResult:
    rows: list[Any]
    total: int
    pages: int
    page: int
    # When Pica's answer arrived: what it says was so then, and no later (a sync stores a page after that).
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def page_count(self, limit: int) -> int:
        """How many pages the list has at `limit` rows a page: Pica's `pages`, or, should an envelope leave it out,
        what its `total` makes."""
        return max(1, self.pages or (math.ceil(self.total / limit) if limit else 1))


@cache
def _envelope(row_model: type) -> TypeAdapter:
    """{rows, total, pages, page} of `row_model`, parsed and validated from the bytes in one pass (pydantic-core):
    about half the CPU of json.loads followed by a validation per row, which a 50,000-row sync feels."""
    envelope = create_model(f"{row_model.__name__}Page", __config__=ConfigDict(extra="ignore"),
                            rows=(list[row_model], ...), total=(int, 0), pages=(int, 0), page=(int, 1))
    return TypeAdapter(envelope)


@dataclass
class RetryPolicy:
    max_retries: int = 3
    deadline_seconds: float = 30.0
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: float | None, started: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            wait = retry_after
        else:
            wait = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))
        if time.monotonic() - started + wait > self.deadline_seconds:
            return None
        return wait


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if value is None or value == [] or value == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple, set)):
            value = ",".join(str(v) for v in value)
        out[name] = value
    return out


_UNIX_TIME_FROM = 1e9  # "seconds" beyond this are a moment (2001 on): GitHub's and others' x-ratelimit-reset
_UNIX_MS_FROM = 1e12  # and beyond this, that moment in milliseconds


def retry_after(headers: Mapping[str, str], names: Sequence[str] = ("retry-after", RATE_RESET_HEADER)) -> float | None:
    """Seconds to wait, from the first of these headers that says (Pica's by default): seconds, a Unix time (in
    seconds or milliseconds), or Retry-After's HTTP date; None when none says, or says more than a day either way."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        raw = (lowered.get(name) or "").strip()
        try:
            value = float(raw)
            if value >= _UNIX_TIME_FROM:
                value = (value / 1000 if value >= _UNIX_MS_FROM else value) - time.time()
        except ValueError:
            try:
                value = parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
        if not math.isfinite(value):
            continue
        return max(0.0, value) if abs(value) <= LONGEST_WAIT else None  # nor is a moment days past
    return None


class _Core:
    """Request building, response interpretation and retry decisions, shared by both clients."""

    def __init__(
        self,
        *,
        base_url: str,
        secret: Secret,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        page_size: int = 300,
        max_concurrency: int = 4,
        on_retry: Callable[[float, PicaError], None] | None = None,
        sandbox: bool = False,
    ) -> None:
        """`on_retry(seconds, error)` before each wait to retry (a page's progress can say why it paused);
        `sandbox`: the dashboard runs in sandbox mode (its hints then name the sandbox's controls)."""
        if not base_url:
            raise ValueError("base_url is required (the sandbox's or Pica's URL)")
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.retry_policy = retry or RetryPolicy()
        self.page_size = page_size
        self.max_concurrency = max_concurrency
        self.on_retry = on_retry
        self.sandbox = sandbox
        self.request_count = 0
        self._count_lock = threading.Lock()
        self._white_label: tuple[bool, float] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any):
        if not settings.api_url:
            raise ValueError("Settings have no API URL yet (sandbox mode needs the server port)")
        kwargs: dict[str, Any] = dict(
            base_url=settings.api_url,
            secret=settings.effective_secret(),
            timeout=settings.timeout_seconds,
            connect_timeout=settings.connect_timeout_seconds,
            retry=RetryPolicy(settings.max_retries, settings.retry_deadline_seconds),
            page_size=settings.page_size,
            max_concurrency=settings.max_concurrency,
            sandbox=settings.sandbox,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, secret=****)"

    # --- building --------------------------------------------------------------------------------
    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {SECRET_HEADER: self._secret.reveal(), "user-agent": USER_AGENT}
        if extra:
            headers.update(extra)
        return headers

    def _count(self) -> None:
        with self._count_lock:
            self.request_count += 1

    def _redact(self, text: str) -> str:
        secret = self._secret.reveal()
        escaped = repr(secret.encode("utf-8"))[2:-1]  # as h11 quotes a header value it refuses: b'…\r\n…'
        return scrub(scrub(text, secret), escaped) or ""

    # --- interpreting ------------------------------------------------------------------------------
    def _error(self, response: httpx.Response, method: str, path: str) -> PicaError:
        status = response.status_code
        key = message = None
        try:
            body = response.json()
            if isinstance(body, dict):
                key = body.get("key")
                message = body.get("message") or body.get("error")
        except ValueError:
            pass
        message = self._redact(str(message or response.reason_phrase or "Pica answered an error"))[:500]
        key = self._redact(str(key)) if key is not None else None  # an error key may echo what Pica was sent
        common = dict(status=status, key=key, method=method, path=path)
        if status in (401, 403):
            if self.sandbox:  # no key to check: the sandbox refuses its own only when a fault is injected
                common["hint"] = SANDBOX_REFUSED_HINT
            return AuthError(message, **common)
        if status == 404:
            return NotFoundError(message, **common)
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after(response.headers), **common)
        if status in (400, 409, 413, 422):
            return InvalidInputError(message, **common)
        if 300 <= status < 400:  # not followed: the secret key would go wherever it points
            where = self._redact(response.headers.get("location", ""))[:200]
            return PicaError(f"Pica's address answered with a redirect ({status}{' to ' + where if where else ''})",
                             hint="Set PICA_API_URL to the address Pica's API answers at (https://…); nothing was "
                                  "done.", **common)
        if status >= 500:
            error = UpstreamUnavailableError(message, **common)
            # A gateway's 502 or 504 can come after it passed the call on: what it did there, nobody can say.
            error.maybe_delivered = status in (502, 504)
            return error
        return PicaError(message, **common)

    def _transport_error(self, exc: Exception, method: str, path: str) -> PicaError:
        if isinstance(exc, httpx.LocalProtocolError):  # h11 refused what would have been sent: nothing went out
            # h11 quotes the header it refused, and that may be the secret's
            return InvalidInputError(self._redact(f"The request cannot be sent as HTTP: {exc}"), method=method,
                                     path=path)
        if isinstance(exc, httpx.DecodingError):  # an answer whose Content-Encoding does not decode
            error = InvalidResponseError(self._redact(f"Pica's answer could not be decoded: {exc}"), method=method,
                                         path=path)
            error.maybe_delivered = True  # an answer came: the call went through, whatever it did
            return error
        if isinstance(exc, httpx.TimeoutException):
            error = PicaTimeoutError(f"Pica did not answer within {self.timeout.read:g} s", method=method, path=path)
        else:
            reason = type(exc).__name__
            error = UpstreamUnavailableError(f"Could not reach Pica at {self.base_url} ({reason})", method=method,
                                             path=path)
        # Only a connection never made (or never taken from the pool) surely sent nothing.
        error.maybe_delivered = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        return error

    def _decode(self, response: httpx.Response, op: Operation) -> Any:
        if not op.expect_json:
            return None
        if op.raw:
            return response.content
        if not response.content:
            raise InvalidResponseError("Pica answered with an empty body", status=response.status_code,
                                       method=op.method, path=op.path)
        try:
            return from_json(_without_nul(response.content))  # pydantic-core's: faster than json.loads on lists
        except ValueError:
            raise InvalidResponseError("Pica answered with a body that is not valid JSON",
                                       status=response.status_code, method=op.method, path=op.path) from None

    def _page(self, response: httpx.Response, op: Operation) -> PageResult:
        assert op.row_model is not None, "paginated operations name their row model"
        try:
            envelope = _envelope(op.row_model).validate_json(_without_nul(response.content))
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                message = "Pica answered with a body that is not valid JSON"
            else:
                message = f"Pica's list answer did not match the contract ({exc.error_count()} problems)"
            raise InvalidResponseError(message, status=response.status_code, method=op.method, path=op.path) from None
        return PageResult(envelope.rows, envelope.total or len(envelope.rows), envelope.pages, envelope.page)

    def _parse(self, data: Any, op: Operation) -> Any:
        try:
            return op.parse(data)
        except (ValueError, TypeError) as exc:
            raise InvalidResponseError(f"Pica's answer did not match the contract ({exc.__class__.__name__})",
                                       method=op.method, path=op.path) from None

    def _verdict(self, op: Operation, response: httpx.Response | None, exc: Exception | None,
                 attempt: int, started: float) -> tuple[float | None, PicaError | None]:
        """(delay before retrying or None, error to raise if not retrying)."""
        if exc is not None:
            error = self._transport_error(exc, op.method, op.path)
            if not isinstance(error, UpstreamUnavailableError):  # the same request would fail the same way
                return None, error
            wait = None
        else:
            assert response is not None
            error = self._error(response, op.method, op.path)
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable:
                return None, error
            wait = retry_after(response.headers) if response.status_code == 429 else None
        if not op.retry:
            return None, error
        delay = self.retry_policy.delay(attempt, wait, started)
        if delay is not None:
            secret = self._secret.reveal()  # a path the console sends may hold it (typed into a variable)
            log.info("retrying %s %s in %.2fs after %s", op.method, scrub(op.path, secret), delay,
                     scrub(str(error), secret))
            if self.on_retry is not None:
                self.on_retry(delay, error)
        elif attempt:
            error.after_tries(attempt + 1, time.monotonic() - started)
        return delay, error

    # The account's white-label flag changes about never; the official generator asks for it on every token,
    # which doubles the Pica calls (and the rate-limit budget) each AuthKit open costs. Remember it a minute.
    def _cached_white_label(self) -> bool | None:
        cached = self._white_label
        return cached[0] if cached and time.monotonic() < cached[1] else None

    def _remember_white_label(self, value: bool) -> bool:
        self._white_label = (value, time.monotonic() + FLAGS_TTL_SECONDS)
        return value

    def _page_plan(self, first: PageResult, limit: int) -> list[int]:
        return list(range(2, first.page_count(limit) + 1))


class _Endpoints:
    """Every endpoint of the contract, as operations run by the concrete client's `_run`."""

    page_size: int

    def _run(self, op: Operation) -> Any:  # pragma: no cover - provided by the clients
        raise NotImplementedError

    # --- catalog -------------------------------------------------------------------------------------
    def connectors(self, *, authkit: bool | None = None, platform: str | None = None, key: str | None = None,
                   name: str | None = None, category: str | None = None) -> list[Connector]:
        return self._run(Operation("GET", "/v1/available-connectors", params=dict(
            authkit=authkit, platform=platform, key=key, name=name, category=category),
            row_model=Connector, paginated=True))

    def actions(self, platform: str, *, title: str | None = None, key: str | None = None,
                method: str | None = None) -> list[Action]:
        return self._run(Operation("GET", f"/v1/available-actions/{_segment(platform)}", params=dict(
            title=title, key=key, method=method), row_model=Action, paginated=True))

    def search_actions(self, platform: str, query: str = "", *, limit: int = 20,
                       knowledge: bool = True) -> list[ActionHit]:
        return self._run(Operation("GET", f"/v1/available-actions/search/{_segment(platform)}", params=dict(
            query=query, limit=limit, executeAgent=knowledge or None),
            parse=lambda rows: [ActionHit.model_validate(r) for r in _array(rows)]))

    def knowledge(self, action_id: str) -> Knowledge | None:
        return self._run(Operation("GET", "/v1/knowledge", params={"_id": action_id},
                                   parse=lambda data: _first_row(data, Knowledge)))

    # --- vault ------------------------------------------------------------------------------------------
    def connections(self, *, identity: str | None = None, identity_type: str | None = None,
                    platform: str | None = None, keys: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                    name: str | None = None, platform_version: str | None = None,
                    active: bool | None = None) -> list[Connection]:
        return self._run(self.connections_operation(
            identity=identity, identity_type=identity_type, platform=platform, keys=keys, tags=tags, name=name,
            platform_version=platform_version, active=active))

    def connections_operation(self, *, identity: str | None = None, identity_type: str | None = None,
                              platform: str | None = None, keys: Sequence[str] | None = None,
                              tags: Sequence[str] | None = None, name: str | None = None,
                              platform_version: str | None = None, active: bool | None = None,
                              page_size: int | None = None, row_model: type = Connection) -> Operation:
        """`row_model=ConnectionRow` parses pages into plain dicts of the stored fields (the fleet sync)."""
        if identity is not None:
            identity = validation.identity(identity)
        parse: Parse = _as_is
        if keys and any("," in key for key in keys):
            # Pica reads `key` as a comma-separated list, and an identity (the key's last part) may hold a comma:
            # such keys are not asked for but matched here, among their platform's connections.
            wanted, platforms = set(keys), {key.split("::")[1] for key in keys}
            keys, platform = None, platform or (platforms.pop() if len(platforms) == 1 else None)
            parse = lambda rows: [row for row in rows  # noqa: E731
                                  if (row["key"] if isinstance(row, dict) else row.key) in wanted]
        return Operation("GET", "/v1/vault/connections", params=dict(
            identity=identity, identityType=validation.identity_type(identity_type), platform=platform,
            key=list(keys) if keys else None, tags=list(tags) if tags else None, name=name,
            platformVersion=platform_version, active=active),
            row_model=row_model, paginated=True, page_size=page_size, parse=parse)

    def connection(self, connection_id: str) -> Connection:
        return self._run(Operation("GET", f"/v1/vault/connections/{_segment(connection_id)}",
                                   parse=Connection.model_validate))

    def connection_by_key(self, key: str, *, identity: str | None = None) -> Connection | None:
        """The connection with this key, or None (Pica lists it by key; there is no get-by-key). `identity`, when
        known, narrows the search for a key holding a comma (see `connections_operation`)."""
        key = validation.connection_key(key)
        if "," in key:
            op = self.connections_operation(keys=[key], identity=identity)
            return self._run(replace(op, parse=lambda rows, matching=op.parse: next(iter(matching(rows)), None)))
        return self._run(Operation("GET", "/v1/vault/connections", params={"key": key, "limit": 1},
                                   parse=lambda data: _first_row(data, Connection)))

    def update_connection_tags(self, connection_id: str, tags: Sequence[str], *,
                               existing: Sequence[str] = ()) -> Connection:
        """`existing`: the connection's tags at Pica, which pass as they are (`validation.tags`)."""
        return self._run(Operation("PATCH", f"/v1/vault/connections/{_segment(connection_id)}",
                                   json_body={"tags": validation.tags(list(tags), existing=existing)},
                                   parse=Connection.model_validate, retry=False))

    def delete_connection(self, connection_id: str) -> None:
        return self._run(Operation("DELETE", f"/v1/vault/connections/{_segment(connection_id)}",
                                   parse=lambda _: None, retry=False, expect_json=False))

    # --- account ------------------------------------------------------------------------------------------
    def user_flags(self) -> UserFlags:
        return self._run(Operation("GET", "/v1/users/flags", parse=UserFlags.model_validate))

    def authkit_page(self, page: int, identity: str | None, identity_type: str | None) -> Operation:
        body: dict[str, Any] = {}
        if identity is not None:
            body["identity"] = validation.identity(identity)
        if identity_type:
            body["identityType"] = validation.identity_type(identity_type)
        return Operation("POST", "/v1/authkit", params={"limit": AUTHKIT_PAGE_SIZE, "page": page}, json_body=body,
                         parse=_authkit_page, raw=True)


def _segment(value: str) -> str:
    """One URL path segment, so an id can never climb out of its route."""
    from urllib.parse import quote

    if str(value).strip() in ("", ".", ".."):  # another route: /v1/vault/connections/, …/connections/.. → /v1/vault
        raise InvalidInputError(f"An id or a platform is needed here, not {str(value).strip() or 'nothing'!r}.")
    return quote(str(value), safe="")


def _array(data: Any) -> list:
    if not isinstance(data, list):
        raise ValueError("expected a JSON array")
    return data


def _first_row(data: Any, model: type) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError("expected a rows envelope")
    return model.model_validate(data["rows"][0]) if data["rows"] else None


class _AnyObject(TypedDict):
    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]


class _AuthKitShape(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    rows: Required[list[_AnyObject]]
    pages: int


_AUTHKIT_SHAPE = TypeAdapter(_AuthKitShape)


@dataclass(frozen=True)
class AuthKitPage:
    body: bytes  # as Pica sent it
    pages: int


def _authkit_page(body: bytes) -> AuthKitPage:
    """Check the shape the widget reads (rows: a list of objects) without building the rows: a third of a decode."""
    return AuthKitPage(body, _AUTHKIT_SHAPE.validate_json(body).get("pages") or 1)


def authkit_token_json(pages: list[AuthKitPage], is_white_label: bool) -> bytes:
    """The token the widget gets, as the official generator builds it. One page (the usual case) is Pica's body
    with isWhiteLabel added to it as bytes: decoding and re-encoding ~20 KB was a quarter of the token route's
    CPU (bench/token_route.py). Several pages are merged as objects."""
    if len(pages) == 1:
        body = pages[0].body.rstrip()  # an object with rows (checked): it ends with "}" and takes a comma
        return body[:-1] + b',"isWhiteLabel":' + (b"true" if is_white_label else b"false") + b"}"
    return to_json(merge_authkit_pages([from_json(page.body) for page in pages], is_white_label))


def merge_authkit_pages(pages: list[dict], is_white_label: bool) -> dict:
    """Merge AuthKit pages as the official generator does: one page, latest requestId."""
    first, latest = pages[0], pages[-1]
    if len(pages) == 1:
        return {**first, "isWhiteLabel": is_white_label}
    return {
        "rows": [row for page in pages for row in page["rows"]],
        "page": 1,
        "pages": 1,
        "total": first.get("total", 0),
        "requestId": latest.get("requestId"),
        "isWhiteLabel": is_white_label,
    }


def _body(op: Operation, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs, "json": op.json_body} if op.json_body is not None else kwargs


def _ok(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300  # a redirect is not Pica's answer (a DELETE's 308 was "deleted")


def _is_pica_error(response: httpx.Response) -> bool:
    """A passthrough answer is the upstream's unless Pica failed before forwarding (no passthrough headers), or an
    address in front of Pica redirected it (a 3xx without them: nothing was forwarded)."""
    if response.status_code < 300:
        return False
    return not any(name.startswith(PASSTHROUGH_HEADER_PREFIX) for name in response.headers)


PASSTHROUGH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def header_value(value: str) -> str | bytes:
    """A key's identity may be any text (an accented name, say): HTTP headers carry bytes, and httpx encodes a str
    as ASCII only, so a value beyond ASCII goes as its UTF-8 bytes."""
    return value if value.isascii() else value.encode()


@dataclass
class PassthroughCall:
    """A passthrough request, checked and ready for either client."""

    op: Operation
    query: list[tuple[str, str]]
    headers: dict[str, str]
    kwargs: dict[str, Any]

    @classmethod
    def build(cls, method: str, path: str, *, connection_key: str, action_id: str,
              query: Mapping[str, Any] | Sequence[tuple[str, str]] | None = None,
              headers: Mapping[str, str] | None = None, json: Any = None, form: Mapping[str, Any] | None = None,
              files: Any = None, content: bytes | None = None) -> PassthroughCall:
        method = method.upper()
        if method not in PASSTHROUGH_METHODS:
            raise InvalidInputError(f"Method {method} is not supported by Pica's passthrough "
                                    f"(use {', '.join(PASSTHROUGH_METHODS)}).")
        path = validation.passthrough_path(path)
        extra = {name: value for name, value in validation.headers(headers or {}).items()}
        extra[CONNECTION_HEADER] = header_value(validation.connection_key(connection_key))
        extra[ACTION_HEADER] = validation.action_id(action_id)
        kwargs: dict[str, Any] = {}
        bodies = [b for b in (json is not None, form is not None, files is not None, content is not None) if b]
        if len(bodies) > 1 and not (form is not None and files is not None and json is None and content is None):
            raise InvalidInputError("Send one body: JSON, form fields, multipart or raw content.")
        if json is not None:
            kwargs["json"] = json
        if form is not None:
            kwargs["data"] = dict(form)
        if files is not None and len(files):
            kwargs["files"] = files
        elif files is not None:  # fields alone: httpx sends data= urlencoded, and (None, value) parts as fields
            kwargs["files"] = [(str(name), (None, str(value))) for name, value in kwargs.pop("data", {}).items()]
        if content is not None:
            kwargs["content"] = content
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query or [])
        op = Operation(method, f"/v1/passthrough/{path}", retry=method == "GET", expect_json=False)
        return cls(op, [(str(k), str(v)) for k, v in pairs], extra, kwargs)

    def result(self, response: httpx.Response, elapsed_ms: float) -> PassthroughResponse:
        return PassthroughResponse(
            status=response.status_code, headers=dict(response.headers), body=response.content,
            elapsed_ms=elapsed_ms, url=str(response.request.url),
            request_bytes=int(response.request.headers.get("content-length") or 0),
            waits=list(response.extensions.get("pica_waits", [])),
        )


class PicaClient(_Core, _Endpoints):
    """Synchronous client, for page scripts. Thread-safe (one pooled httpx.Client)."""

    def __init__(self, *args: Any, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=transport,
                                  limits=httpx.Limits(max_connections=max(10, self.max_concurrency * 2)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PicaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, op: Operation, params: Any, *, headers: Mapping[str, str] | None = None,
              final: Callable[[httpx.Response], bool] = _ok, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        waits: list[tuple[float, str]] = []  # (seconds, why) before each try again: the console says so
        while True:
            response = exc = None
            try:
                self._count()
                response = self._http.request(op.method, op.path, params=params, headers=self._headers(headers),
                                              **_body(op, kwargs))
                if final(response):
                    response.extensions["pica_waits"] = waits
                    return response
            except (httpx.TransportError, httpx.DecodingError) as error:
                exc = error
            delay, error = self._verdict(op, response, exc, attempt, started)
            if delay is None:
                raise error from None
            waits.append((delay, str(error)))
            time.sleep(delay)
            attempt += 1

    def fetch_page(self, op: Operation, page: int, limit: int | None = None) -> PageResult:
        response = self._send(op, _clean(op.page_params(page, limit or op.page_size or self.page_size)))
        return self._page(response, op)

    def iter_pages(self, op: Operation) -> Iterator[PageResult]:
        limit = op.page_size or self.page_size
        first = self.fetch_page(op, 1, limit)
        yield first
        for page in self._page_plan(first, limit):
            yield self.fetch_page(op, page, limit)

    def _run(self, op: Operation) -> Any:
        if op.paginated:
            return op.parse([row for page in self.iter_pages(op) for row in page.rows])
        response = self._send(op, _clean(op.params))
        return self._parse(self._decode(response, op), op)

    def authkit_token(self, identity: str | None, identity_type: str | None = None) -> dict:
        """The AuthKit token object (every page merged), as the official generator returns it."""
        return from_json(self.authkit_token_json(identity, identity_type))

    def authkit_token_json(self, identity: str | None, identity_type: str | None = None) -> bytes:
        white_label = self._cached_white_label()
        if white_label is None:
            try:
                white_label = self._remember_white_label(self.user_flags().authkit_whitelist)
            except PicaError:
                white_label = False  # tolerated, as the official generator does
        first = self._run(self.authkit_page(1, identity, identity_type))
        rest = [self._run(self.authkit_page(n, identity, identity_type)) for n in range(2, first.pages + 1)]
        return authkit_token_json([first, *rest], white_label)

    def passthrough(self, method: str, path: str, **request: Any) -> PassthroughResponse:
        """Call an action on a connection; upstream errors come back as responses, Pica's own raise."""
        call = PassthroughCall.build(method, path, **request)
        started = time.perf_counter()
        response = self._send(call.op, call.query, headers=call.headers, final=lambda r: not _is_pica_error(r),
                              **call.kwargs)
        return call.result(response, (time.perf_counter() - started) * 1000)


class AsyncPicaClient(_Core, _Endpoints):
    """Async client for concurrent work (fleet sync, the token route): same operations, bounded gather.

    Its endpoint methods return awaitables of what the sync client's return.
    """

    def __init__(self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout,
                                       transport=transport or lean_transport_for(self.base_url))
        self._gate = asyncio.Semaphore(self.max_concurrency)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPicaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, op: Operation, params: Any, *, headers: Mapping[str, str] | None = None,
                    final: Callable[[httpx.Response], bool] = _ok, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        waits: list[tuple[float, str]] = []  # (seconds, why) before each try again: the console says so
        while True:
            response = exc = None
            try:
                self._count()
                async with self._gate:
                    response = await self._http.request(op.method, op.path, params=params,
                                                        headers=self._headers(headers), **_body(op, kwargs))
                if final(response):
                    response.extensions["pica_waits"] = waits
                    return response
            except (httpx.TransportError, httpx.DecodingError) as error:
                exc = error
            delay, error = self._verdict(op, response, exc, attempt, started)
            if delay is None:
                raise error from None
            waits.append((delay, str(error)))
            await asyncio.sleep(delay)
            attempt += 1

    async def fetch_page(self, op: Operation, page: int, limit: int | None = None) -> PageResult:
        response = await self._send(op, _clean(op.page_params(page, limit or op.page_size or self.page_size)))
        return self._page(response, op)

    async def _all_pages(self, op: Operation) -> list[PageResult]:
        limit = op.page_size or self.page_size
        first = await self.fetch_page(op, 1, limit)
        rest = await asyncio.gather(*(self.fetch_page(op, n, limit) for n in self._page_plan(first, limit)))
        return [first, *rest]

    async def _run_async(self, op: Operation) -> Any:
        if op.paginated:
            return op.parse([row for page in await self._all_pages(op) for row in page.rows])
        response = await self._send(op, _clean(op.params))
        return self._parse(self._decode(response, op), op)

    def _run(self, op: Operation) -> Any:
        return self._run_async(op)

    async def authkit_token(self, identity: str | None, identity_type: str | None = None) -> dict:
        return from_json(await self.authkit_token_json(identity, identity_type))

    async def authkit_token_json(self, identity: str | None, identity_type: str | None = None) -> bytes:
        """The token as the bytes the route answers (see `authkit_token_json`)."""

        async def flags() -> bool:
            cached = self._cached_white_label()
            if cached is not None:
                return cached
            try:
                return self._remember_white_label((await self.user_flags()).authkit_whitelist)
            except PicaError:
                return False  # tolerated, as the official generator does

        white_label, first = await asyncio.gather(flags(), self._run(self.authkit_page(1, identity, identity_type)))
        rest = await asyncio.gather(*(self._run(self.authkit_page(n, identity, identity_type))
                                      for n in range(2, first.pages + 1)))
        return authkit_token_json([first, *rest], white_label)

    async def passthrough(self, method: str, path: str, **request: Any) -> PassthroughResponse:
        call = PassthroughCall.build(method, path, **request)
        started = time.perf_counter()
        response = await self._send(call.op, call.query, headers=call.headers,
                                    final=lambda r: not _is_pica_error(r), **call.kwargs)
        return call.result(response, (time.perf_counter() - started) * 1000)
