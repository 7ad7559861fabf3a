"""How long the server takes to run the Fleet and Overview pages over a 50,000-connection store.

    .venv/bin/python bench/fleet_pages.py [--connections 50000] [--runs 5]

Syncs a sandbox fleet into a new SQLite file, then runs each page's script through Streamlit's AppTest (the
entry script, navigation and page, as a browser opening its URL would run them) and prints the best and median
wall time per page: what a support person waits for before the browser draws anything. The Fleet page is also
timed with its CSV built, as a click on its download button builds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, TEST_KEY, shell, start_sandbox, table  # noqa: E402
from pica_core.client import AsyncPicaClient  # noqa: E402
from pica_core.config import Secret  # noqa: E402
from pica_core.connections_view import fleet_csv  # noqa: E402
from pica_core.store import Store  # noqa: E402
from pica_core.sync import sync_fleet  # noqa: E402


def timed(run, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def open_page(page: str):
    import logging

    from streamlit.testing.v1 import AppTest

    # AppTest warns of its own bare mode on every start: not a result.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    if at.exception:
        raise SystemExit(f"{page}: {at.exception[0].value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"command: {shell([sys.executable, *sys.argv])}")
    with start_sandbox("--connections", str(args.connections), "--live-connections", "0", core=None) as sandbox, \
            tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{Path(tmp) / 'fleet.db'}"
        for name in [n for n in os.environ if n.startswith(("PICA_", "AUTHKIT_", "DATABASE_URL", "ROLE"))]:
            del os.environ[name]
        os.environ.update(PICA_API_URL=sandbox.url, DATABASE_URL=database, PICA_SECRETS_FILE=str(Path(tmp) / "none"))
        store = Store.from_url(database)

        async def sync() -> None:
            async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(TEST_KEY)) as client:
                await sync_fleet(client, store, environment="test")

        asyncio.run(sync())
        open_page("overview")  # warm: imports, the catalog's cache
        rows = []
        for label, run in [("Overview page", lambda: open_page("overview")), ("Fleet page", lambda: open_page("fleet")),
                           ("Fleet CSV (on click)", lambda: fleet_csv(store.fleet_export("test")))]:
            times = timed(run, args.runs)
            rows.append([label, f"{min(times):.2f}", f"{statistics.median(times):.2f}"])
        print(f"{store.fleet_size('test'):,} stored connections, {args.runs} runs each (AppTest: the server's work "
              "for one page view, no browser)")
        print(table(["what", "best s", "median s"], rows))


if __name__ == "__main__":
    main()
