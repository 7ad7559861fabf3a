"""A lean HTTP/1.1 transport for httpx's AsyncClient: keep-alive connections on asyncio, parsed by httptools.

Why: the token route and the fleet sync make many small calls to one origin (Pica), and httpx's default
transport (httpcore over anyio and h11, all pure Python) spent about half of the route's CPU per token
(profiled with py-spy under bench/token_route.py). This transport does the same job for what the client
needs: one origin at a time, HTTP/1.1, bodies read whole, keep-alive, TLS through asyncio (httpx's own SSL
context). Everything above it is still httpx (URLs, headers, decoding, timeouts' meaning, the errors the client's
retries handle). httpx ignores proxy variables once given a transport, so `lean_transport_for` leaves a URL that
the environment sends through a proxy (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) to httpx's own transport.

A GET, PUT, DELETE or OPTIONS that fails on a kept-alive connection before any byte of the answer arrived is
sent once more on a fresh connection: the server closed it while idle (the usual keep-alive race). Other methods
raise RemoteProtocolError and the client's retry policy decides. HEAD is refused (its answers have no body to
delimit and the client never sends one).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.request
from collections import deque
from urllib.parse import urlsplit

import httpx
import httptools

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_IDEMPOTENT = ("GET", "OPTIONS", "PUT", "DELETE")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.started = False  # a byte of the current answer arrived
        self.headers_done = False
        self.keep_alive = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.headers_done and not any(name.lower() in (b"content-length", b"transfer-encoding")
                                             for name, _ in self.headers):
                self.waiter.set_result(self.parser.get_status_code())  # a body delimited by the connection's end
            else:
                self._fail(httpx.RemoteProtocolError("the server closed the connection without a complete answer"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim answer (103 Early Hints…): the real one follows
            self.headers, self.body, self.headers_done = [], [], False
            return
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful here: the parser resets after
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)
        else:  # an answer nobody asked for (a 408 sent to an idle connection): the connection is unusable
            self._fail(httpx.RemoteProtocolError("unexpected answer"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    async def exchange(self, data: bytes, timeout: float | None) -> tuple[int, list, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.headers, self.body = [], []
        self.started = self.headers_done = self.keep_alive = False
        self.transport.write(data)
        try:
            async with asyncio.timeout(timeout):
                status = await self.waiter
        except TimeoutError:
            self.transport.close()  # the late answer must not be read as the next request's
            self.closed = True
            raise httpx.ReadTimeout(f"no answer within {timeout:g} s") from None
        finally:
            self.waiter = None
        if not self.keep_alive:
            self.transport.close()
            self.closed = True
        return status, self.headers, b"".join(self.body)


_BREAKS_THE_HEAD = re.compile(rb"[\r\n\0]")  # would end a header early: what follows it would be a header of its own


def encode_request(request: httpx.Request, body: bytes) -> bytes:
    """The request as HTTP/1.1 bytes. The body is whole, so it goes with a Content-Length, never chunked."""
    url = request.url
    head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if _BREAKS_THE_HEAD.search(name + value):  # as h11 refuses it; naming the header, never quoting its value
            raise httpx.LocalProtocolError(f"Illegal header value: {name.decode('ascii', 'replace')} holds a line "
                                           "break or a NUL")
        if name.lower() not in (b"content-length", b"transfer-encoding"):
            head += [name, b": ", value, b"\r\n"]
    if body or request.method in ("POST", "PUT", "PATCH"):
        head += [b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n"]
    return b"".join(head) + b"\r\n" + body


class LeanAsyncTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 for httpx.AsyncClient (see the module's docstring). Belongs to one event loop."""

    def __init__(self, *, max_idle_per_origin: int = 64, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[bytes, bytes, int], deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._ssl = ssl_context
        self._closed = False
        self.connections_opened = 0  # for tests and benchmarks: keep-alive means this stays small

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def _connect(self, scheme: bytes, host: bytes, port: int, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        name = host.decode("ascii")
        tls = self._ssl_context() if scheme == b"https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(_Connection, name, port, ssl=tls,
                                                       server_hostname=name if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"could not connect to {name}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"could not connect to {name}:{port}: {exc.strerror or exc}") from None
        self.connections_opened += 1
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        if request.method == "HEAD":
            raise httpx.UnsupportedProtocol("HEAD is not supported by LeanAsyncTransport")
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or _DEFAULT_PORTS.get(url.raw_scheme, 80))
        timeouts = request.extensions.get("timeout", {})
        data = encode_request(request, await request.aread())
        idle = self._idle.setdefault(origin, deque())
        while True:
            reused = bool(idle)
            conn = idle.pop() if reused else await self._connect(*origin, timeouts.get("connect"))
            if conn.closed:
                continue
            try:
                status, headers, content = await conn.exchange(data, timeouts.get("read"))
            except httpx.RemoteProtocolError:
                # Closed by the server while idle, before any byte of an answer: the request was not handled.
                # Sent again only where a repeat is harmless; the client's own retry policy decides for the rest.
                if reused and not conn.started and request.method in _IDEMPOTENT:
                    continue
                raise
            except BaseException:  # timeouts, cancellation: the answer may still come, so the connection is spent
                conn.transport.close()
                raise
            if conn.closed:
                pass
            elif len(idle) < self._max_idle:
                idle.append(conn)
            else:
                conn.transport.close()
            return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content),
                                  extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().transport.close()
        self._idle.clear()


def lean_transport_for(base_url: str) -> LeanAsyncTransport | None:
    """The lean transport, or None (httpx's default, which honours proxies) when the environment proxies this URL."""
    url = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if (proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return LeanAsyncTransport()
