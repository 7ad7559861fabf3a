"""The sandbox follows Pica's contract over real HTTP: envelopes, filters, errors, headers, faults."""

from __future__ import annotations

import math
import re
import time

import httpx
import pytest

from pica_core.config import SANDBOX_LIVE_KEY, SANDBOX_TEST_KEY

TEST = {"x-pica-secret": SANDBOX_TEST_KEY}
LIVE = {"x-pica-secret": SANDBOX_LIVE_KEY}
KEY_FORMAT = re.compile(r"^(test|live)::[a-z0-9-]+::default::[0-9a-f]{32}\|[^ :]+$")
GMAIL_LIST = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"
GMAIL_SEND = "conn_mod_def::GJ3odhCpd3I::gujvYoneSk6NFWltse9bGg"


def get(sandbox, path, headers=TEST, **params):
    return httpx.get(f"{sandbox.url}{path}", headers=headers, params=params, timeout=10)


def all_connections(sandbox, headers=TEST, **params):
    return get(sandbox, "/v1/vault/connections", headers, limit=1000, **params).json()["rows"]


def first(sandbox, **filters):
    return next(c for c in all_connections(sandbox) if all(c[k] == v for k, v in filters.items()))


def passthrough(sandbox, method, path, key, action, **kwargs):
    headers = {**TEST, "x-pica-connection-key": key, "x-pica-action-id": action, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{sandbox.url}/v1/passthrough/{path}", headers=headers, timeout=10, **kwargs)


# --- auth and errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"x-pica-secret": "sk_test_wrong"}, {"x-pica-secret": ""}])
def test_unknown_secret_gets_401_in_picas_shape(sandbox, headers):
    response = get(sandbox, "/v1/vault/connections", headers)
    assert response.status_code == 401
    body = response.json()
    assert body == {"type": "Unauthorized", "code": 2010, "status": 401, "key": "err::application::unauthorized",
                    "message": "You are not authorized to access this resource", "meta": None}
    assert "x-pica-rate-limit-limit" in response.headers


def test_header_name_is_case_insensitive(sandbox):
    assert get(sandbox, "/v1/users/flags", {"X-Pica-Secret": SANDBOX_TEST_KEY}).status_code == 200


def test_unknown_route_and_wrong_method(sandbox):
    response = get(sandbox, "/v1/does-not-exist")
    assert response.status_code == 404 and response.json() == {"type": "error", "error": "Not found"}
    response = httpx.put(f"{sandbox.url}/v1/vault/connections", headers=TEST)
    assert response.status_code == 405 and response.json()["code"] == 2004
    assert response.headers["allow"] == "GET"
    # Every answer carries the rate-limit headers (the contract), and these count against no limit.
    left = get(sandbox, "/v1/users/flags").headers["x-pica-rate-limit-remainings"]
    for answer in (get(sandbox, "/v1/does-not-exist"), httpx.put(f"{sandbox.url}/v1/vault/connections", headers=TEST),
                   httpx.post(f"{sandbox.url}/v1/users/flags", headers=TEST)):
        assert answer.headers["x-pica-rate-limit-remainings"] == left and answer.headers["x-pica-rate-limit-reset"]


@pytest.mark.parametrize("params, message", [
    ({"limit": "abc"}, "limit"), ({"limit": "0"}, "limit"), ({"page": "-1"}, "page"), ({"limit": "5000"}, "at most"),
    ({"identity": "x" * 129}, "Identity must not exceed 128 characters"), ({"identityType": "robot"}, "identityType"),
    ({"active": "maybe"}, "active"),
])
def test_bad_query_gets_400(sandbox, params, message):
    response = get(sandbox, "/v1/vault/connections", **params)
    assert response.status_code == 400
    assert response.json()["key"] == "err::application::bad_request" and message in response.json()["message"]


@pytest.mark.parametrize("path", ["/v1/vault/connections/%00", "/v1/available-actions/%2e%2e", "/v1/knowledge?_id=\u2603",
                                  "/v1/available-actions/search/gmail?query=%ff%fe", "/v1/passthrough/",
                                  "/logos/..%2f..%2fetc.svg", "/v1/vault/connections?tags=%00,%01"])
def test_odd_input_never_crashes(sandbox, path):
    response = httpx.get(f"{sandbox.url}{path}", headers=TEST, timeout=10)
    assert response.status_code < 500
    assert response.headers["content-type"].startswith("application/json")
    assert get(sandbox, "/v1/users/flags").status_code == 200


# --- lists, envelopes, filters ---------------------------------------------------------------------------------
def test_connectors_envelope_and_pagination(sandbox):
    body = get(sandbox, "/v1/available-connectors", limit=100, page=3).json()
    assert set(body) == {"rows", "total", "pages", "page"}
    assert body["total"] == 294 and body["pages"] == 3 and body["page"] == 3 and len(body["rows"]) == 94
    row = body["rows"][0]
    for field in ("id", "name", "key", "platform", "platformVersion", "status", "description", "category", "image",
                  "tags", "oauth", "tools", "version", "active"):
        assert field in row
    assert row["status"] in ("generally_available", "beta", "alpha", "not_available")
    assert get(sandbox, "/v1/available-connectors").json()["rows"].__len__() == 20  # default limit


def test_connectors_limit_300_and_filters(sandbox):
    everything = get(sandbox, "/v1/available-connectors", limit=300).json()
    assert len(everything["rows"]) == 294 and everything["pages"] == 1
    assert all(r["category"] for r in everything["rows"])
    gmail = get(sandbox, "/v1/available-connectors", platform="gmail").json()["rows"]
    assert [r["name"] for r in gmail] == ["Gmail"] and gmail[0]["tools"] > 0
    assert get(sandbox, "/v1/available-connectors", key="api::gmail::v1").json()["total"] == 1
    assert get(sandbox, "/v1/available-connectors", name="google calendar").json()["rows"][0]["platform"] == "google-calendar"
    crm = get(sandbox, "/v1/available-connectors", category="CRM", limit=300).json()["rows"]
    assert crm and all(r["category"] == "CRM" for r in crm)
    enabled = get(sandbox, "/v1/available-connectors", authkit="true", limit=300).json()
    disabled = get(sandbox, "/v1/available-connectors", authkit="false", limit=300).json()
    assert enabled["total"] + disabled["total"] == 294 and 40 <= enabled["total"] <= 120


def test_logo_is_served_by_the_sandbox(sandbox):
    image = get(sandbox, "/v1/available-connectors", platform="slack").json()["rows"][0]["image"]
    response = httpx.get(image, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<svg")


def test_seed_fleet_is_realistic(sandbox):
    rows = all_connections(sandbox)
    assert len(rows) >= 600
    assert {r["state"] for r in rows} == {"operational", "degraded", "failed", "unknown"}
    assert {r["identityType"] for r in rows} == {"user", "team", "organization", "project"}
    assert len({r["identity"] for r in rows}) >= 60 and len({r["platform"] for r in rows}) >= 40
    assert all(KEY_FORMAT.match(r["key"]) and r["environment"] == "test" for r in rows)
    created = sorted(r["createdAt"] for r in rows)
    assert created[0][:7] != created[-1][:7]  # spread over months
    assert [r["createdAt"] for r in rows] == sorted(created, reverse=True)  # newest first


def test_seed_is_deterministic(sandbox):
    before = [(r["id"], r["key"], r["state"]) for r in all_connections(sandbox)]
    sandbox.control("POST", "reset")
    assert [(r["id"], r["key"], r["state"]) for r in all_connections(sandbox)] == before


def test_vault_filters(sandbox):
    some = first(sandbox, identityType="team")
    by_identity = all_connections(sandbox, identity=some["identity"])
    assert by_identity and all(r["identity"] == some["identity"] for r in by_identity)
    assert all_connections(sandbox, identity=some["identity"], identityType="user") == []
    assert [r["id"] for r in all_connections(sandbox, key=some["key"])] == [some["id"]]
    other = first(sandbox, platform="slack")
    both = all_connections(sandbox, keys=f"{some['key']},{other['key']}")
    assert {r["id"] for r in both} == {some["id"], other["id"]}
    assert all(r["platform"] == "slack" for r in all_connections(sandbox, platform="slack"))
    vip = all_connections(sandbox, tags="vip")
    assert vip and all("vip" in r["tags"] for r in vip)
    assert all_connections(sandbox, active="false") == []


def test_a_key_named_twice_lists_its_connection_once(sandbox):
    key = first(sandbox, platform="gmail")["key"]
    for params in ({"key": f"{key},{key}"}, {"key": key, "keys": key}):
        listed = get(sandbox, "/v1/vault/connections", **params).json()
        assert listed["total"] == 1 and [c["key"] for c in listed["rows"]] == [key]


def test_live_key_sees_live_connections_and_test_keys_are_refused(sandbox):
    live = all_connections(sandbox, LIVE)
    assert live and all(r["environment"] == "live" and r["key"].startswith("live::") for r in live)
    test_conn = first(sandbox, platform="gmail")
    response = passthrough(sandbox, "GET", "gmail/v1/users/me/messages", test_conn["key"], GMAIL_LIST,
                           headers={"x-pica-secret": SANDBOX_LIVE_KEY})
    assert response.status_code == 404 and response.json()["message"] == "Invalid connection header"
    assert get(sandbox, f"/v1/vault/connections/{test_conn['id']}", LIVE).status_code == 404


# --- connection get, patch, delete ------------------------------------------------------------------------------
def test_get_patch_delete_connection(sandbox):
    conn = first(sandbox, platform="notion")
    assert get(sandbox, f"/v1/vault/connections/{conn['id']}").json() == conn
    patched = httpx.patch(f"{sandbox.url}/v1/vault/connections/{conn['id']}", headers=TEST,
                          json={"tags": ["vip", "eu"]}).json()
    assert patched["tags"] == ["vip", "eu"] and patched["id"] == conn["id"]
    assert get(sandbox, f"/v1/vault/connections/{conn['id']}").json()["tags"] == ["vip", "eu"]
    response = httpx.delete(f"{sandbox.url}/v1/vault/connections/{conn['id']}", headers=TEST)
    assert response.status_code == 200 and response.content == b""
    assert get(sandbox, f"/v1/vault/connections/{conn['id']}").status_code == 404
    assert all(r["id"] != conn["id"] for r in all_connections(sandbox))


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"tags": "vip"}', b'{"tags": [1]}', b"{}"])
def test_patch_with_bad_body_is_refused(sandbox, body):
    conn = first(sandbox, platform="notion")
    response = httpx.patch(f"{sandbox.url}/v1/vault/connections/{conn['id']}", headers=TEST, content=body)
    assert response.status_code == 400


# --- actions and knowledge ----------------------------------------------------------------------------------------
def test_actions_list_search_and_knowledge(sandbox):
    listing = get(sandbox, "/v1/available-actions/gmail", limit=100).json()
    assert listing["total"] >= 3 and set(listing["rows"][0]) == {"title", "key", "modelName", "method", "platform"}
    hits = get(sandbox, "/v1/available-actions/search/gmail", query="send message", executeAgent="true").json()
    assert isinstance(hits, list) and hits[0]["systemId"] == GMAIL_SEND
    assert hits[0]["path"] == "/gmail/v1/users/{{userId}}/messages/send" and hits[0]["knowledge"]
    assert "knowledge" not in get(sandbox, "/v1/available-actions/search/gmail", query="send").json()[0]
    knowledge = get(sandbox, "/v1/knowledge", _id=GMAIL_SEND).json()
    assert knowledge["rows"][0]["_id"] == GMAIL_SEND and knowledge["rows"][0]["method"] == "POST"
    assert get(sandbox, "/v1/knowledge", _id="conn_mod_def::nope::nope").json()["rows"] == []
    assert get(sandbox, "/v1/available-actions/not-a-platform").status_code == 404


def test_twelve_popular_platforms_have_actions(sandbox):
    platforms = ["gmail", "slack", "hubspot", "google-calendar", "notion", "salesforce", "github", "stripe",
                 "shopify", "zendesk", "jira", "airtable"]
    for platform in platforms:
        assert get(sandbox, f"/v1/available-actions/{platform}").json()["total"] >= 3, platform


# --- passthrough ---------------------------------------------------------------------------------------------------
def test_passthrough_get_answers_like_the_platform(sandbox):
    conn = first(sandbox, platform="gmail", state="operational")
    response = passthrough(sandbox, "GET", "gmail/v1/users/me/messages", conn["key"], GMAIL_LIST,
                           params={"maxResults": "5"})
    assert response.status_code == 200
    assert "messages" in response.json() and response.headers["x-pica-passthrough-x-request-id"]
    assert response.headers["x-pica-passthrough-content-type"].startswith("application/json")
    again = passthrough(sandbox, "GET", "gmail/v1/users/me/messages", conn["key"], GMAIL_LIST, params={"maxResults": "5"})
    assert again.json() == response.json()  # deterministic: replay gets the same answer
    logged = sandbox.requests(1)[0]
    assert logged["route"] == "passthrough" and logged["query"] == "maxResults=5"
    assert "x-pica-secret" not in logged["headers"]


def test_passthrough_keeps_an_encoded_slash_inside_its_variable(sandbox):
    """A variable's %2F is one segment (Starlette's decoded path made it two: 404 "No route"), and a typed %2F,
    sent as %252F, stays %2F."""
    conn = first(sandbox, platform="gmail", state="operational")
    get_message = "conn_mod_def::GJ3ocvMGOS8::D__3BgQSSzWtDUoOqLuX2A"
    for sent, meant in (("x%2Fy", "x/y"), ("x%252Fy", "x%2Fy")):
        response = passthrough(sandbox, "GET", f"gmail/v1/users/me/messages/{sent}", conn["key"], get_message)
        assert response.status_code == 200 and response.json()["id"] == meant


def test_every_listed_action_is_routed_with_its_variables_filled(sandbox):
    """A placeholder sharing its segment with text (`orders/{{order_id}}.json`, `{{range}}:append`) matched no
    route: 11 real actions answered the platform's 404 "No route" whatever was filled in."""
    from urllib.parse import quote

    from pica_core.sandbox.catalog import load_catalog

    keys = {}
    for action in (a for a in load_catalog().actions if a.listed):
        if action.platform not in keys:
            keys[action.platform] = first(sandbox, platform=action.platform, state="operational")["key"]
        filled = re.sub(r"\{\{\s*([^}]+?)\s*\}\}", lambda m: quote("Sheet1!A1:C3" if "range" in m[1] else "id42", safe=""),
                        action.path)
        body = {"connectionKey": keys[action.platform]} if "custom" in action.tags else {"name": "x"}
        response = passthrough(sandbox, action.method, filled.lstrip("/"), keys[action.platform], action.system_id,
                               **({"json": body} if action.method in {"POST", "PUT", "PATCH"} else {}))
        assert response.status_code != 404 and "No route" not in response.text, (action.system_id, action.path)


def test_an_item_named_in_a_segment_with_text_answers_that_item(sandbox):
    shop = first(sandbox, platform="shopify", state="operational")
    from pica_core.sandbox.catalog import load_catalog

    get_order = next(a for a in load_catalog().actions if (a.method, a.path) == ("GET", "orders/{{order_id}}.json"))
    answer = passthrough(sandbox, "GET", "orders/1234.json", shop["key"], get_order.system_id)
    assert answer.status_code == 200 and answer.json()["id"] == "1234"


def test_passthrough_post_json_form_and_multipart(sandbox):
    conn = first(sandbox, platform="gmail", state="operational")
    sent = passthrough(sandbox, "POST", "gmail/v1/users/me/messages/send", conn["key"], GMAIL_SEND,
                       json={"raw": "SGVsbG8="})
    assert sent.status_code == 200 and sent.json()["labelIds"] == ["SENT"]
    form = passthrough(sandbox, "POST", "gmail/v1/users/me/messages/send", conn["key"], GMAIL_SEND, data={"a": "b"})
    assert form.status_code == 200
    multipart = passthrough(sandbox, "POST", "gmail/v1/users/me/messages/send", conn["key"], GMAIL_SEND,
                            files={"file": ("a.txt", b"hello")})
    assert multipart.status_code == 200
    assert sandbox.requests(1)[0]["headers"]["content-type"].startswith("multipart/form-data")


@pytest.mark.parametrize("headers, status, message", [
    ({"x-pica-action-id": GMAIL_LIST}, 400, "Connection header not found"),
    ({"x-pica-connection-key": "test::gmail::default::" + "0" * 32}, 404, "Connection not found"),
])
def test_passthrough_pica_errors(sandbox, headers, status, message):
    response = httpx.get(f"{sandbox.url}/v1/passthrough/gmail/v1/users/me/messages", headers={**TEST, **headers})
    assert response.status_code == status and response.json()["message"].startswith(message.split(" (")[0])
    assert not any(h.startswith("x-pica-passthrough-") for h in response.headers)


def test_passthrough_unknown_or_foreign_action_is_404(sandbox):
    conn = first(sandbox, platform="slack")
    assert passthrough(sandbox, "GET", "x", conn["key"], "conn_mod_def::nope::nope").status_code == 404
    assert passthrough(sandbox, "GET", "gmail/v1/users/me/messages", conn["key"], GMAIL_LIST).status_code == 404


def test_failed_connection_answers_expired_token(sandbox):
    conn = first(sandbox, platform="gmail", state="operational")
    sandbox.set_state(conn["id"], "failed")
    response = passthrough(sandbox, "GET", "gmail/v1/users/me/messages", conn["key"], GMAIL_LIST)
    assert response.status_code == 401 and response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "x-pica-passthrough-www-authenticate" in response.headers


def test_degraded_connection_fails_intermittently(sandbox):
    conn = first(sandbox, platform="gmail", state="operational")
    sandbox.set_state(conn["key"], "degraded")
    statuses = [passthrough(sandbox, "GET", "gmail/v1/users/me/messages", conn["key"], GMAIL_LIST).status_code
                for _ in range(4)]
    assert statuses == [200, 429, 200, 503]


def test_custom_action_needs_connection_key_in_body(sandbox):
    custom = next(a for a in get(sandbox, "/v1/available-actions/search/gmail", query="send email", limit=50).json()
                  if "custom" in a["tags"])
    conn = first(sandbox, platform="gmail", state="operational")
    path = custom["path"].lstrip("/")
    assert passthrough(sandbox, "POST", path, conn["key"], custom["systemId"], json={"to": "a@b.c"}).status_code == 400
    ok = passthrough(sandbox, "POST", path, conn["key"], custom["systemId"], json={"to": "a@b.c", "connectionKey": conn["key"]})
    assert ok.status_code == 200


def test_a_platform_s_own_api_is_not_a_custom_action(sandbox):
    """Notion's v1/pages was tagged custom (its source was Pica's docs): the sandbox refused Notion's own body."""
    create_page = "conn_mod_def::GCWcIDJuR4A::izAAbGNdQdKddzdP_JS4kw"
    knowledge = get(sandbox, "/v1/knowledge", _id=create_page).json()["rows"][0]
    assert knowledge["path"] == "v1/pages" and "custom" not in knowledge["tags"]
    conn = first(sandbox, platform="notion", state="operational")
    assert passthrough(sandbox, "POST", "v1/pages", conn["key"], create_page,
                       json={"parent": {"page_id": "p1"}}).status_code == 200


# --- users/flags and AuthKit -----------------------------------------------------------------------------------------
def test_user_flags(sandbox):
    flags = get(sandbox, "/v1/users/flags").json()
    assert set(flags) == {"accessList", "authkitWhitelist", "earlyAccess", "completedQuickstart"}


@pytest.mark.parametrize("body", [{"identity": "u1", "identityType": "user"}, {"identity": "u1", "identity_type": "team"}, {}])
def test_authkit_token_pages(sandbox, body):
    first_page = httpx.post(f"{sandbox.url}/v1/authkit", params={"limit": 10, "page": 1}, headers=TEST, json=body).json()
    assert set(first_page) == {"rows", "total", "pages", "page", "requestId"}
    assert first_page["pages"] == math.ceil(first_page["total"] / 10) and len(first_page["rows"]) == 10
    row = first_page["rows"][0]
    for field in ("id", "connectionDefId", "type", "title", "image", "activatedAt", "environment", "createdAt", "tags",
                  "active"):
        assert field in row
    enabled = get(sandbox, "/v1/available-connectors", authkit="true", limit=300).json()["total"]
    assert first_page["total"] == enabled


@pytest.mark.parametrize("body, message", [(b"nope", "JSON"), (b"[1]", "object"),
                                           (b'{"identity": "%s"}' % (b"x" * 129), "128"),
                                           (b'{"identity": "u", "identityType": "robot"}', "identityType")])
def test_authkit_bad_body(sandbox, body, message):
    response = httpx.post(f"{sandbox.url}/v1/authkit", headers=TEST, content=body)
    assert response.status_code == 400 and message in response.json()["message"]


def test_authkit_page_creates_connection_for_the_token_identity(sandbox):
    token = httpx.post(f"{sandbox.url}/v1/authkit", headers=TEST, json={"identity": "new user:1", "identityType": "user"}).json()
    page = httpx.get(f"{sandbox.url}/authkit")
    assert page.status_code == 200 and "LINK_SUCCESS" in page.text
    record = httpx.post(f"{sandbox.url}/authkit/connect", json={"requestId": token["requestId"], "platform": "gmail"}).json()
    assert record["identity"] == "new user:1" and record["key"].endswith("|new-user-1")
    assert KEY_FORMAT.match(record["key"])
    listed = all_connections(sandbox, key=record["key"])
    assert listed[0]["id"] == record["_id"] and listed[0]["state"] == "operational"
    bad = httpx.post(f"{sandbox.url}/authkit/connect", json={"requestId": 1, "platform": "gmail"})
    assert bad.status_code == 401


# --- rate limits and faults ------------------------------------------------------------------------------------------
def test_rate_limit_headers_and_429(sandbox):
    sandbox.control("POST", "settings", json={"throughput": 3})
    responses = [get(sandbox, "/v1/users/flags") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["x-pica-rate-limit-remainings"] for r in responses[:3]] == ["2", "1", "0"]
    limited = responses[3]
    assert limited.json()["message"] == "Rate limit exceeded" and limited.json()["code"] == 2009
    assert int(limited.headers["retry-after"]) <= 60 and limited.headers["x-pica-rate-limit-limit"] == "3"
    # The contract's reset header is the window's 60 on every answer (it counted down: a client reading it as the
    # wait retried early in the sandbox, and never against Pica)
    assert {r.headers["x-pica-rate-limit-reset"] for r in responses} == {"60"}
    # one window for the account: its live key had a budget of its own (twice Pica's)
    assert get(sandbox, "/v1/users/flags", LIVE).status_code == 429
    refused = get(sandbox, "/v1/users/flags", {"x-pica-secret": "sk_test_wrong"})  # as the account's window stands
    assert refused.status_code == 401 and (refused.headers["x-pica-rate-limit-limit"],
                                           refused.headers["x-pica-rate-limit-remainings"]) == ("3", "0")


@pytest.mark.parametrize("header, status", [("503", 503), ("500", 500), ("502", 502), ("429", 429)])
def test_fault_header_statuses(sandbox, header, status):
    response = get(sandbox, "/v1/users/flags", {**TEST, "x-sandbox-fault": header})
    assert response.status_code == status and response.json()["status"] == status
    assert "x-pica-rate-limit-reset" in response.headers


def test_queued_faults_apply_to_the_next_n_matching_requests(sandbox):
    sandbox.fault("status", status=502, count=2, path="/v1/vault")
    assert get(sandbox, "/v1/users/flags").status_code == 200  # another path is untouched
    assert [get(sandbox, "/v1/vault/connections").status_code for _ in range(3)] == [502, 502, 200]


def test_latency_hang_malformed_and_drop_faults(sandbox):
    started = time.perf_counter()
    assert get(sandbox, "/v1/users/flags", {**TEST, "x-sandbox-fault": "latency=0.3"}).status_code == 200
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{sandbox.url}/v1/users/flags", headers={**TEST, "x-sandbox-fault": "hang=5"}, timeout=0.3)
    malformed = get(sandbox, "/v1/users/flags", {**TEST, "x-sandbox-fault": "malformed"})
    with pytest.raises(ValueError):
        malformed.json()
    with pytest.raises(httpx.RemoteProtocolError):
        get(sandbox, "/v1/users/flags", {**TEST, "x-sandbox-fault": "drop"})
    assert get(sandbox, "/v1/users/flags").status_code == 200  # still up


def test_controls_need_a_sandbox_key(sandbox):
    assert httpx.post(f"{sandbox.url}/control/reset").status_code == 401
    assert httpx.post(f"{sandbox.url}/control/faults", headers=TEST, json={"kind": "explode"}).status_code == 400


def test_the_sandbox_command_says_in_one_line_that_its_port_is_taken(sandbox):
    """It printed "point the dashboard at it: PICA_API_URL=…" of the other server's port, then uvicorn's error."""
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from tests.conftest import ROOT

    port = urlsplit(sandbox.url).port
    done = subprocess.run([sys.executable, "-m", "pica_core.sandbox", "--port", str(port)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 3 and "point the dashboard at it" not in done.stdout, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"Cannot listen on 127.0.0.1:{port} (") and "choose another port" in done.stderr
