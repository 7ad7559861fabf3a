"""A faithful local Pica: the API, the AuthKit hosted page, and fault injection.

`create_app()` returns a Starlette app serving:
  /v1/…               Pica's API as its public docs and official clients describe it, behind the sandbox keys
  /authkit            the AuthKit hosted page stand-in, speaking the widget's postMessage protocol
  /logos/{p}.svg      generated connector logos
  /control/…          sandbox-only controls: reset, connection state, faults, stats
Run it alone with `python -m pica_core.sandbox --port N`, or mount it (the dashboard does, at /sandbox).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .api import _dumps, _json_body, build_routes
from .errors import PicaHTTPError, pica_error
from .logos import logo_svg
from .state import FAULT_KINDS, Fault, SandboxConfig, SandboxState

__all__ = ["SandboxConfig", "SandboxState", "create_app"]

_PAGE = (Path(__file__).parent / "authkit_page.html").read_text(encoding="utf-8")
STATES = ("operational", "degraded", "failed", "unknown")
DEFAULT_SECONDS = {"latency": 0.5, "hang": 30, "rate_limit": 1}


def _script_json(obj: object) -> str:
    """JSON safe to inline in a <script>: no '</script>' or HTML comment can close it."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def create_app(config: SandboxConfig | None = None, state: SandboxState | None = None) -> Starlette:
    state = state or SandboxState(config or SandboxConfig())
    cfg = state.config
    catalog = state.catalog

    def require_key(request: Request) -> str:
        env = cfg.environment_of(request.headers.get("x-pica-secret"))
        if env is None:
            raise PicaHTTPError(401, "Sandbox controls need a sandbox key in x-pica-secret")
        return env

    def control(handler):
        async def run(request: Request) -> Response:
            try:
                require_key(request)
                result = await handler(request)
            except PicaHTTPError as exc:
                return pica_error(exc.status, exc.message)
            return result if isinstance(result, Response) else Response(_dumps(result), media_type="application/json")

        return run

    # --- AuthKit hosted page -----------------------------------------------------------------------
    async def authkit_page(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        meta = {c.platform: {"oauth": c.oauth} for c in catalog.connectors}
        html = _PAGE.replace("__META__", _script_json(meta)).replace(
            "__CONNECT_URL__", _script_json(f"{root}/authkit/connect"))
        # The page is framed by the dashboard: it may be embedded anywhere, like Pica's own.
        return HTMLResponse(html, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})

    async def authkit_connect(request: Request) -> Response:
        """What the hosted page calls after consent: creates the connection for the token's identity."""
        try:
            payload = await _json_body(request)
            if not isinstance(payload, dict):
                raise PicaHTTPError(400, "Body must be a JSON object")
            session = state.authkit_session(payload.get("requestId"))
            if session is None:
                raise PicaHTTPError(401, "This AuthKit session expired or is unknown: open the widget again")
            platform = payload.get("platform")
            if platform not in catalog.authkit_enabled[session["environment"]]:
                raise PicaHTTPError(404, f"Integration '{str(platform)[:60]}' is not enabled for AuthKit")
        except PicaHTTPError as exc:
            return pica_error(exc.status, exc.message)
        state.log_request("authkit/connect", {"route": "authkit/connect", "method": "POST", "path": "/authkit/connect",
                                              "query": "", "environment": session["environment"], "headers": {}, "body": ""})
        # Reconnecting repairs the identity's broken connection on that platform (same key), as a
        # support person expects after "Reconnect"; otherwise a new connection is created.
        broken = next((state.connections[cid] for cid in state.by_identity.get(session["identity"], [])
                       if state.connections[cid]["platform"] == platform
                       and state.connections[cid]["environment"] == session["environment"]
                       and state.connections[cid]["state"] in ("failed", "degraded")), None) if session["identity"] else None
        if broken is not None:
            conn = state.update_connection(broken["id"], state="operational")
        else:
            conn = state.add_connection(platform=platform, environment=session["environment"],
                                        identity=session["identity"], identity_type=session["identityType"])
        connector = catalog.by_platform[platform]
        now_ms = int(time.time() * 1000)
        record = {  # the V1-era record the npm package's LINK_SUCCESS type describes
            "_id": conn["id"], "platformVersion": conn["platformVersion"], "connectionDefinitionId": f"conn_def::{connector.id}",
            "name": conn["name"], "key": conn["key"], "environment": conn["environment"], "platform": platform,
            "secretsServiceId": f"sec::{conn['id'][:8]}", "identity": conn["identity"], "identityType": conn["identityType"],
            "settings": {"parseWebhookBody": False, "showSecret": False, "allowCustomEvents": False, "oauth": connector.oauth},
            "throughput": {"key": conn["key"], "limit": 100}, "createdAt": now_ms, "updatedAt": now_ms, "updated": False,
            "version": "1.0.0", "lastModifiedBy": "system", "deleted": False, "tags": conn["tags"], "active": True,
            "deprecated": False,
        }
        return Response(_dumps(record), media_type="application/json")

    async def logo(request: Request) -> Response:
        platform = request.path_params["platform"]
        connector = catalog.by_platform.get(platform)
        if connector is None:
            return pica_error(404, "Logo not found")
        return Response(logo_svg(platform, connector.name), media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400"})

    # --- controls --------------------------------------------------------------------------------------
    async def reset(request: Request):
        state.reset()
        return {"reset": True, "connections": len(state.connections)}

    async def set_state(request: Request):
        payload = await _json_body(request)
        conn = state.find(request.path_params["id"])
        if conn is None:
            raise PicaHTTPError(404, "Connection not found")
        new = payload.get("state") if isinstance(payload, dict) else None
        if new not in STATES:
            raise PicaHTTPError(400, f"state must be one of {', '.join(STATES)}")
        return state.update_connection(conn["id"], state=new)

    async def faults(request: Request):
        if request.method == "DELETE":
            state.faults.clear()
            return {"faults": []}
        if request.method == "POST":
            payload = await _json_body(request)
            if not isinstance(payload, dict) or payload.get("kind") not in FAULT_KINDS:
                raise PicaHTTPError(400, f"kind must be one of {', '.join(FAULT_KINDS)}")
            try:
                fault = Fault(kind=payload["kind"], count=int(payload.get("count", 1)), path=str(payload.get("path", "")),
                              method=str(payload.get("method", "")).upper(), query=str(payload.get("query", "")),
                              status=int(payload.get("status", 503)),
                              seconds=float(payload.get("seconds", DEFAULT_SECONDS.get(payload["kind"], 0))))
            except (TypeError, ValueError):
                raise PicaHTTPError(400, "count and status must be integers, seconds a number") from None
            if fault.count < 1 or not 300 <= fault.status <= 599:
                raise PicaHTTPError(400, "count must be at least 1 and status a redirect or error status (300-599)")
            if fault.path and not fault.path.startswith("/"):  # Pica's paths all start with one: it would never fire
                raise PicaHTTPError(400, f"path must start with / (such as /v1/vault): {fault.path} matches no request")
            state.faults.append(fault)
        return {"faults": [f.as_dict() for f in state.faults]}

    async def stats(request: Request):
        if request.method == "DELETE":
            state.request_counts.clear()
            state.request_log.clear()
        return {"total": sum(state.request_counts.values()), "by_route": dict(state.request_counts)}

    async def requests_log(request: Request):
        try:
            limit = max(1, min(500, int(request.query_params.get("limit", "50"))))
        except ValueError:
            raise PicaHTTPError(400, "limit must be an integer") from None
        return {"requests": list(state.request_log)[-limit:]}

    async def settings(request: Request):
        if request.method == "POST":
            payload = await _json_body(request)
            if not isinstance(payload, dict) or not isinstance(payload.get("throughput"), int) or payload["throughput"] < 0:
                raise PicaHTTPError(400, "Send {\"throughput\": N} with N ≥ 0 (0 = unlimited)")
            cfg.throughput = payload["throughput"]
            state.rate_windows.clear()
        return {"throughput": cfg.throughput, "test_key": cfg.test_key, "live_key": cfg.live_key,
                "connections": len(state.connections)}

    async def index(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return Response(_dumps({"name": "Pica sandbox", "api": f"{root}/v1", "authkit": f"{root}/authkit",
                                "controls": f"{root}/control"}), media_type="application/json")

    routes = build_routes(state) + [
        Route("/", index),
        Route("/authkit", authkit_page),
        Route("/authkit/", authkit_page),
        Route("/authkit/connect", authkit_connect, methods=["POST"]),
        Route("/logos/{platform}.svg", logo),
        Route("/control/reset", control(reset), methods=["POST"]),
        Route("/control/connections/{id}/state", control(set_state), methods=["POST"]),
        Route("/control/faults", control(faults), methods=["GET", "POST", "DELETE"]),
        Route("/control/stats", control(stats), methods=["GET", "DELETE"]),
        Route("/control/requests", control(requests_log), methods=["GET"]),
        Route("/control/settings", control(settings), methods=["GET", "POST"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        rate = state.rate_headers()  # on every answer, per the contract
        if status == 405:
            return pica_error(405, f"Method {request.method} is not allowed here", rate)
        return Response(b'{"type":"error","error":"Not found"}', status, headers=rate, media_type="application/json")

    async def crashed(request: Request, exc: Exception) -> Response:
        return pica_error(500, "Internal sandbox error")

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crashed})
    app.state.sandbox = state
    return app
