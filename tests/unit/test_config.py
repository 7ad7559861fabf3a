"""Settings: sources, defaults, and one clear line for every invalid setting."""

from __future__ import annotations

import pytest

from pica_core.config import LIVE_API_URL, LIVE_AUTHKIT_URL, Secret, load_settings
from pica_core.errors import ConfigError


def settings(**env):
    return load_settings(env, secrets={})


def test_no_key_is_sandbox_mode(tmp_path):
    s = load_settings({}, secrets={}, data_dir=tmp_path)
    assert s.sandbox and s.environment == "test" and s.api_url is None
    assert s.database_url == f"sqlite:///{tmp_path / 'pica_dashboard.db'}"
    mounted = s.with_sandbox_port(8501)
    assert mounted.api_url == "http://127.0.0.1:8501/sandbox" and mounted.authkit_url == "/sandbox/authkit"


@pytest.mark.parametrize("address, api_url", [
    (None, "http://127.0.0.1:8502/sandbox"), ("0.0.0.0", "http://127.0.0.1:8502/sandbox"),
    ("::", "http://127.0.0.1:8502/sandbox"), ("10.0.0.7", "http://10.0.0.7:8502/sandbox"),
    ("fd00::7", "http://[fd00::7]:8502/sandbox")])
def test_the_mounted_sandbox_is_reached_where_the_server_listens(tmp_path, address, api_url):
    """Bound to one interface (--server.address), the server does not answer on 127.0.0.1: every page and the token
    route said Pica was unreachable."""
    assert load_settings({}, secrets={}, data_dir=tmp_path).with_sandbox_port(8502, address).api_url == api_url


@pytest.mark.parametrize("address", [None, "10.0.0.7"])
def test_the_mounted_sandbox_s_urls_are_the_browser_s_origin(monkeypatch, tmp_path, address):
    """Bound to one interface, the mounted sandbox was taken for a standalone one: its logos and the console's
    exports kept the server's address, which a browser behind a proxy or a published port cannot reach."""
    from types import SimpleNamespace

    from pica_core.ui import layout

    monkeypatch.setattr(layout.st, "context", SimpleNamespace(url="https://dash.example/catalog"))
    mounted = load_settings({}, secrets={}, data_dir=tmp_path).with_sandbox_port(8502, address)
    assert layout.public_url(f"{mounted.api_url}/logos/gmail.svg", mounted) == \
        "https://dash.example/sandbox/logos/gmail.svg"
    standalone = load_settings({"PICA_API_URL": "http://10.0.0.9:8600"}, secrets={}, data_dir=tmp_path)
    assert layout.public_url("http://10.0.0.9:8600/logos/a.svg", standalone) == "http://10.0.0.9:8600/logos/a.svg"


def test_the_token_route_reaches_the_sandbox_where_its_request_came_in(monkeypatch, tmp_path):
    from starlette.requests import Request

    from pica_core import web

    monkeypatch.setattr(web, "base_settings", lambda: load_settings({}, secrets={}, data_dir=tmp_path))
    came_in = Request({"type": "http", "server": ("10.0.0.7", 8503), "headers": []})
    assert web.request_settings(came_in).api_url == "http://10.0.0.7:8503/sandbox"


def test_printed_settings_show_no_secret():
    s = settings(PICA_SECRET_KEY="sk_live_abc123", DATABASE_URL="postgresql+psycopg://dash:hunter2@db/x")
    assert "hunter2" not in repr(s) and "sk_live_abc123" not in repr(s)


def test_live_key_uses_pica_hosts():
    s = settings(PICA_SECRET_KEY="sk_live_abc")
    assert not s.sandbox and s.environment == "live"
    assert (s.api_url, s.authkit_url) == (LIVE_API_URL, LIVE_AUTHKIT_URL)
    assert s.with_sandbox_port(8501) is s


def test_standalone_sandbox_url_serves_its_own_authkit_page():
    s = settings(PICA_API_URL="http://127.0.0.1:8600/")
    assert s.sandbox and s.api_url == "http://127.0.0.1:8600" and s.authkit_url == "http://127.0.0.1:8600/authkit"


def test_environment_wins_over_secrets_file():
    s = load_settings({"PICA_TIMEOUT_SECONDS": "3"}, secrets={"PICA_TIMEOUT_SECONDS": 9, "PICA_MAX_RETRIES": 1,
                                                              "auth": {"client_id": "x"}})
    assert s.timeout_seconds == 3 and s.max_retries == 1


