"""Every client method against the sandbox over real HTTP: pagination counts, retries, errors, secrecy."""

from __future__ import annotations

import asyncio
import logging
import math

import httpx
import pytest

from pica_core.client import SANDBOX_REFUSED_HINT, AsyncPicaClient, PicaClient, RetryPolicy
from pica_core.config import SANDBOX_TEST_KEY, Secret
from pica_core.errors import (
    AuthError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PicaError,
    PicaTimeoutError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from pica_core.models import Connection
from tests.conftest import free_port

GMAIL_LIST = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"
GMAIL_SEND = "conn_mod_def::GJ3odhCpd3I::gujvYoneSk6NFWltse9bGg"


def make(sandbox, secret=SANDBOX_TEST_KEY, **kwargs) -> PicaClient:
    kwargs.setdefault("retry", RetryPolicy(max_retries=3, deadline_seconds=10, base_delay=0.01, max_delay=0.05))
    return PicaClient(base_url=sandbox.url, secret=Secret(secret), **kwargs)


@pytest.fixture
def client(sandbox):
    with make(sandbox, page_size=100) as c:
        yield c


def gmail(client) -> Connection:
    return next(c for c in client.connections(platform="gmail") if c.state == "operational")


# --- pagination (counts, not times) ---------------------------------------------------------------------------
def test_listing_950_connections_at_100_per_page_makes_exactly_10_requests(sandbox):
    sandbox.control("POST", "reset")
    app_state = sandbox.state
    app_state.config.connections = 950  # reseed with 950 test connections
    try:
        sandbox.control("POST", "reset")
        sandbox.control("DELETE", "stats")
        with make(sandbox, page_size=100) as c:
            rows = c.connections()
        assert len(rows) == 950 and len({r.id for r in rows}) == 950
        assert sandbox.count("vault/connections") == 10 == c.request_count
    finally:
        app_state.config.connections = 720
        sandbox.control("POST", "reset")


@pytest.mark.parametrize("page_size", [7, 100, 300])
def test_connectors_pagination_is_hidden(sandbox, page_size):
    sandbox.control("DELETE", "stats")
    with make(sandbox, page_size=page_size) as c:
        connectors = c.connectors()
    assert len(connectors) == 294 and connectors[0].platform == "1-password"
    assert sandbox.count("available-connectors") == math.ceil(294 / page_size)


def test_async_pagination_is_concurrent_and_complete(sandbox):
    async def run():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), page_size=50,
                                   max_concurrency=3) as c:
            return await c.connections(), c.request_count

    sandbox.control("DELETE", "stats")
    rows, count = asyncio.run(run())
    assert len(rows) == 720 and len({r.key for r in rows}) == 720
    assert count == math.ceil(720 / 50) == sandbox.count("vault/connections")


# --- every endpoint ---------------------------------------------------------------------------------------------
def test_catalog_methods(client):
    assert {c.platform for c in client.connectors(authkit=True)} >= {"gmail", "slack"}
    assert [c.name for c in client.connectors(platform="gmail")] == ["Gmail"]
    assert client.connectors(category="CRM")
    assert client.connectors(name="Slack")[0].platform == "slack"
    assert client.connectors(key="api::notion::v1")[0].platform == "notion"


def test_actions_search_and_knowledge(client):
    actions = client.actions("gmail")
    assert len(actions) >= 3 and all(a.platform == "gmail" for a in actions)
    assert client.actions("gmail", method="POST") and all(a.method == "POST" for a in client.actions("gmail", method="POST"))
    hits = client.search_actions("gmail", "send message")
    assert hits[0].system_id == GMAIL_SEND and hits[0].knowledge
    knowledge = client.knowledge(GMAIL_SEND)
    assert knowledge.id == GMAIL_SEND and knowledge.connection_platform == "gmail"
    assert client.knowledge("conn_mod_def::nope::nope") is None


def test_connection_filters_get_patch_delete(client):
    conn = gmail(client)
    assert client.connection(conn.id).key == conn.key
    assert client.connection_by_key(conn.key).id == conn.id
    mine = client.connections(identity=conn.identity, identity_type=conn.identity_type)
    assert conn.id in {c.id for c in mine} and all(c.identity == conn.identity for c in mine)
    assert [c.id for c in client.connections(keys=[conn.key])] == [conn.id]
    assert client.update_connection_tags(conn.id, ["vip", "beta"]).tags == ["vip", "beta"]
    assert conn.id in {c.id for c in client.connections(tags=["vip", "beta"])}
    client.delete_connection(conn.id)
    with pytest.raises(NotFoundError):
        client.connection(conn.id)
    assert client.connection_by_key(conn.key) is None


