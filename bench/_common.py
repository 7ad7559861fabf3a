"""Shared helpers for the benchmarks in bench/ (not a benchmark itself: run_all.py skips `_*.py`).

  ROOT, PYTHON, TEST_KEY          the repository, the venv's python, the sandbox's test key
  free_port()                     a free loopback port
  Server / start_sandbox(...)     a subprocess (optionally pinned with taskset) that is waited for and stopped
  cpu_seconds(pid)                user+system CPU of a process (Linux /proc), to show who was busy
  load(...)                       closed-loop HTTP/1.1 load: N keep-alive connections split over worker
                                  processes pinned to chosen cores; returns a LoadResult (req/s, p50/p99, errors)
  core_busy()                     busy CPU seconds per core (LoadResult.background(): what other processes took)
  percentile(values, q), table(headers, rows), shell(cmd)

The load generator is a minimal asyncio HTTP/1.1 client (keep-alive, Content-Length or chunked bodies): a
few times cheaper per request than httpx, so one client core can saturate one server core. Every response's
status is checked; a non-2xx status, a dropped connection or a timeout counts as an error.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
TEST_KEY = "sk_test_sandbox"
CORES = os.cpu_count() or 1

# A request: (method, path with query, extra headers, body).
Req = tuple[str, str, dict[str, str], bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shell(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


def pinned(cmd: Sequence[str], core: int | None) -> list[str]:
    """`taskset -c core cmd…` when taskset exists and the machine has that core; else cmd unchanged."""
    if core is None or not shutil.which("taskset") or core >= CORES:
        return list(cmd)
    return ["taskset", "-c", str(core), *cmd]


class Server:
    """A server subprocess: started now, waited for (GET `ready_path` answers < 500), terminated on exit.

    Its output goes to $TMPDIR/bench-<name>-<port>.log, quoted when it fails to start and kept if it died.

    `env` is the whole environment of the process (default: this one's); `core` pins it with taskset.
    """

    def __init__(self, name: str, cmd: Sequence[str], port: int, *, ready_path: str = "/", core: int | None = None,
                 env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.cmd = pinned(cmd, core)
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{name}-{port}.log"
        self._ready_path, self._timeout = ready_path, timeout
        self._proc = subprocess.Popen(self.cmd, cwd=cwd, env=os.environ.copy() if env is None else env,
                                      stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self) -> Server:
        deadline = time.monotonic() + self._timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self._proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self._ready_path, timeout=2).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start in {self._timeout:.0f} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate (kill after 10 s); the log is removed when the server was still running (nothing to read)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sandbox_cmd(port: int, *extra: str) -> list[str]:
    return [PYTHON, "-m", "pica_core.sandbox", "--port", str(port), "--throughput", "0", *extra]


def start_sandbox(*extra: str, core: int | None = 0, port: int | None = None) -> Server:
    """`python -m pica_core.sandbox --port P --throughput 0 [extra…]`, pinned to `core`; use as a context manager."""
    port = port or free_port()
    return Server("sandbox", sandbox_cmd(port, *extra), port, core=core, timeout=300)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def core_busy() -> dict[int, float]:
    """Busy CPU seconds per core since boot (Linux /proc/stat; empty elsewhere)."""
    busy: dict[int, float] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return busy
    tick = os.sysconf("SC_CLK_TCK")
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in values]
            busy[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / tick  # all but idle and iowait
    return busy


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


# --- load generation -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0
    first_error: str = ""
    server_cpu: dict[str, float] = field(default_factory=dict)  # name → busy fraction of one core in the window
    core_load: dict[int, float] = field(default_factory=dict)  # core → busy fraction (every process) in the window

    def background(self) -> float:
        """CPU (in cores) used in the window by processes other than the watched ones and the load generator."""
        return max(0.0, sum(self.core_load.values()) - sum(self.server_cpu.values()) - self.client_cpu_seconds / self.seconds)

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            result = _parse(self.buf)
            if result is not None:
                self.waiter.set_result(result)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))


def _parse(buf: bytearray) -> tuple[int, bool] | None:
    """(status, keep-alive) once one whole response is in buf (consumed), else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    keep = b"connection: close" not in head
    start = end + 4
    if b"transfer-encoding: chunked" in head:
        pos = start
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                tail = buf.find(b"\r\n\r\n", eol)
                if tail < 0:
                    return None
                del buf[:tail + 4]
                return status, keep
            pos = eol + 2 + size + 2
            if pos > len(buf):
                return None
    marker = head.find(b"content-length:")
    length = int(head[marker + 15:head.find(b"\r\n", marker) if head.find(b"\r\n", marker) > 0 else None]) if marker >= 0 else 0
    if len(buf) < start + length:
        return None
    del buf[:start + length]
    return status, keep


async def _worker_main(host: str, port: int, conns: int, make: Callable[[int], Req], offset: int, stride: int,
                       start_at: float, seconds: float, timeout: float) -> LoadResult:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    result = LoadResult(seconds)
    stop_at = start_at + seconds

    async def connect() -> _Conn:
        _, proto = await loop.create_connection(_Conn, host, port)
        proto.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return proto

    def encode(req: Req) -> bytes:
        method, path, headers, body = req
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def client(slot: int) -> None:
        conn = await connect()
        n = offset + slot * stride
        step = stride * conns
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while True:
            now = time.time()
            if now >= stop_at:
                break
            data = encode(make(n))
            n += step
            if conn.closed:
                conn = await connect()
            conn.waiter = loop.create_future()
            started = time.perf_counter()
            try:
                conn.transport.write(data)
                status, keep = await asyncio.wait_for(conn.waiter, timeout)
            except (OSError, TimeoutError) as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                conn.transport.close()
                conn = await connect()
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if time.time() <= stop_at:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    latencies.append(elapsed)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or f"HTTP {status}"
            if not keep:
                conn.transport.close()
                conn = await connect()
        conn.transport.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(client(i) for i in range(conns)))
    result.client_cpu_seconds = time.process_time() - cpu0
    result.latencies_ms = latencies
    return result


