"""The HTTP routes the dashboard's st.App serves beside its pages.

  /api/authkit/token   the AuthKit token route (pica_core.tokens)
  /api/health          mode and version, for probes
  /sandbox/…           the sandbox emulator, mounted in sandbox mode only

Built once per process (the entry script runs on every rerun; the routes must not).
"""

from __future__ import annotations

import sys
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route

from .config import SANDBOX_MOUNT, SANDBOX_LIVE_KEY, SANDBOX_TEST_KEY, Settings, load_settings
from .errors import ConfigError
from .tokens import GrantSigner, TokenRoute

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@lru_cache(maxsize=1)
def base_settings() -> Settings:
    return load_settings()


@lru_cache(maxsize=1)
def grant_signer() -> GrantSigner:
    """One signer per process: the Connect page issues grants, the token route verifies them."""
    settings = base_settings()
    return GrantSigner(settings.grant_secret, settings.grant_ttl_seconds)


def request_settings(request: Request) -> Settings:
    server = request.scope.get("server") or ("127.0.0.1", 8501)
    # Where this request came in (a unix socket has no port: then the default's)
    return base_settings().with_sandbox_port(int(server[1] or 8501), server[0] if server[1] else None)


async def health(request: Request) -> JSONResponse:
    settings = base_settings()
    return JSONResponse({"status": "ok", "mode": "sandbox" if settings.sandbox else "live",
                         "environment": settings.environment})


async def overview(request: Request) -> RedirectResponse:
    """The Overview is the default page, which Streamlit serves at / only: a typed or bookmarked /overview showed
    "Page not found". Relative, so that a base URL path (server.baseUrlPath) is kept."""
    query = request.url.query
    return RedirectResponse("./" + (f"?{query}" if query else ""), status_code=308)


@lru_cache(maxsize=1)
def _build() -> tuple[BaseRoute, ...]:
    settings = base_settings()
    routes: list[BaseRoute] = [
        Route("/api/authkit/token", TokenRoute(request_settings, grant_signer()).handle,
              methods=ALL_METHODS),
        Route("/api/health", health),
        Route("/overview", overview),
    ]
    if settings.sandbox and not settings.api_url:
        from .sandbox import SandboxConfig, create_app

        routes.append(Mount(SANDBOX_MOUNT, app=create_app(SandboxConfig(SANDBOX_TEST_KEY, SANDBOX_LIVE_KEY))))
    return tuple(routes)


def routes(*, exit_on_config_error: bool) -> list[BaseRoute]:
    """The routes, or (bad configuration) one clear line and exit when the server starts."""
    declare_navigation()
    try:
        return list(_build())
    except ConfigError as exc:
        if exit_on_config_error:
            print(f"Configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return []  # the pages show the same line


def declare_navigation() -> None:
    """Tell Streamlit that `pages/` is st.navigation's folder, not its legacy pages directory.

    Until some session has called st.navigation, Streamlit treats a `pages/` folder beside the
    main script as a v1 multipage app: the first deep link after a restart (e.g. /catalog) would
    run that page alone, without the entry script's navigation, banner and access checks.
    st.navigation sets this same flag; we set it before the first session can arrive.
    """
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
