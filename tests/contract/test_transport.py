"""The lean HTTP/1.1 transport under the async client: against the sandbox, and against a scripted server for the
cases the sandbox never produces (chunked and gzip bodies, a connection closed while idle or mid-answer)."""

from __future__ import annotations

import asyncio
import gzip
import ssl

import httpx
import pytest

from pica_core.client import AsyncPicaClient, Operation, PicaClient
from pica_core.config import SANDBOX_TEST_KEY, Secret
from pica_core.errors import InvalidInputError, PicaTimeoutError, UpstreamUnavailableError
from pica_core.transport import LeanAsyncTransport, encode_request


def run(coro):
    return asyncio.run(coro)


# --- against the sandbox --------------------------------------------------------------------------------------------
def test_the_async_client_keeps_its_connections_alive(sandbox):
    async def go():
        transport = LeanAsyncTransport()
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), page_size=50,
                                   max_concurrency=3, transport=transport) as client:
            for _ in range(5):
                await client.user_flags()
            sequential = transport.connections_opened
            rows = await client.connections()
            return sequential, transport.connections_opened, rows

    sequential, total, rows = run(go())
    assert sequential == 1 and len(rows) == 720
    assert total <= 3  # 15 pages over at most 3 connections (the client's concurrency)



BROKEN_KEY = "sk_test_sandbox\r\nx-injected: yes"  # config refuses such a key; the client must not rely on it


def test_a_header_value_with_a_line_break_is_never_written(sandbox):
    """The lean transport wrote header values as they came: a line break in one injected a header of its own."""
    before = sandbox.count("users/flags")

    async def go():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(BROKEN_KEY)) as client:
            await client.user_flags()

    with pytest.raises(InvalidInputError) as raised:
        run(go())
    assert "x-pica-secret" in str(raised.value) and "x-injected" not in str(raised.value)
    assert sandbox.count("users/flags") == before


def test_httpx_own_refusal_of_a_header_never_quotes_the_secret(sandbox):
    """h11 quotes the header value it refuses: the secret's, which reached the browser through the token route."""
    with PicaClient(base_url=sandbox.url, secret=Secret(BROKEN_KEY)) as client, \
            pytest.raises(InvalidInputError) as raised:
        client.user_flags()
    assert "sk_test_sandbox" not in str(raised.value) and "****" in str(raised.value)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


def test_default_async_client_uses_it(sandbox, monkeypatch):
    for name in PROXY_VARIABLES:  # a developer's own proxy settings would (rightly) keep httpx's transport
        monkeypatch.delenv(name, raising=False)

    async def go():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as client:
            token = await client.authkit_token("u-1", "user")
            return token, client._http._transport

    token, transport = run(go())
    assert isinstance(transport, LeanAsyncTransport) and token["rows"]


@pytest.mark.parametrize("env, lean", [
    ({}, True),
    ({"HTTPS_PROXY": "http://proxy.corp:3128"}, False),  # httpx's own transport, through the proxy
    ({"ALL_PROXY": "http://proxy.corp:3128"}, False),
    ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "api.picaos.com"}, True),
    ({"HTTP_PROXY": "http://proxy.corp:3128"}, True),  # proxies plain http only
])
def test_a_proxied_pica_keeps_httpx_own_transport(monkeypatch, env, lean):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def go():
        async with AsyncPicaClient(base_url="https://api.picaos.com", secret=Secret("sk_live_x")) as client:
            return client._http._transport, client._http._mounts

    transport, mounts = run(go())
    assert isinstance(transport, LeanAsyncTransport) is lean
    assert bool(mounts) is not lean  # httpx mounted its proxy transport itself


def test_a_slow_answer_is_a_timeout_and_the_connection_is_not_reused(sandbox):
    sandbox.fault("latency", seconds=1.0, count=1, path="/v1/users/flags")

    async def go():
        transport = LeanAsyncTransport()
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), timeout=0.3,
                                   transport=transport) as client:
            client.retry_policy.max_retries = 0
            with pytest.raises(PicaTimeoutError):
                await client.user_flags()
            await asyncio.sleep(1.0)  # the late answer arrives on the closed connection, not on the next request's
            flags = await client.user_flags()
            return flags, transport.connections_opened

    flags, opened = run(go())
    assert flags.completed_quickstart is True and opened == 2


def test_an_unreachable_host_is_a_connect_error():
    async def go():
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            await http.get("http://127.0.0.1:9/")  # discard port: nothing listens

    with pytest.raises(httpx.ConnectError):
        run(go())


def test_head_is_refused_clearly():
    async def go():
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            await http.head("http://127.0.0.1:9/")

    with pytest.raises(httpx.UnsupportedProtocol):
        run(go())