def test_a_redirect_is_no_answer_so_a_delete_it_met_is_not_done(sandbox, client):
    """Any 3xx counted as success: a DELETE met with a redirect (an http:// address that points to https://) was
    reported deleted, and the page removed a connection Pica still had."""
    conn = gmail(client)
    sandbox.fault("status", status=308, count=1, path=f"/v1/vault/connections/{conn.id}", method="DELETE")
    with pytest.raises(PicaError) as raised:
        client.delete_connection(conn.id)
    assert raised.value.status == 308 and "PICA_API_URL" in raised.value.hint and not raised.value.maybe_delivered
    assert client.connection(conn.id).id == conn.id  # still there


@pytest.mark.parametrize("call", ["delete_connection", "connection", "update_connection_tags"])
@pytest.mark.parametrize("value", [" ", ".", ".."])
def test_an_empty_id_is_refused_before_any_request(client, call, value):
    """DELETE /v1/vault/connections/ is another route: an empty id was sent, and its redirect read as done (and
    ".." reaches DELETE /v1/vault)."""
    before = client.request_count
    with pytest.raises(InvalidInputError):
        getattr(client, call)(value, *(([],) if call == "update_connection_tags" else ()))
    assert client.request_count == before


@pytest.mark.parametrize("identity", ['=HYPERLINK("http://x","y")', "a,b"])
def test_a_key_holding_a_comma_is_found_though_pica_splits_the_key_filter_on_commas(sandbox, client, identity):
    made = sandbox.state.add_connection(platform="gmail", environment="test", identity=identity, identity_type="user")
    assert "," in made["key"]
    assert client.connection_by_key(made["key"]).id == made["id"]
    assert client.connection_by_key(made["key"], identity=identity).id == made["id"]
    assert [c.id for c in client.connections(keys=[made["key"]])] == [made["id"]]
    assert client.connection_by_key(made["key"].replace("|", "|z")) is None


@pytest.mark.parametrize("identity", ["Acme Corp ", " ana"])
def test_fleet_s_link_opens_a_connection_whose_identity_a_lookup_cannot_ask_for_as_it_is(sandbox, client, identity):
    """Pica matches identities exactly; a lookup strips "Acme Corp ", so the link from Fleet said
    "No connections". It asks by key instead, which finds it."""
    from urllib.parse import parse_qs, urlsplit

    from pica_core.connections_view import Lookup

    made = sandbox.state.add_connection(platform="gmail", environment="test", identity=identity,
                                        identity_type="organization")
    link = Lookup.opening(made["key"], identity=identity, identity_type="organization", connection_id=made["id"]).link()
    lookup = Lookup.from_query(parse_qs(urlsplit(link).query))
    assert lookup.key == made["key"] and lookup.selected == made["id"]
    assert [c.id for c in client.connections(**lookup.filters())] == [made["id"]]
    assert Lookup.opening(made["key"], identity="ana", identity_type="user").identity == "ana"  # as before


def test_user_flags_and_authkit_token_merge_pages(sandbox, client):
    assert client.user_flags().completed_quickstart is True
    sandbox.control("DELETE", "stats")
    token = client.authkit_token("user-7", "user")
    enabled = len(client.connectors(authkit=True))
    assert len(token["rows"]) == enabled == token["total"] and token["page"] == 1 and token["pages"] == 1
    assert token["isWhiteLabel"] is False and isinstance(token["requestId"], int)
    assert sandbox.count("authkit") == math.ceil(enabled / 100)
    assert sandbox.count("users/flags") == 1


def test_white_label_flag_is_fetched_once_a_minute_not_per_token(sandbox, client):
    sandbox.control("DELETE", "stats")
    for identity in ("a", "b", "c"):
        client.authkit_token(identity, "user")
    assert sandbox.count("users/flags") == 1 and sandbox.count("authkit") == 3


def test_a_failed_flags_call_is_tolerated_and_not_remembered(sandbox, client):
    sandbox.fault("status", status=500, count=10, path="/v1/users/flags")
    assert client.authkit_token("a", "user")["isWhiteLabel"] is False
    sandbox.control("DELETE", "faults")
    sandbox.control("DELETE", "stats")
    client.authkit_token("b", "user")
    assert sandbox.count("users/flags") == 1


def test_async_authkit_token(sandbox):
    async def run():
        async with AsyncPicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY)) as c:
            return await c.authkit_token("team-9", "team")

    token = asyncio.run(run())
    assert token["rows"] and token["pages"] == 1


