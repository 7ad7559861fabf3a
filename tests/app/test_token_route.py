"""The token route on the real app (Starlette TestClient on streamlit_app.app) against the test sandbox."""

from __future__ import annotations

import importlib
import time

import pytest
from starlette.testclient import TestClient

from pica_core import web
from pica_core.config import Secret
from pica_core.tokens import GrantSigner

GRANT_KEY = "route-test-grant-key-of-32-characters-at-least"
URL = "/api/authkit/token"


def _forget_app() -> None:
    """Routes and settings are built once per process; tests build them again for their own env."""
    web.base_settings.cache_clear()
    web._build.cache_clear()
    web.grant_signer.cache_clear()
    from streamlit.runtime import Runtime

    Runtime._instance = None  # one Streamlit runtime per process: let the next TestClient start its own


def _fresh_app(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _forget_app()
    import streamlit_app

    return importlib.reload(streamlit_app).app


@pytest.fixture
def client(app_env, monkeypatch):
    app = _fresh_app(monkeypatch, AUTHKIT_GRANT_SECRET=GRANT_KEY)
    with TestClient(app) as test_client:
        yield test_client
    _forget_app()


def grant(identity="grant-user-1", identity_type="user", **kwargs) -> dict[str, str]:
    return {"x-authkit-grant": GrantSigner(Secret(GRANT_KEY)).issue(identity, identity_type, **kwargs),
            "content-type": "application/json"}


def assert_cors(response) -> None:
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization", "x-user-id", "x-authkit-grant"} <= allowed


def test_preflight(client):
    response = client.options(URL, headers={"Origin": "https://authkit.picaos.com",
                                            "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type,x-authkit-grant,x-user-id"})
    assert response.status_code == 204
    assert_cors(response)
    assert "access-control-allow-private-network" not in response.headers


def test_private_network_preflight(client):
    response = client.options(URL, headers={"Access-Control-Request-Private-Network": "true"})
    assert response.status_code == 204 and response.headers["access-control-allow-private-network"] == "true"


def test_good_post_mints_for_the_granted_identity_not_x_user_id(client, app_env):
    headers = {**grant("grant-user-1", "team"), "x-user-id": "someone-else"}
    response = client.post(URL, headers=headers, content=b"{}")
    assert response.status_code == 200
    assert_cors(response)
    token = response.json()
    enabled = len(app_env.state.catalog.authkit_enabled["test"])
    assert len(token["rows"]) == token["total"] == enabled and token["pages"] == 1 and token["page"] == 1
    assert token["isWhiteLabel"] is False and "error" not in token
    session = app_env.state.authkit_session(token["requestId"])
    assert (session["identity"], session["identityType"]) == ("grant-user-1", "team")
    # The official generator's calls: users/flags once, every page of POST /v1/authkit.
    assert app_env.count("users/flags") == 1 and app_env.count("authkit") == 1


@pytest.mark.parametrize("headers", [
    {},
    {"x-user-id": "anyone"},
    {"x-authkit-grant": "garbage"},
    {"x-authkit-grant": GrantSigner(Secret("another-key")).issue("grant-user-1", "user")},
    {"x-authkit-grant": "e30.\u00e9".encode("latin-1")},  # not ASCII: hmac.compare_digest raised TypeError (500)
])
def test_missing_or_forged_grant_is_401(client, app_env, headers):
    response = client.post(URL, headers=headers, content=b"{}")
    assert response.status_code == 401 and response.json()["error"]
    assert_cors(response)
    assert app_env.count("authkit") == 0


def test_tampered_grant_is_401(client):
    payload, mac = grant("grant-user-1")["x-authkit-grant"].split(".")
    other = GrantSigner(Secret(GRANT_KEY)).issue("victim", "user").split(".")[0]
    assert client.post(URL, headers={"x-authkit-grant": f"{other}.{mac}"}, content=b"{}").status_code == 401


def test_expired_grant_is_401(client):
    response = client.post(URL, headers=grant(now=time.time() - 3600), content=b"{}")
    assert response.status_code == 401 and "expired" in response.json()["error"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"[" * 2040 + b"]" * 2040])
def test_malformed_body_is_400(client, body):
    response = client.post(URL, headers=grant(), content=body)
    assert response.status_code == 400
    assert_cors(response)


def test_body_over_the_limit_is_413(client):
    response = client.post(URL, headers=grant(), content=b'{"pad": "' + b"x" * 5000 + b'"}')
    assert response.status_code == 413
    assert_cors(response)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_not_the_app_page(client, method):
    response = client.request(method, URL)
    assert response.status_code == 405 and response.headers["allow"] == "POST, OPTIONS"
    assert response.headers["content-type"].startswith("application/json")
    assert_cors(response)