def test_encode_request_sends_whole_bodies_with_a_length():
    request = httpx.Request("POST", "http://pica.test/v1/authkit?limit=100", json={"identity": "é"},
                            headers={"Transfer-Encoding": "chunked"})
    data = encode_request(request, request.read())
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/authkit?limit=100 HTTP/1.1\r\nHost: pica.test\r\n")
    assert b"transfer-encoding" not in head.lower() and f"Content-Length: {len(body)}".encode() in head
    assert body == '{"identity":"é"}'.encode()
    empty = httpx.Request("POST", "http://pica.test/x")
    assert b"Content-Length: 0\r\n" in encode_request(empty, b"")


# --- against a scripted server ----------------------------------------------------------------------------------------
class Scripted:
    """A raw HTTP/1.1 server: each connection gets the next script, a list of steps: an answer to the next request
    (bytes), ("push", bytes) written unasked, "close", or "hold" (open until the client closes)."""

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        for step in script:
            if step == "close":
                break
            if step == "hold":  # keep the connection open until the client goes
                await reader.read()
                break
            if isinstance(step, tuple):  # ("push", bytes): written without a request
                writer.write(step[1])
                continue
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            self.requests.append(head + await reader.readexactly(length))
            writer.write(step)
            await writer.drain()
        writer.close()


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK = answer(b'{"ok":true}', "Content-Type: application/json")


def test_chunked_and_gzip_bodies_are_read_whole():
    chunked = answer(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n", "Transfer-Encoding: chunked")
    zipped = answer(gzip.compress(b'{"b":2}'), "Content-Encoding: gzip")

    async def go():
        async with Scripted([chunked, zipped]) as url, httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            return (await http.get(url + "/a")).json(), (await http.get(url + "/b")).json()

    assert run(go()) == ({"a": 1}, {"b": 2})


def test_interim_answers_are_skipped():
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n" + OK

    async def go():
        async with Scripted([early]) as url, httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            response = await http.get(url + "/a")
            return response.status_code, response.json()

    assert run(go()) == (200, {"ok": True})


def test_an_answer_nobody_asked_for_retires_the_connection():
    stray = ("push", answer(b"", status="408 Request Timeout"))  # sent to the idle connection, which stays open
    scripted = Scripted([OK, stray, "hold"], [OK])

    async def go():
        async with scripted as url, httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            await http.get(url + "/a")
            await asyncio.sleep(0.1)
            return (await http.post(url + "/b", json={})).json()  # a POST is never sent twice: it must not meet the 408

    assert run(go()) == {"ok": True} and scripted.connections == 2


def test_a_body_delimited_by_the_connection_end():
    async def go():
        async with Scripted([b'HTTP/1.1 200 OK\r\n\r\n{"c":3}', "close"]) as url, \
                httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            return (await http.get(url + "/c")).json()

    assert run(go()) == {"c": 3}


def test_a_connection_closed_while_idle_is_replaced_for_a_get():
    scripted = Scripted([OK, "close"], [OK])

    async def go():
        async with scripted as url, httpx.AsyncClient(transport=LeanAsyncTransport()) as http:
            first = await http.get(url + "/x")
            second = await http.get(url + "/x")  # the kept connection is dead: a fresh one answers
            return first.json(), second.json()

    assert run(go()) == ({"ok": True}, {"ok": True})
    assert scripted.connections == 2


def test_connection_close_is_honoured():
    scripted = Scripted([answer(b"{}", "Connection: close")])

    async def go():
        transport = LeanAsyncTransport()
        async with scripted as url, httpx.AsyncClient(transport=transport) as http:
            for _ in range(3):
                await http.get(url + "/x")
            return transport.connections_opened

    assert run(go()) == 3 == scripted.connections


def test_an_answer_cut_short_is_an_error_the_client_reports():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + b'{"rows": [1, 2'
    scripted = Scripted([cut, "close"])

    async def go():
        async with scripted as url, AsyncPicaClient(base_url=url, secret=Secret("sk_test_x")) as client:
            client.retry_policy.max_retries = 1
            client.retry_policy.base_delay = 0.01
            await client._run(Operation("GET", "/v1/users/flags"))

    with pytest.raises(UpstreamUnavailableError) as caught:
        run(go())
    assert scripted.connections == 2  # retried once, as reads are
    assert "sk_test_x" not in str(caught.value)


def test_tls(tmp_path):
    from datetime import datetime, timedelta, UTC

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    async def go():
        scripted = Scripted([OK, OK])
        server = await asyncio.start_server(scripted._serve, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(transport=LeanAsyncTransport(ssl_context=trusting)) as http:
                answers = [(await http.get(f"https://localhost:{port}/x")).json() for _ in range(2)]
            async with httpx.AsyncClient(transport=LeanAsyncTransport()) as http:  # system trust: refused
                with pytest.raises(httpx.ConnectError):
                    await http.get(f"https://localhost:{port}/x")
            return answers, scripted.connections
        finally:
            server.close()

    answers, connections = run(go())
    assert answers == [{"ok": True}] * 2 and connections == 1  # kept alive (the refused one never got in)
