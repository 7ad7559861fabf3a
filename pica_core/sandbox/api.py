"""The Pica API routes of the sandbox (/v1/…), following the contract field for field."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, UTC
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import PicaHTTPError, pica_error
from .state import Fault, SandboxState, parse_fault_header
from .upstream import respond

IDENTITY_TYPES = ("user", "team", "organization", "project")
MAX_IDENTITY = 128
MAX_PASSTHROUGH_BODY = 5 * 1024 * 1024
JSON = "application/json"

Handler = Callable[[Request, str], Awaitable[Response]]


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PicaHTTPError(400, f"Query parameter '{name}' must be a positive integer, got '{raw[:40]}'") from None
    if value < 1:
        raise PicaHTTPError(400, f"Query parameter '{name}' must be a positive integer, got '{raw[:40]}'")
    if maximum is not None and value > maximum:
        raise PicaHTTPError(400, f"Query parameter '{name}' must be at most {maximum}")
    return value


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise PicaHTTPError(400, f"Query parameter '{name}' must be true or false, got '{raw[:40]}'")


def _csv_param(request: Request, *names: str) -> list[str]:
    values: list[str] = []
    for name in names:
        for raw in request.query_params.getlist(name):
            values += [v.strip() for v in raw.split(",") if v.strip()]
    return values


def _identity(value: object, field: str = "identity") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PicaHTTPError(400, f"{field.capitalize()} must be a string")
    if len(value) > MAX_IDENTITY:
        raise PicaHTTPError(400, "Identity must not exceed 128 characters")
    return value


def _identity_type(value: object) -> str | None:
    if value is None or value == "":
        return None
    if value not in IDENTITY_TYPES:
        raise PicaHTTPError(400, f"identityType must be one of {', '.join(IDENTITY_TYPES)}")
    return value  # type: ignore[return-value]


def _page(request: Request, state: SandboxState, default_limit: int = 20) -> tuple[int, int]:
    return (_int_param(request, "limit", default_limit, state.config.max_limit), _int_param(request, "page", 1))


def _envelope(rows: list[bytes], total: int, limit: int, page: int, extra: str = "") -> Response:
    pages = math.ceil(total / limit) if total else 0
    body = b'{"rows":[' + b",".join(rows) + f'],"total":{total},"pages":{pages},"page":{page}{extra}}}'.encode()
    return Response(body, media_type=JSON)


def _paginate(items: list, limit: int, page: int) -> list:
    start = (page - 1) * limit
    return items[start:start + limit]


def build_routes(state: SandboxState) -> list[Route]:
    cfg = state.config
    catalog = state.catalog
    connector_cache: dict[str, list[bytes]] = {}
    authkit_cache: dict[tuple[str, str], list[bytes]] = {}

    def endpoint(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            secret = request.headers.get("x-pica-secret")
            env = cfg.environment_of(secret)
            if env is None:
                return pica_error(401, "You are not authorized to access this resource", state.rate_headers())
            allowed, rate_headers, resets_in = state.take_rate()
            body = b"" if request.method == "GET" else await request.body()
            state.log_request(name, {
                "route": name, "method": request.method, "path": request.url.path[len(request.scope.get("root_path", "")):],
                "query": request.url.query, "environment": env,
                "headers": {k: v for k, v in request.headers.items() if k != "x-pica-secret"},
                "body": body[:65536].decode("utf-8", "replace"),
            })
            if not allowed:
                return pica_error(429, "Rate limit exceeded", {**rate_headers, "retry-after": str(resets_in)})
            header_fault = request.headers.get("x-sandbox-fault")
            if header_fault:
                fault = parse_fault_header(header_fault)
            else:
                fault = state.take_fault(request.method, _pica_path(request), request.url.query)
            if fault is not None:
                early = await _apply_fault(fault, rate_headers, request.url)
                if early is not None:
                    return early
            try:
                response = await handler(request, env)
            except PicaHTTPError as exc:
                response = pica_error(exc.status, exc.message)
            response.headers.update(rate_headers)
            return response

        return run

    # --- connectors -------------------------------------------------------------------------------
    def connector_rows(base: str) -> list[bytes]:
        rows = connector_cache.get(base)
        if rows is None:
            rows = []
            for c in catalog.connectors:
                rows.append(_dumps({
                    "id": c.id, "name": c.name, "key": c.key, "platform": c.platform, "platformVersion": "v1",
                    "status": c.status, "description": c.description, "category": c.category,
                    "image": f"{base}/logos/{c.platform}.svg", "tags": [c.category.lower()] if c.category else [],
                    "oauth": c.oauth, "tools": c.tools, "version": "1.0.0", "active": c.status != "not_available",
                }))
            connector_cache[base] = rows
        return rows

    async def available_connectors(request: Request, env: str) -> Response:
        limit, page = _page(request, state)
        authkit = _bool_param(request, "authkit")
        platform = request.query_params.get("platform")
        key = request.query_params.get("key")
        name = (request.query_params.get("name") or "").lower()
        category = (request.query_params.get("category") or "").lower()
        enabled = catalog.authkit_enabled[env]
        rows = connector_rows(_base(request))
        picked = [
            i for i, c in enumerate(catalog.connectors)
            if (authkit is None or (c.platform in enabled) == authkit)
            and (not platform or c.platform == platform) and (not key or c.key == key)
            and (not name or c.name.lower() == name) and (not category or c.category.lower() == category)
        ]
        return _envelope([rows[i] for i in _paginate(picked, limit, page)], len(picked), limit, page)

    # --- actions ----------------------------------------------------------------------------------
    def platform_actions(platform: str):
        if platform not in catalog.by_platform:
            raise PicaHTTPError(404, f"Platform '{platform[:80]}' not found")
        return [a for a in catalog.actions_by_platform.get(platform, []) if a.listed]

    async def available_actions(request: Request, env: str) -> Response:
        limit, page = _page(request, state)
        actions = platform_actions(request.path_params["platform"])
        title = (request.query_params.get("title") or "").lower()
        key = request.query_params.get("key")
        method = (request.query_params.get("method") or "").upper()
        picked = [a for a in actions if (not title or title in a.title.lower()) and (not key or a.key == key)
                  and (not method or a.method == method)]
        rows = [_dumps({"title": a.title, "key": a.key, "modelName": a.model_name, "method": a.method,
                        "platform": a.platform}) for a in _paginate(picked, limit, page)]
        return _envelope(rows, len(picked), limit, page)

    async def search_actions(request: Request, env: str) -> Response:
        actions = platform_actions(request.path_params["platform"])
        limit = _int_param(request, "limit", 10, state.config.max_limit)
        with_knowledge = _bool_param(request, "executeAgent") is True
        words = [w for w in (request.query_params.get("query") or "").lower().split() if w]

        def score(a) -> int:
            text = f"{a.title} {a.path} {a.key}".lower()
            return sum(w in text for w in words)

        ranked = sorted((a for a in actions if not words or score(a)), key=lambda a: -score(a))[:limit]
        hits = []
        for a in ranked:
            hit = {"systemId": a.system_id, "title": a.title, "key": a.key, "method": a.method, "path": a.path,
                   "tags": list(a.tags)}
            if with_knowledge:
                hit["knowledge"] = a.knowledge
            hits.append(hit)
        return Response(_dumps(hits), media_type=JSON)

    async def knowledge(request: Request, env: str) -> Response:
        limit, page = _page(request, state)
        action = catalog.actions_by_id.get(request.query_params.get("_id") or "")
        rows = []
        if action is not None:
            rows = [_dumps({"_id": action.system_id, "connectionPlatform": action.platform, "title": action.title,
                            "path": action.path, "knowledge": action.knowledge, "method": action.method,
                            "baseUrl": action.base_url, "tags": list(action.tags), "active": True})]
        return _envelope(_paginate(rows, limit, page), len(rows), limit, page)

    # --- vault --------------------------------------------------------------------------------------
    async def list_connections(request: Request, env: str) -> Response:
        limit, page = _page(request, state)
        identity = _identity(request.query_params.get("identity"))
        identity_type = _identity_type(request.query_params.get("identityType"))
        platform = request.query_params.get("platform")
        keys = _csv_param(request, "key", "keys")
        tags = set(_csv_param(request, "tags"))
        name = request.query_params.get("name")
        version = request.query_params.get("platformVersion")
        active = _bool_param(request, "active")
        active = True if active is None else active

        def pick() -> list[str]:
            if keys:
                candidates = [state.by_key[k] for k in dict.fromkeys(keys) if k in state.by_key]  # a filter: once each
            elif identity is not None:
                candidates = state.by_identity.get(identity, [])
            else:
                candidates = state.order
            conns = state.connections
            picked = []
            for cid in candidates:
                c = conns[cid]
                if (c["environment"] == env and c["active"] == active
                        and (identity is None or c["identity"] == identity)
                        and (identity_type is None or c["identityType"] == identity_type)
                        and (not platform or c["platform"] == platform)
                        and (not tags or tags.issubset(c["tags"]))
                        and (not name or c["name"] == name)
                        and (not version or c["platformVersion"] == version)):
                    picked.append(cid)
            return picked

        # Keys and identities index a few connections; other filters scan the whole fleet, so their result is kept
        # until the vault changes (paging through 50,000 connections must not rescan them for every page).
        picked = pick() if keys or identity is not None else state.listing(
            (env, active, identity_type, platform, tuple(sorted(tags)), name, version), pick)
        return _envelope(state.rows_bytes(_paginate(picked, limit, page)), len(picked), limit, page)

    def own_connection(request: Request, env: str) -> dict:
        conn = state.connections.get(request.path_params["id"])
        if conn is None or conn["environment"] != env:
            raise PicaHTTPError(404, "Connection not found")
        return conn

    async def get_connection(request: Request, env: str) -> Response:
        conn = own_connection(request, env)
        return Response(state.row_bytes(conn["id"]), media_type=JSON)

    async def patch_connection(request: Request, env: str) -> Response:
        conn = own_connection(request, env)
        payload = await _json_body(request)
        if not isinstance(payload, dict) or "tags" not in payload:
            raise PicaHTTPError(400, "Body must be a JSON object with a 'tags' array")
        tags = payload["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
            raise PicaHTTPError(400, "'tags' must be an array of non-empty strings of at most 64 characters")
        if len(tags) > 50:
            raise PicaHTTPError(400, "A connection can carry at most 50 tags")
        updated = state.update_connection(conn["id"], tags=list(dict.fromkeys(tags)))
        return Response(_dumps(updated), media_type=JSON)

    async def delete_connection(request: Request, env: str) -> Response:
        conn = own_connection(request, env)
        state.delete_connection(conn["id"])
        return Response(b"", 200)

    # --- passthrough -----------------------------------------------------------------------------------
    async def passthrough(request: Request, env: str) -> Response:
        key = request.headers.get("x-pica-connection-key")
        if not key:
            raise PicaHTTPError(400, "Connection header not found")
        if not key.isascii():  # Starlette reads header bytes as Latin-1; clients send text beyond ASCII as UTF-8
            try:
                key = key.encode("latin-1").decode("utf-8")
            except UnicodeDecodeError:
                pass
        if key.split("::", 1)[0] != env:
            raise PicaHTTPError(404, "Invalid connection header")
        conn = state.find(key)
        if conn is None or not conn["active"]:
            raise PicaHTTPError(404, "Connection not found")
        action_id = request.headers.get("x-pica-action-id")
        if not action_id:
            raise PicaHTTPError(400, "Action id header not found")
        action = catalog.actions_by_id.get(action_id)
        if action is None or action.platform != conn["platform"]:
            raise PicaHTTPError(404, f"Action not found for platform {conn['platform']}")
        body = await request.body()
        if len(body) > MAX_PASSTHROUGH_BODY:
            raise PicaHTTPError(413, "Request body is too large")
        # As sent: Starlette's path is decoded already, which makes a variable's %2F a separator (x%2Fy: two segments).
        sent = (request.scope.get("raw_path") or b"").decode("latin-1").partition("?")[0]
        path = sent.partition("/v1/passthrough/")[2] or request.path_params["path"]
        segments = tuple(unquote(s) for s in path.strip("/").split("/") if s)
        # The id names the action; the path picks the upstream route (an action of this platform).
        route = action if action.matches(request.method, segments) else next(
            (a for a in catalog.actions_by_platform.get(conn["platform"], []) if a.matches(request.method, segments)),
            None,
        )
        if "custom" in action.tags:
            payload = _maybe_json(body)
            if not isinstance(payload, dict) or payload.get("connectionKey") != key:
                return Response(_dumps({"error": "connectionKey missing from the body of a custom action"}), 400,
                                media_type=JSON)
        upstream = respond(
            platform=conn["platform"], state=conn["state"], call_number=state.next_call_number(conn["id"]),
            method=request.method, path=path, query=request.url.query, body=body,
            content_type=request.headers.get("content-type", ""), action=route, connection_key=key,
        )
        headers = {f"x-pica-passthrough-{k}": v for k, v in upstream.headers.items()}
        if "content-type" in upstream.headers:
            headers["content-type"] = upstream.headers["content-type"]
        return Response(upstream.body, upstream.status, headers=headers)

    # --- users and AuthKit ------------------------------------------------------------------------------
    flags = _dumps({"accessList": ["authkit", "passthrough", "vault"], "authkitWhitelist": False,
                    "earlyAccess": [], "completedQuickstart": True})

    async def user_flags(request: Request, env: str) -> Response:
        return Response(flags, media_type=JSON)

    def authkit_rows(base: str, env: str) -> list[bytes]:
        """The environment's AuthKit-enabled integrations as serialised rows (the catalog is fixed: built once)."""
        rows = authkit_cache.get((base, env))
        if rows is None:
            enabled = sorted((catalog.by_platform[p] for p in catalog.authkit_enabled[env]), key=lambda c: c.name.lower())
            rows = authkit_cache[(base, env)] = [_dumps({
                "id": 1000 + c.id, "connectionDefId": c.id, "type": c.platform, "title": c.name,
                "image": f"{base}/logos/{c.platform}.svg", "activatedAt": "2025-03-14T09:26:53.589Z",
                "secretId": None, "clientSecretDisplay": "****" if c.oauth else None,
                "clientIdDisplay": f"{c.platform[:12]}-client" if c.oauth else None,
                "scopes": None, "environment": env, "guide": None, "createdAt": "2025-03-14T09:26:53.589Z",
                "tags": [], "active": True,
            }) for c in enabled]
        return rows

    async def authkit(request: Request, env: str) -> Response:
        limit, page = _page(request, state, default_limit=100)
        payload = await _json_body(request, allow_empty=True)
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise PicaHTTPError(400, "Body must be a JSON object")
        identity = _identity(payload.get("identity"))
        identity_type = _identity_type(payload.get("identityType", payload.get("identity_type")))
        request_id = state.open_authkit_session(identity, identity_type, env)
        rows = authkit_rows(_base(request), env)
        return _envelope(_paginate(rows, limit, page), len(rows), limit, page, extra=f',"requestId":{request_id}')

    pica = [
        ("GET", "/v1/available-connectors", "available-connectors", available_connectors),
        ("GET", "/v1/available-actions/search/{platform}", "available-actions/search", search_actions),
        ("GET", "/v1/available-actions/{platform}", "available-actions", available_actions),
        ("GET", "/v1/knowledge", "knowledge", knowledge),
        ("GET", "/v1/vault/connections", "vault/connections", list_connections),
        ("GET", "/v1/vault/connections/{id}", "vault/connections/get", get_connection),
        ("PATCH", "/v1/vault/connections/{id}", "vault/connections/patch", patch_connection),
        ("DELETE", "/v1/vault/connections/{id}", "vault/connections/delete", delete_connection),
        ("GET", "/v1/users/flags", "users/flags", user_flags),
        ("POST", "/v1/authkit", "authkit", authkit),
    ]
    routes: dict[str, dict[str, Callable]] = {}
    for method, path, name, handler in pica:
        routes.setdefault(path, {})[method] = endpoint(name, handler)
    passthrough_handler = endpoint("passthrough", passthrough)
    result = [_method_router(state, path, handlers) for path, handlers in routes.items()]
    result.append(_method_router(state, "/v1/passthrough/{path:path}", {
        m: passthrough_handler for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}))
    return result


