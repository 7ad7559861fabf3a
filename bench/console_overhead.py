"""The passthrough console's own overhead on a sandbox GET, against a bare httpx call to the same URL.

    .venv/bin/python bench/console_overhead.py [--n 300] [--warmup 30]

Starts its own sandbox (`python -m pica_core.sandbox --throughput 0`, pinned to core 0; this process to core 1 when
the machine has two), picks an operational Gmail connection and times, N times each, interleaved:

- console: everything the page does for Send except drawing — `console.prepare(draft)`, `console.run_call` (the
  Pica client's passthrough, the redacted history record written to a SQLite file, no audit for a GET) and
  `console.response_view` (pretty JSON, records table);
- bare: `httpx.Client.get` of the same URL, query and headers (keep-alive, like the Pica client).

Overhead = console − bare for each pair of consecutive calls; the target is a median under 10 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import TEST_KEY, percentile, shell, start_sandbox, table  # noqa: E402
from pica_core import console  # noqa: E402
from pica_core.client import USER_AGENT, PicaClient  # noqa: E402
from pica_core.config import ACTION_HEADER, CONNECTION_HEADER, SECRET_HEADER  # noqa: E402
from pica_core.config import Secret  # noqa: E402
from pica_core.store import PassthroughCallRecord, Store  # noqa: E402

LIST_MESSAGES = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"  # GET /gmail/v1/users/{{userId}}/messages
TARGET_MS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="calls of each kind (at least 200)")
    parser.add_argument("--warmup", type=int, default=30)
    args, _ = parser.parse_known_args()  # run_all.py may pass options meant for other benchmarks
    n = max(200, args.n)
    print("command:", shell([sys.executable, "bench/console_overhead.py", "--n", str(n), "--warmup", str(args.warmup)]))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the sandbox runs on core 0

    with start_sandbox() as sandbox, tempfile.TemporaryDirectory() as tmp, \
            PicaClient(base_url=sandbox.url, secret=Secret(TEST_KEY)) as client, \
            httpx.Client(base_url=sandbox.url, timeout=15) as bare:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'history.db'}")
        connection = next(c for c in client.connections(platform="gmail") if c.state == "operational")
        draft = console.RequestDraft(connection_key=connection.key, action_id=LIST_MESSAGES, method="GET",
                                     path_template="/gmail/v1/users/{{userId}}/messages", path_values={"userId": "me"},
                                     query=[("maxResults", "5")])
        probe = console.prepare(draft)
        url = probe.url("")
        headers = {SECRET_HEADER: TEST_KEY, "user-agent": USER_AGENT, CONNECTION_HEADER: connection.key,
                   ACTION_HEADER: LIST_MESSAGES}
        phases: dict[str, list[float]] = {"prepare": [], "send (client)": [], "history write": [], "response view": []}

        def console_call() -> tuple[float, int]:
            started = time.perf_counter()
            prepared = console.prepare(draft)
            prepared_at = time.perf_counter()
            outcome = console.send(client, prepared)
            sent_at = time.perf_counter()
            outcome.record = store.record_call(console.make_record(
                prepared, response=outcome.response, error=outcome.error, actor="bench", platform="gmail",
                action_title="List messages", secret=TEST_KEY, body_limit=16_384))
            stored_at = time.perf_counter()
            view = console.response_view(outcome.response, display_limit=200_000, secret=TEST_KEY)
            done = time.perf_counter()
            for name, (a, b) in zip(phases, ((started, prepared_at), (prepared_at, sent_at), (sent_at, stored_at),
                                              (stored_at, done))):
                phases[name].append((b - a) * 1000)
            return (done - started) * 1000, view.size

        def bare_call() -> tuple[float, int]:
            started = time.perf_counter()
            response = bare.get(url, headers=headers)
            return (time.perf_counter() - started) * 1000, len(response.content)

        for _ in range(args.warmup):
            console_call(), bare_call()
        for values in phases.values():
            values.clear()
        console_ms, bare_ms, overhead = [], [], []
        for i in range(n):
            # Alternate which goes first, so that neither always follows the other's cache warm-up.
            if i % 2:
                (c, c_size), (b, b_size) = console_call(), bare_call()
            else:
                (b, b_size), (c, c_size) = bare_call(), console_call()
            assert c_size == b_size, "the console and the bare call must get the same body"
            console_ms.append(c)
            bare_ms.append(b)
            overhead.append(c - b)
        assert store.count(PassthroughCallRecord) == n + args.warmup

    def row(name: str, values: list[float]) -> list[str]:
        return [name, f"{statistics.median(values):.2f}", f"{percentile(values, 90):.2f}",
                f"{percentile(values, 99):.2f}"]

    print(f"\nsandbox GET /v1/passthrough/{probe.path}?maxResults=5 ({n} calls each, interleaved; ms)\n")
    print(table(["", "median", "p90", "p99"], [
        row("bare httpx", bare_ms), row("console send path", console_ms), row("console overhead", overhead),
        *(row(f"  {name}", values) for name, values in phases.items()),
    ]))
    median = statistics.median(overhead)
    verdict = "meets" if median < TARGET_MS else "MISSES"
    print(f"\nconsole overhead: median {median:.2f} ms, p90 {percentile(overhead, 90):.2f} ms — {verdict} the "
          f"{TARGET_MS:.0f} ms target (body {c_size} bytes).")
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