def test_secrets_file_is_read(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text('PICA_SECRET_KEY = "sk_test_fromfile"\n[auth]\nclient_id = "x"\n')
    s = load_settings({"PICA_SECRETS_FILE": str(path)})
    assert s.secret_key == Secret("sk_test_fromfile")


def test_postgres_url_gets_the_installed_driver():
    assert settings(DATABASE_URL="postgresql://u@h:5432/db").database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize("env, fragment", [
    ({"PICA_SECRET_KEY": "pk_live_123"}, "must start with sk_test_ or sk_live_"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "only sqlite and postgresql"),
    ({"DATABASE_URL": "sqlite://"}, "in-memory SQLite database, which the dashboard's threads cannot share"),
    ({"DATABASE_URL": "sqlite:///:memory:"}, "name a file (sqlite:///data/pica.db)"),
    ({"PICA_TIMEOUT_SECONDS": "soon"}, "PICA_TIMEOUT_SECONDS='soon' is not a number"),
    ({"PICA_MAX_RETRIES": "-1"}, "at least"),
    ({"PICA_API_URL": "ftp://x"}, "http(s) URL"),
    ({"PICA_API_URL": "/v1"}, "PICA_API_URL='/v1' must be an http(s) URL"),  # the server has no page to resolve it on
    # Past the prefix check, these failed every call with a traceback (OverflowError, "Invalid IPv6 URL")
    ({"PICA_API_URL": "http://127.0.0.1:99999"}, "a port from 1 to 65535"),
    ({"PICA_API_URL": "http://[::1"}, "must be an http(s) URL with a host"),
    ({"PICA_API_URL": "https://"}, "must be an http(s) URL with a host"),
    ({"PICA_AUTHKIT_URL": "https://authkit.example:0"}, "PICA_AUTHKIT_URL='https://authkit.example:0' must be"),
    ({"PICA_API_URL": "http://127.0.0.1:8600/v1/"}, "ends in /v1, which the dashboard adds to every call itself"),
    ({"DATABASE_URL": "postgresql+psycopg2://u@h/db"}, "names the driver 'postgresql+psycopg2', which the dashboard"),
    ({"ALLOW_LIVE_WRITES": "maybe"}, "ALLOW_LIVE_WRITES='maybe' is neither true nor false"),
    ({"PICA_TIMEOUT_SECONDS": "nan"}, "is not a finite number"),  # nan passed "at least 0.1" and timed out everything
    ({"PICA_RETRY_DEADLINE_SECONDS": "inf"}, "is not a finite number"),
    ({"AUTHKIT_GRANT_TTL_SECONDS": "999999999"}, "at most 3600"),
    ({"PICA_PAGE_SIZE": "5000"}, "PICA_PAGE_SIZE='5000' is too large: it must be at most 1000"),
    ({"AUTHKIT_GRANT_SECRET": "short"}, "AUTHKIT_GRANT_SECRET is 5 characters long: use at least 32"),
    ({"AUTHKIT_ALLOWED_ORIGIN": "https://ops.example.com/"}, "no path or trailing slash"),
    ({"AUTHKIT_ALLOWED_ORIGIN": "https://a.example, https://b.example"}, "must be * or one origin"),
    ({"AUTHKIT_ALLOWED_ORIGIN": "https://a.example?x=1"}, "must be * or one origin"),
    ({"ROLE_MAP": "ops=superuser"}, "roles are"),
])
def test_invalid_settings_give_one_clear_line(env, fragment):
    with pytest.raises(ConfigError) as raised:
        settings(**env)
    message = str(raised.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("name, url", [("PICA_API_URL", "http://admin:s3cr3tpw@127.0.0.1:8600"),
                                       ("PICA_API_URL", "https://api.example?token=s3cr3tpw"),
                                       ("PICA_AUTHKIT_URL", "https://admin:s3cr3tpw@authkit.example"),
                                       # malformed too: the refusal of a bad URL quoted it whole
                                       ("PICA_API_URL", "ops:s3cr3tpw@pica.internal:8600"),
                                       ("PICA_API_URL", "https//ops:s3cr3tpw@pica.internal"),
                                       ("PICA_AUTHKIT_URL", "http://ops:s3cr3tpw@[::1")])
def test_a_pica_url_holding_a_password_or_a_query_is_refused_without_quoting_it(name, url):
    """It was printed and recorded in "Could not reach Pica at http://admin:s3cr3tpw@…", and shown on pages."""
    with pytest.raises(ConfigError) as raised:
        settings(**{name: url})
    assert "s3cr3tpw" not in str(raised.value) and f"{name} holds a user name, a password or a query" in str(raised.value)


def test_a_toml_true_is_not_a_number_and_a_flag_takes_its_usual_spellings(tmp_path):
    with pytest.raises(ConfigError, match="PICA_PAGE_SIZE=True is not a whole number"):
        load_settings({}, secrets={"PICA_PAGE_SIZE": True}, data_dir=tmp_path)  # it paged one connection at a time
    for text, meant in [("on", True), ("1", True), ("No", False), ("0", False), ("", False)]:
        assert settings(ALLOW_LIVE_WRITES=text).allow_live_writes is meant, text


@pytest.mark.parametrize("key", ["sk_live_0123456789abcdef\r\nx-injected: 1", "sk_live_0123456789abcdef\u200b",
                                 "sk_live_0123 456789", "sk_live_clé"])
def test_a_key_no_header_can_carry_is_refused_without_quoting_it(key):
    """A line break let the key inject a header (and httpx's refusal quoted the key to the browser); a character
    beyond ASCII could not be sent at all."""
    with pytest.raises(ConfigError) as raised:
        settings(PICA_SECRET_KEY=key)
    assert "0123" not in str(raised.value) and "clé" not in str(raised.value)
    assert "copy the key again" in str(raised.value)


@pytest.mark.parametrize("name", ["PICA_MAX_RETRIES", "AUTHKIT_GRANT_TTL_SECONDS", "PICA_TIMEOUT_SECONDS"])
def test_a_toml_infinity_is_one_line_for_whole_numbers_too(name):
    """int(float("inf")) raised OverflowError: a traceback at start-up."""
    with pytest.raises(ConfigError, match="is not a finite number"):
        load_settings({}, secrets={name: float("inf")})


def test_a_single_origin_and_a_long_grant_secret_are_taken():
    s = settings(AUTHKIT_ALLOWED_ORIGIN="https://ops.example.com:8443", AUTHKIT_GRANT_SECRET="g" * 32,
                 AUTHKIT_GRANT_TTL_SECONDS="3600", PICA_AUTHKIT_URL="/sandbox/authkit")
    assert s.authkit_allowed_origin == "https://ops.example.com:8443" and s.grant_ttl_seconds == 3600


def test_invalid_secrets_file_is_one_line(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text("PICA_SECRET_KEY = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"PICA_SECRETS_FILE": str(path)})


def test_secret_never_shows_in_repr():
    s = settings(PICA_SECRET_KEY="sk_live_supersecretvalue")
    assert "supersecret" not in repr(s) and "supersecret" not in str(s.secret_key)
    assert s.effective_secret().reveal() == "sk_live_supersecretvalue"


def test_a_setting_set_and_not_read_is_named(tmp_path):
    """A misspelt name, or a setting under a [table] of secrets.toml, was dropped without a word."""
    loaded = load_settings({"PICA_PAGESIZE": "5", "PICA_SECRETS_FILE": "x", "HOME": "/root", "AUTHKIT_ORIGIN": "*"},
                           secrets={"pica": {"PICA_API_URL": "http://x"}, "auth": {"client_id": "y"},
                                    "DATABSE_URL": "sqlite:///x.db", "ROLE_MAP": {"ops": "admin"}},
                           data_dir=tmp_path)
    assert loaded.ignored == (
        "PICA_PAGESIZE is not a setting: did you mean PICA_PAGE_SIZE?",
        "AUTHKIT_ORIGIN is not a setting.",
        "DATABSE_URL is not a setting: did you mean DATABASE_URL?",
        "PICA_API_URL under [pica] in the secrets file is not read: settings are its root keys, above every [table].")
    assert load_settings({"PICA_PAGE_SIZE": "5"}, secrets={}, data_dir=tmp_path).ignored == ()


def test_only_pica_s_own_v1_is_refused_at_the_end_of_pica_api_url():
    """A gateway's base (its prefix, then /v1) may strip its prefix: only the host followed by /v1 is a mistake."""
    assert settings(PICA_API_URL="https://gw.corp/pica/v1").api_url == "https://gw.corp/pica/v1"
    with pytest.raises(ConfigError, match="ends in /v1"):
        settings(PICA_API_URL="https://api.picaos.com/v1")