def _worker(args: tuple, out) -> None:
    core = args[-1]
    if core is not None and hasattr(os, "sched_setaffinity") and core < CORES:
        os.sched_setaffinity(0, {core})
    try:
        out.send(asyncio.run(_worker_main(*args[:-1])))
    except Exception as exc:  # report, don't hang the parent
        out.send(exc)
    out.close()


def load(url: str, make: Callable[[int], Req], *, connections: int, seconds: float, processes: int = 1,
         cores: Sequence[int | None] = (None,), timeout: float = 30.0, watch: dict[str, int] | None = None) -> LoadResult:
    """Closed loop: `connections` keep-alive clients, each sending make(n) then waiting for the answer.

    `make` must be a module-level function (it is sent to worker processes). The connections are spread over
    `processes` worker processes, worker i pinned to cores[i % len(cores)]. All start together after they
    have connected; only answers completed within `seconds` count. `watch` ({name: pid}) samples those
    processes' CPU over the same window (result.server_cpu: 1.0 = one core busy all the time).
    """
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    ctx = mp.get_context("fork")
    start_at = time.time() + 1.0 + 0.2 * processes
    pipes, procs = [], []
    base, extra = divmod(connections, processes)
    for i in range(processes):
        conns = base + (1 if i < extra else 0)
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=((host, int(port), conns, make, i, processes, start_at, seconds, timeout,
                                                  cores[i % len(cores)]), sender), daemon=True)
        proc.start()
        sender.close()
        pipes.append(receiver)
        procs.append(proc)
    watch = watch or {}
    time.sleep(max(0.0, start_at - time.time()))
    before, cores_before = {name: cpu_seconds(pid) for name, pid in watch.items()}, core_busy()
    time.sleep(max(0.0, start_at + seconds - time.time()))
    cores_after = core_busy()
    total = LoadResult(seconds, server_cpu={name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in watch.items()},
                       core_load={c: (cores_after[c] - cores_before.get(c, 0)) / seconds for c in cores_after})
    for receiver, proc in zip(pipes, procs):
        part = receiver.recv()
        proc.join()
        if isinstance(part, Exception):
            raise part
        total.latencies_ms += part.latencies_ms
        total.errors += part.errors
        total.client_cpu_seconds += part.client_cpu_seconds
        total.first_error = total.first_error or part.first_error
        for status, n in part.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + n
    return total