def test_passthrough_get_and_post(sandbox, client):
    conn = gmail(client)
    response = client.passthrough("GET", "gmail/v1/users/me/messages", connection_key=conn.key, action_id=GMAIL_LIST,
                                  query={"maxResults": 3}, headers={"x-trace": "t1"})
    assert response.status == 200 and "messages" in response.json()
    assert response.passthrough_headers["x-request-id"] and response.elapsed_ms > 0
    logged = sandbox.requests(1)[0]
    assert logged["query"] == "maxResults=3" and logged["headers"]["x-trace"] == "t1"
    sent = client.passthrough("POST", "/gmail/v1/users/me/messages/send", connection_key=conn.key,
                              action_id=GMAIL_SEND, json={"raw": "aGk="})
    assert sent.status == 200 and sent.json()["labelIds"] == ["SENT"]
    form = client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key, action_id=GMAIL_SEND,
                              form={"a": "1"})
    assert form.status == 200 and sandbox.requests(1)[0]["body"] == "a=1"
    multipart = client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key,
                                   action_id=GMAIL_SEND, form={"a": "1"}, files={"f": ("x.txt", b"hi")})
    assert multipart.status == 200
    fields = client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key,
                                action_id=GMAIL_SEND, form={"to": "a@b.c", 'sub"ject': "hi"}, files=[])
    logged = sandbox.requests(1)[0]  # fields alone are multipart still (httpx sends them urlencoded)
    assert fields.status == 200 and logged["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert 'name="sub%22ject"\r\n\r\nhi\r\n' in logged["body"]


def test_passthrough_upstream_errors_are_responses_not_exceptions(sandbox, client):
    conn = gmail(client)
    sandbox.set_state(conn.id, "failed")
    response = client.passthrough("GET", "gmail/v1/users/me/messages", connection_key=conn.key, action_id=GMAIL_LIST)
    assert response.status == 401 and response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_passthrough_post_is_never_retried(sandbox, client):
    conn = gmail(client)
    sandbox.fault("status", status=503, count=1, path="/v1/passthrough")
    sandbox.control("DELETE", "stats")
    with pytest.raises(UpstreamUnavailableError):
        client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key, action_id=GMAIL_SEND,
                           json={"raw": "aGk="})
    assert sandbox.count("passthrough") == 1


def test_passthrough_get_is_retried_when_pica_itself_fails(sandbox, client):
    conn = gmail(client)
    sandbox.fault("status", status=503, count=2, path="/v1/passthrough")
    sandbox.control("DELETE", "stats")
    response = client.passthrough("GET", "gmail/v1/users/me/messages", connection_key=conn.key, action_id=GMAIL_LIST)
    assert response.status == 200 and sandbox.count("passthrough") == 3


def test_passthrough_pica_errors_raise(client):
    conn = gmail(client)
    with pytest.raises(NotFoundError):
        client.passthrough("GET", "x", connection_key=conn.key, action_id="conn_mod_def::nope::nope")


def test_a_passthrough_redirected_before_pica_is_no_platform_answer(sandbox, client):
    """A 3xx without Pica's passthrough headers forwarded nothing: the Console showed it as the platform's answer
    and audited the write "ok"."""
    conn = gmail(client)
    sandbox.fault("status", status=308, count=1, path="/v1/passthrough")
    with pytest.raises(PicaError) as raised:
        client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key, action_id=GMAIL_SEND,
                           json={"raw": "aGk="})
    assert raised.value.status == 308 and "PICA_API_URL" in raised.value.hint


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="TRACE", path="a"), "not supported"),
    (dict(path="gmail/../../admin"), "'..'"),
    (dict(path="gmail/v1/users/{{userId}}/messages"), "Fill every"),
    (dict(headers={"x-a": "b\r\nx-pica-secret: stolen"}), "line break"),
    (dict(headers={"x-pica-secret": "mine"}), "set by the dashboard"),
    (dict(headers={"x-note": "café"}), "must be ASCII"),  # httpx would raise UnicodeEncodeError while sending
    (dict(connection_key="not a key"), "connection key"),
])
def test_passthrough_refuses_bad_input_before_sending(sandbox, client, kwargs, message):
    conn = gmail(client)
    request = dict(method="GET", path="gmail/v1/users/me/messages", connection_key=conn.key, action_id=GMAIL_LIST)
    request.update(kwargs)
    sandbox.control("DELETE", "stats")
    with pytest.raises(InvalidInputError, match=message):
        client.passthrough(request.pop("method"), request.pop("path"), **request)
    assert sandbox.count() == 0