def _method_router(state: SandboxState, path: str, handlers: dict[str, Callable]) -> Route:
    """One route per path: known methods dispatch, others get Pica's 405 (not Starlette's plain text)."""
    allow = ", ".join(sorted(handlers))

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:
            return pica_error(405, f"Method {request.method} is not allowed here",
                              {"allow": allow, **state.rate_headers()})
        return await handler(request)

    return Route(path, dispatch, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])


def _base(request: Request) -> str:
    """Where this sandbox is served, mount prefix included (Starlette's base_url leaves it out)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def _pica_path(request: Request) -> str:
    return request.url.path[len(request.scope.get("root_path", "")):]


def _maybe_json(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


async def _json_body(request: Request, allow_empty: bool = False) -> object:
    body = await request.body()
    if not body.strip():
        if allow_empty:
            return None
        raise PicaHTTPError(400, "Request body is empty: send a JSON object")
    try:
        return json.loads(body)
    except ValueError:
        raise PicaHTTPError(400, "Request body is not valid JSON") from None


async def _apply_fault(fault: Fault, rate_headers: dict[str, str], url: URL) -> Response | None:
    """Answer with the fault, or None to go on after a delay (latency, hang)."""
    if fault.kind in ("latency", "hang"):
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "rate_limit":
        wait = str(max(1, round(fault.seconds or 1)))  # an injected 429 says when to retry (default 1 s)
        headers = {**rate_headers, "x-pica-rate-limit-remainings": "0", "retry-after": wait}
        return pica_error(429, "Rate limit exceeded", headers)
    if fault.kind == "status" and fault.status < 400:  # an address in front of Pica that redirects (http → https)
        return Response(b"", fault.status, headers={"location": str(url.replace(scheme="https"))})
    if fault.kind == "status":
        return pica_error(fault.status, "Injected sandbox fault", rate_headers)
    if fault.kind == "malformed":
        return Response(b'{"rows":[{"id":"trunc', 200, headers=rate_headers, media_type=JSON)
    if fault.kind == "undecodable":  # a proxy that says gzip and sends something else
        return Response(b'{"rows": []}', 200, headers={**rate_headers, "content-encoding": "gzip"}, media_type=JSON)
    return DroppedConnection()


class DroppedConnection(Response):
    """Starts a response, then closes the socket before the body: what a crashed proxy looks like."""

    def __init__(self) -> None:
        super().__init__(b"", 200)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"rows":[', "more_body": True})
        # Returning mid-body makes the server close the socket (it logs one line, no traceback).


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
