"""Token route vs the seed guide's Node reference backend, side by side against the same sandbox.

Starts, each pinned with taskset:
  core 0   the sandbox (`python -m pica_core.sandbox --throughput 0`) that every backend mints against
  core 1   the Node reference backend (bench/node/server.js: http.createServer + @picahq/authkit-token 1.0.4),
           our TokenRoute.handle in a minimal Starlette app under uvicorn (one process, as in the dashboard),
           and the real dashboard (`streamlit run streamlit_app.py`, PICA_API_URL = the sandbox)
then checks the three answer the same token shape and drives each in turn with the same number of concurrent
keep-alive clients (default 50) for a fixed time, printing req/s, p50/p99 latency, errors, CPU, and the
throughput ratio to Node. Target (Connect issue): our route at least the Node backend's throughput.
Exits 1 on errors or differing answers; `--strict` also exits 1 under the target.

    .venv/bin/python bench/token_route.py [--seconds 10] [--clients 50] [--rounds 2] [--no-dashboard] [--strict]

Each request carries `x-user-id` (Node's identity) and an `x-authkit-grant` for the same identity (ours); the
identities rotate over a pool large enough that the route's per-identity limit (30 a minute) never trips.
Needs npm for the Node side: `npm install --no-audit --no-fund` runs in bench/node when node_modules is
missing (the package is GPL-3.0: installed at bench time only, never committed).
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import CORES, ROOT, PYTHON, LoadResult, Req, Server, free_port, load, shell, start_sandbox, table  # noqa: E402

NODE_DIR = HERE / "node"
TOKEN_PATH = "/api/authkit/token"
IDENTITIES = 20_000  # × 30 per minute per identity: far above any rate reached here


def token_request(grants: list[tuple[str, str]], n: int) -> Req:
    identity, grant = grants[n % len(grants)]
    return ("POST", TOKEN_PATH, {"content-type": "application/json", "x-user-id": identity, "x-authkit-grant": grant}, b"{}")


def serve_route(port: int, api_url: str, grant_secret: str) -> None:
    """Our token route alone: TokenRoute.handle in a Starlette app under uvicorn's defaults (as st.App runs it)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from pica_core.config import load_settings
    from pica_core.tokens import GrantSigner, TokenRoute
    from pica_core.web import ALL_METHODS, health

    settings = load_settings({"PICA_API_URL": api_url, "AUTHKIT_GRANT_SECRET": grant_secret, "PICA_SECRETS_FILE": os.devnull})
    route = TokenRoute(lambda request: settings, GrantSigner(settings.grant_secret, settings.grant_ttl_seconds))
    app = Starlette(routes=[Route(TOKEN_PATH, route.handle, methods=ALL_METHODS), Route("/api/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def ensure_node() -> str | None:
    """None when the Node backend can run, else why not."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found"
    if not (NODE_DIR / "node_modules" / "@picahq" / "authkit-token").is_dir():
        print(f"$ (cd {NODE_DIR.relative_to(ROOT)} && npm install --no-audit --no-fund)", flush=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True)
        if done.returncode:
            return f"npm install failed: {done.stderr.strip()[-500:]}"
    return None


def shape(body: dict) -> dict:
    return {"keys": sorted(k for k in body if k != "requestId"), "rows": len(body.get("rows", [])), "total": body.get("total"),
            "pages": body.get("pages"), "page": body.get("page"), "isWhiteLabel": body.get("isWhiteLabel"),
            "types": sorted(r.get("type", "") for r in body.get("rows", []))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per backend (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds per backend first (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent keep-alive clients (default 50)")
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per backend, taking turns; the best is shown (default 2)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="have the sandbox answer every Pica call this much later (Pica over a network)")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the streamlit run measurement")
    parser.add_argument("--no-node", action="store_true", help="skip the Node reference backend")
    parser.add_argument("--strict", action="store_true", help="exit 1 if our route is under the Node throughput")
    parser.add_argument("--sandbox-core", type=int, default=0)
    parser.add_argument("--server-core", type=int, default=1 if CORES > 1 else 0)
    parser.add_argument("--client-core", type=int, default=0,
                        help="core of the load generator (default 0, beside the sandbox: the servers' core stays theirs)")
    # internal: the route server subprocess
    parser.add_argument("--serve-route", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--grant-secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_route:
        serve_route(args.port, args.api_url, args.grant_secret)
        return 0

    from pica_core.config import Secret
    from pica_core.tokens import GrantSigner

    print(f"$ {shell([sys.executable, *sys.argv])}")
    print(f"machine: {CORES} cores; sandbox on core {args.sandbox_core}; every backend on core {args.server_core} (one at a "
          f"time under load); load generator ({args.clients} keep-alive clients, one process) on core {args.client_core}")
    grant_secret = secrets.token_hex(16)
    signer = GrantSigner(Secret(grant_secret), ttl_seconds=3600)
    grants = [(f"bench-user-{i:05d}", signer.issue(f"bench-user-{i:05d}", "user")) for i in range(IDENTITIES)]
    node_problem = None if not args.no_node else "skipped (--no-node)"
    node_problem = node_problem or ensure_node()
    servers: list[Server] = []
    work = Path(tempfile.mkdtemp(prefix="bench-token-"))
    failures: list[str] = []
    try:
        sandbox = start_sandbox(core=args.sandbox_core).wait()
        servers.append(sandbox)
        if args.latency_ms:
            httpx.post(f"{sandbox.url}/control/faults", headers={"x-pica-secret": "sk_test_sandbox"}, timeout=10, json={
                "kind": "latency", "seconds": args.latency_ms / 1000, "count": 10_000_000, "path": "/v1/"})
        print(f"sandbox:   {shell(sandbox.cmd)}")
        backends: list[tuple[str, Server]] = []
        if node_problem is None:
            port = free_port()
            node = Server("node", ["node", "server.js", "--port", str(port), "--pica-url", sandbox.url], port, core=args.server_core,
                          cwd=NODE_DIR, ready_path="/")
            servers.append(node)
            backends.append(("Node reference (authkit-token 1.0.4)", node))
        port = free_port()
        route = Server("route", [PYTHON, str(Path(__file__).resolve()), "--serve-route", "--port", str(port), "--api-url", sandbox.url,
                                 "--grant-secret", grant_secret], port, core=args.server_core, ready_path="/api/health")
        servers.append(route)
        backends.append(("TokenRoute (Starlette+uvicorn)", route))
        if not args.no_dashboard:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PICA_", "AUTHKIT_", "DATABASE_URL"))}
            env.update(PICA_API_URL=sandbox.url, AUTHKIT_GRANT_SECRET=grant_secret, PICA_SECRETS_FILE=str(work / "none.toml"),
                       DATABASE_URL=f"sqlite:///{work / 'dashboard.db'}")
            dashboard = Server("dashboard", [PYTHON, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                                             "--server.port", str(port), "--browser.gatherUsageStats", "false",
                                             "--server.fileWatcherType", "none"], port, core=args.server_core,
                               ready_path="/_stcore/health", env=env)
            dashboard._env_note = "PICA_API_URL=<sandbox> AUTHKIT_GRANT_SECRET=<bench key>"  # type: ignore[attr-defined]
            servers.append(dashboard)
            backends.append(("TokenRoute in the dashboard (streamlit run)", dashboard))
        for _name, server in backends:
            server.wait()
            note = getattr(server, "_env_note", "")
            print(f"{server.name + ':':10} {note + ' ' if note else ''}{shell(server.cmd)}")
        if node_problem:
            print(f"Node reference backend: {node_problem}")

        # --- same answer shape before timing -------------------------------------------------------
        identity, grant = grants[0]
        shapes = {}
        for name, server in backends:
            response = httpx.post(server.url + TOKEN_PATH, json={}, timeout=30,
                                  headers={"x-user-id": identity, "x-authkit-grant": grant})
            if response.status_code != 200:
                raise SystemExit(f"{name} answered {response.status_code}: {response.text[:300]}")
            shapes[name] = shape(response.json())
        reference = next(iter(shapes.values()))
        for name, got in shapes.items():
            if got != reference:
                failures.append(f"answer shape differs: {name} {got} vs {reference}")
        print(f"answers: same shape from {len(shapes)} backends: {reference['rows']} rows, total {reference['total']}, "
              f"pages {reference['pages']}, keys {', '.join(reference['keys'])}" if not failures else failures[-1])

        # --- timing --------------------------------------------------------------------------------
        make = functools.partial(token_request, grants)
        runs: dict[str, list[LoadResult]] = {name: [] for name, _ in backends}
        for _round in range(args.rounds):  # backends take turns, so a burst of outside load hits one run, not one backend
            for name, server in backends:
                if args.warmup and not runs[name]:
                    load(server.url, make, connections=args.clients, seconds=args.warmup, cores=[args.client_core])
                result = load(server.url, make, connections=args.clients, seconds=args.seconds, cores=[args.client_core],
                              watch={"server": server.pid, "sandbox": sandbox.pid})
                runs[name].append(result)
                if result.errors:
                    failures.append(f"{name}: {result.errors} errors (first: {result.first_error}; statuses {result.statuses})")
        results = [(name, max(rs, key=lambda r: r.rps)) for name, rs in runs.items()]
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    node_rps = results[0][1].rps if node_problem is None else None
    rows = []
    for name, r in results:
        ratio = f"{r.rps / node_rps:.2f}" if node_rps else "-"
        rows.append([name, f"{r.rps:,.0f}", f"{r.p50:.1f}", f"{r.p99:.1f}", r.errors, ratio, f"{r.server_cpu['server']:.0%}",
                     f"{r.server_cpu['server'] * 1000 / r.rps:.2f}" if r.rps else "-",
                     f"{r.server_cpu['sandbox']:.0%}", f"{r.client_cpu_seconds / r.seconds:.0%}", f"{r.background():.0%}"])
    print()
    print(f"POST {TOKEN_PATH}, {args.clients} concurrent clients, best of {args.rounds} runs of {args.seconds:g} s each "
          f"(after {args.warmup:g} s warm-up); "
          f"each token = GET /v1/users/flags + POST /v1/authkit page(s) on the sandbox")
    print(table(["backend", "req/s", "p50 ms", "p99 ms", "errors", "vs Node", "backend CPU", "CPU ms/req", "sandbox CPU", "client CPU",
                 "other CPU"], rows))
    if node_rps:
        node = results[0][1]
        node_ms = node.server_cpu["server"] / node.rps if node.rps else 0
        for name, r in results[1:]:
            ratio = r.rps / node_rps
            ms = r.server_cpu["server"] / r.rps if r.rps else 0
            print(f"{name}: {ratio:.2f}× the Node reference's throughput: {'meets' if ratio >= 1 else 'is UNDER'} the target "
                  f"(≥ 1.00×); per CPU spent on a token: {node_ms / ms if ms else 0:.2f}×")
    print("(CPU: share of one core over the measured window. A backend near 100 % is the bottleneck; CPU ms/req is the "
          "backend's CPU per token (1000 / it = tokens/s of a whole free core); a sandbox near 100 % "
          "would mean the sandbox capped the run; 'other CPU' is what other processes on the machine took meanwhile: "
          "well above 0 % means the figures are low, rerun on a quiet machine.)")
    for failure in failures:
        print(f"ERROR {failure}")
    under = bool(node_rps) and any(r.rps < node_rps for _, r in results[1:])
    return 1 if failures or (args.strict and under) else 0


if __name__ == "__main__":
    sys.exit(main())