def test_too_many_requests_is_429(client):
    headers = grant("busy-user")
    statuses = [client.post(URL, headers=headers, content=b"{}").status_code for _ in range(31)]
    assert statuses[:30] == [200] * 30 and statuses[30] == 429


def test_pica_failure_is_502_with_json_and_cors(client, app_env, monkeypatch):
    app_env.fault("status", status=503, count=50, path="/v1/authkit")
    response = client.post(URL, headers=grant(), content=b"{}")
    assert response.status_code == 502 and "unavailable" in response.json()["error"]
    assert_cors(response)


def test_any_other_pica_error_is_502_not_passed_on_as_the_widget_s_own(client, app_env):
    app_env.fault("status", status=404, count=50, path="/v1/authkit")  # a wrong PICA_API_URL path, say
    response = client.post(URL, headers=grant(), content=b"{}")
    assert response.status_code == 502 and response.json()["error"].startswith("Pica answered an error (404)")
    assert_cors(response)


@pytest.mark.parametrize("status", [409, 422])
def test_pica_refusing_the_dashboard_s_request_is_502_not_the_widget_s_400(client, app_env, status):
    """The widget showed "The token endpoint answered 400" for a request it had made right."""
    app_env.fault("status", status=status, count=50, path="/v1/authkit")
    response = client.post(URL, headers=grant(), content=b"{}")
    assert response.status_code == 502, response.text
    assert response.json()["error"].startswith(f"Pica refused the token request ({status}): ")
    assert_cors(response)


def test_pica_rate_limit_is_429_with_retry_after(client, app_env):
    app_env.fault("rate_limit", count=50, path="/v1/authkit", seconds=120)
    response = client.post(URL, headers=grant(), content=b"{}")
    assert response.status_code == 429 and response.headers["retry-after"] == "120"
    assert response.json()["error"] == "Pica's rate limit was reached: open AuthKit again in 120 s."


def test_an_answer_pica_sent_that_is_not_a_token_says_what_to_check(client, app_env):
    app_env.fault("malformed", count=50, path="/v1/authkit")
    response = client.post(URL, headers=grant(), content=b"{}")
    assert response.status_code == 502 and "ValidationError" not in response.text
    assert response.json()["error"].startswith("Pica's answer to the token request was not understood: retry")


def test_a_hanging_pica_is_a_504_after_one_retry_at_most(app_env, monkeypatch):
    """Someone waits in the widget: the reads' budget (3 retries in 30 s) kept them 30 s before the 504."""
    app = _fresh_app(monkeypatch, AUTHKIT_GRANT_SECRET=GRANT_KEY, PICA_TIMEOUT_SECONDS="0.5", PICA_MAX_RETRIES="3")
    app_env.fault("latency", seconds=3, count=50, path="/v1/authkit")
    with TestClient(app) as c:
        response = c.post(URL, headers=grant("patient-user"), content=b"{}")
    _forget_app()
    assert response.status_code == 504 and response.json()["error"] == "Pica did not answer in time: retry."
    assert app_env.count("authkit") == 2


def test_refused_secret_is_502_and_never_echoed(app_env, monkeypatch):
    app = _fresh_app(monkeypatch, AUTHKIT_GRANT_SECRET=GRANT_KEY, PICA_SECRET_KEY="sk_test_not_the_sandbox_key")
    with TestClient(app) as c:
        response = c.post(URL, headers=grant(), content=b"{}")
    _forget_app()
    assert response.status_code == 502 and "PICA_SECRET_KEY" in response.json()["error"]
    assert "sk_test_not_the_sandbox_key" not in response.text


def test_health(client):
    assert client.get("/api/health").json() == {"status": "ok", "mode": "sandbox", "environment": "test"}


def test_mounted_sandbox_serves_its_logos_under_its_mount(monkeypatch, app_env):
    monkeypatch.delenv("PICA_API_URL")
    app = _fresh_app(monkeypatch)
    with TestClient(app) as c:
        row = c.get("/sandbox/v1/available-connectors", params={"platform": "gmail"},
                    headers={"x-pica-secret": "sk_test_sandbox"}).json()["rows"][0]
        assert row["image"] == "http://testserver/sandbox/logos/gmail.svg"
        assert c.get("/sandbox/logos/gmail.svg").headers["content-type"] == "image/svg+xml"
        assert "LINK_SUCCESS" in c.get("/sandbox/authkit").text
    _forget_app()