# --- retries: retryable faults recover within the budget ----------------------------------------------------------
@pytest.mark.parametrize("fault", [
    dict(kind="status", status=503, count=2), dict(kind="status", status=500, count=1),
    dict(kind="status", status=502, count=3), dict(kind="drop", count=2), dict(kind="hang", seconds=3, count=1),
])
def test_read_recovers_from_retryable_faults(sandbox, fault):
    with make(sandbox, timeout=0.5) as c:
        sandbox.fault(path="/v1/users/flags", **fault)
        sandbox.control("DELETE", "stats")
        assert c.user_flags().completed_quickstart is True
        assert sandbox.count("users/flags") == fault["count"] + 1


def test_429_waits_for_retry_after_then_recovers(sandbox):
    with make(sandbox) as c:
        sandbox.control("POST", "settings", json={"throughput": 2})
        c.user_flags()
        c.user_flags()
        sandbox.control("POST", "settings", json={"throughput": 0})  # the window "resets"
        sandbox.fault("rate_limit", count=1, path="/v1/users/flags")
        assert c.user_flags() and c.request_count == 4


def test_429_beyond_the_deadline_raises_with_retry_after(sandbox):
    sandbox.control("POST", "settings", json={"throughput": 1})
    with make(sandbox, retry=RetryPolicy(max_retries=3, deadline_seconds=2)) as c:
        c.user_flags()
        with pytest.raises(RateLimitedError) as raised:
            c.user_flags()
    assert raised.value.retry_after and raised.value.retry_after > 2
    assert "retry in" in raised.value.hint and "Tried" not in raised.value.hint  # given up at once: said so plainly
    assert c.request_count == 2  # it did not hammer Pica: the wait exceeded the deadline


def test_each_wait_to_retry_is_told_to_whoever_shows_progress(sandbox):
    waits = []
    with make(sandbox, on_retry=lambda seconds, error: waits.append((seconds, error.status))) as c:
        sandbox.fault("rate_limit", count=1, path="/v1/users/flags", seconds=1)
        assert c.user_flags() is not None and c.request_count == 2
    assert waits == [(1.0, 429)]


def test_retry_budget_is_bounded(sandbox):
    with make(sandbox, retry=RetryPolicy(max_retries=2, deadline_seconds=10, base_delay=0.01)) as c:
        sandbox.fault("status", status=503, count=10, path="/v1/users/flags")
        with pytest.raises(UpstreamUnavailableError) as raised:
            c.user_flags()
    assert c.request_count == 3 and raised.value.status == 503
    assert raised.value.hint.startswith("Tried 3 times. Pica is unreachable")  # not a bare "retry"


def test_timeout_error_after_budget(sandbox):
    with make(sandbox, timeout=0.2, retry=RetryPolicy(max_retries=1, deadline_seconds=5, base_delay=0.01)) as c:
        sandbox.fault("hang", seconds=2, count=2, path="/v1/users/flags")
        with pytest.raises(PicaTimeoutError) as raised:
            c.user_flags()
    assert raised.value.hint.startswith("Tried 2 times. Pica did not answer in time")


@pytest.mark.parametrize("fault", [dict(kind="drop"), dict(kind="hang", seconds=2)])
def test_a_write_cut_off_after_it_went_out_may_have_been_done(sandbox, fault):
    """A timeout or a cut connection after the request went out: the console must not say "not forwarded"."""
    key = next(c["key"] for c in sandbox.state.connections.values() if c["platform"] == "gmail")
    sandbox.fault(path="/v1/passthrough", count=1, **fault)
    with make(sandbox, timeout=0.5) as c, pytest.raises(UpstreamUnavailableError) as raised:
        c.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=key, action_id=GMAIL_SEND,
                      json={"raw": "SGk="})
    assert raised.value.maybe_delivered and c.request_count == 1  # a write is not sent twice


def test_a_connection_never_made_sent_nothing(sandbox):
    closed = free_port()  # nothing listens there
    with PicaClient(base_url=f"http://127.0.0.1:{closed}", secret=Secret(SANDBOX_TEST_KEY),
                    retry=RetryPolicy(max_retries=0)) as c, pytest.raises(UpstreamUnavailableError) as raised:
        c.user_flags()
    assert not raised.value.maybe_delivered


# --- non-retryable: clear error, no retry --------------------------------------------------------------------------
def test_bad_secret_is_an_auth_error_without_retry(sandbox):
    with make(sandbox, secret="sk_test_notthekey") as c, pytest.raises(AuthError) as raised:
        c.connections()
    assert c.request_count == 1 and raised.value.status == 401 and "PICA_SECRET_KEY" in raised.value.hint



