"""python -m pica_core.sandbox --port 8600 [--connections 50000] [--throughput 0]"""

from __future__ import annotations

import argparse
import logging
import socket

import uvicorn

from . import SandboxConfig, create_app


def _port_free(parser: argparse.ArgumentParser, host: str, port: int) -> None:
    """Stop with one line when the port is taken: the banner said "point the dashboard at it" of another server's
    port, and uvicorn's error came after it."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        parser.exit(3, f"Cannot listen on {host}:{port} ({exc.strerror or exc}): another server has it; choose "
                       "another port with --port.\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pica_core.sandbox", description="A local Pica: API, AuthKit page, faults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--connections", type=int, default=720, help="test-environment connections to seed")
    parser.add_argument("--live-connections", type=int, default=120, help="live-environment connections to seed")
    parser.add_argument("--throughput", type=int, default=500, help="requests per account (test and live keys) per 60 s, 0: none")
    parser.add_argument("--seed", type=int, default=20250719)
    parser.add_argument("--test-key", default="sk_test_sandbox")
    parser.add_argument("--live-key", default="sk_live_sandbox")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    for name, key in (("--test-key", args.test_key), ("--live-key", args.live_key)):
        if not key.startswith("sk_test_" if name == "--test-key" else "sk_live_"):
            parser.error(f"{name} must start with {'sk_test_' if name == '--test-key' else 'sk_live_'}")

    config = SandboxConfig(test_key=args.test_key, live_key=args.live_key, throughput=args.throughput,
                           connections=args.connections, live_connections=args.live_connections, seed=args.seed)
    _port_free(parser, args.host, args.port)
    app = create_app(config)
    url = f"http://{args.host}:{args.port}"
    print(f"Pica sandbox on {url}  (API {url}/v1, AuthKit page {url}/authkit, controls {url}/control)", flush=True)
    print(f"  test key: {config.test_key}   live key: {config.live_key}", flush=True)
    print(f"  {len(app.state.sandbox.connections)} connections seeded; throughput {config.throughput or 'unlimited'} / 60 s",
          flush=True)
    print(f"  point the dashboard at it: PICA_API_URL={url}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=args.access_log)
    logging.shutdown()


if __name__ == "__main__":
    main()