def test_the_sandbox_refusing_its_own_key_points_at_the_injected_fault(sandbox):
    sandbox.fault("status", status=401, count=2, path="/v1/vault/connections")
    with PicaClient(base_url=sandbox.url, secret=Secret(SANDBOX_TEST_KEY), sandbox=True) as client, \
            pytest.raises(AuthError) as raised:
        client.connections()
    assert raised.value.hint == SANDBOX_REFUSED_HINT and "PICA_SECRET_KEY" not in raised.value.hint
    with make(sandbox) as client, pytest.raises(AuthError) as raised:  # live mode, whatever its key says
        client.connections()
    assert "PICA_SECRET_KEY" in raised.value.hint

def test_not_found_without_retry(client):
    with pytest.raises(NotFoundError) as raised:
        client.connection("00000000-0000-4000-8000-000000000000")
    assert client.request_count == 1 and raised.value.key == "err::application::not_found"


def test_malformed_body_is_an_invalid_response(sandbox, client):
    sandbox.fault("malformed", count=1, path="/v1/users/flags")
    with pytest.raises(InvalidResponseError):
        client.user_flags()
    assert client.request_count == 1


def test_an_answer_that_does_not_decode_is_an_invalid_response_not_a_raw_exception(sandbox, client):
    sandbox.fault("undecodable", count=1, path="/v1/vault")  # says gzip, is not
    with pytest.raises(InvalidResponseError) as raised:
        client.connections(identity="u-1")
    assert client.request_count == 1 and "could not be decoded" in raised.value.message
    conn = gmail(client)
    sandbox.fault("undecodable", count=1, path="/v1/passthrough")
    with pytest.raises(InvalidResponseError) as raised:
        client.passthrough("POST", "gmail/v1/users/me/messages/send", connection_key=conn.key, action_id=GMAIL_SEND,
                           json={})
    assert raised.value.maybe_delivered  # an answer came: the write went through ("not forwarded" invited a resend)


def test_a_header_value_with_spaces_around_it_is_sent_without_them(sandbox, client):
    """h11 refuses to send them: the client called that 'could not reach Pica' and retried it four times."""
    conn = gmail(client)
    before = client.request_count
    client.passthrough("GET", "gmail/v1/users/me/messages", connection_key=conn.key, action_id=GMAIL_LIST,
                       headers={"X-Custom": " Bearer abc \t"})
    assert client.request_count - before == 1 and sandbox.requests(1)[0]["headers"]["x-custom"] == "Bearer abc"


def test_invalid_identity_is_refused_before_any_request(sandbox, client):
    for bad in ("x" * 129, "line\nbreak", "   "):
        with pytest.raises(InvalidInputError):
            client.connections(identity=bad)
    assert client.request_count == 0 and sandbox.count() == 0


def test_unreachable_pica(sandbox):
    client = PicaClient(base_url="http://127.0.0.1:9", secret=Secret(SANDBOX_TEST_KEY),
                        retry=RetryPolicy(max_retries=1, deadline_seconds=2, base_delay=0.01))
    with client as c, pytest.raises(UpstreamUnavailableError) as raised:
        c.user_flags()
    assert "Could not reach Pica" in str(raised.value)


# --- the secret never shows ----------------------------------------------------------------------------------------
def test_secret_never_in_repr_errors_or_logs(sandbox, caplog):
    secret = "sk_test_sandbox"
    caplog.set_level(logging.DEBUG)
    with make(sandbox, secret=secret) as c:
        assert secret not in repr(c)
        sandbox.fault("status", status=503, count=1, path="/v1/users/flags")
        c.user_flags()  # retried: logs a line
        with make(sandbox, secret="sk_test_wrongwrongwrong") as bad, pytest.raises(AuthError) as raised:
            bad.user_flags()
    assert "sk_test_wrongwrongwrong" not in str(raised.value) + repr(raised.value) + raised.value.hint
    assert secret not in caplog.text and "sk_test_wrong" not in caplog.text
    assert repr(Secret(secret)) == "Secret('****')" and secret not in f"{Secret(secret)}"


def test_an_error_key_echoing_the_secret_is_redacted():
    # The sandbox's error keys are fixed, so a transport plays a Pica that echoes the secret in its error body.
    secret = "sk_test_sandbox"
    echo = httpx.MockTransport(lambda request: httpx.Response(
        400, json={"key": f"err::application::bad_secret::{secret}", "message": f"Bad request from {secret}"}))
    with PicaClient(base_url="http://pica.test", secret=Secret(secret), transport=echo) as c, pytest.raises(InvalidInputError) as raised:
        c.user_flags()
    assert raised.value.key == "err::application::bad_secret::****"
    assert secret not in str(raised.value) + repr(raised.value) + raised.value.hint
