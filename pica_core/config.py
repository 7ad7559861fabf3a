"""Settings from the environment and `.streamlit/secrets.toml` (root keys).

The environment wins over the secrets file, so a deployment can override a
checked-out secrets file without editing it. No `PICA_SECRET_KEY` means sandbox
mode: the built-in emulator answers instead of Pica.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRETS_PATH = PROJECT_ROOT / ".streamlit" / "secrets.toml"
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"

LIVE_API_URL = "https://api.picaos.com"
LIVE_AUTHKIT_URL = "https://authkit.picaos.com"
# Pica is becoming "One" (api.withone.ai, x-one-secret …): with the URLs above, the prefix is the only thing to change.
HEADER_PREFIX = "x-pica"
SECRET_HEADER = f"{HEADER_PREFIX}-secret"
CONNECTION_HEADER = f"{HEADER_PREFIX}-connection-key"
ACTION_HEADER = f"{HEADER_PREFIX}-action-id"
RATE_RESET_HEADER = f"{HEADER_PREFIX}-rate-limit-reset"
PASSTHROUGH_HEADER_PREFIX = f"{HEADER_PREFIX}-passthrough-"  # the platform's own answer headers, re-emitted
# The path the sandbox is mounted under inside the dashboard's st.App.
SANDBOX_MOUNT = "/sandbox"
# Documented sandbox keys: deliberately short and obviously not real Pica keys.
SANDBOX_TEST_KEY = "sk_test_sandbox"
SANDBOX_LIVE_KEY = "sk_live_sandbox"

KEY_PREFIXES = ("sk_test_", "sk_live_")
# Rows per page a list may ask for. Pica does not document its maximum; the sandbox refuses more, and a sync whose
# every page Pica refuses is a setting to correct before it starts, not a run to resume.
MAX_PAGE_SIZE = 1000
# A key goes into a header: a line break or a character beyond ASCII pasted with it would break the request, and
# h11's refusal quotes the header (the key) in its message.
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
# What Access-Control-Allow-Origin can hold: "*" or one origin, with no path (a browser refuses a slash or a list).
_ORIGIN = re.compile(r"\*|https?://[^/\s,?#:]+(:\d{1,5})?")
MIN_GRANT_SECRET_LENGTH = 32  # grants sit in the widget's URL: a short secret could be guessed offline from one
MAX_GRANT_TTL_SECONDS = 3600


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    secret_key: Secret | None = None
    api_url: str | None = None  # None in sandbox mode until the server port is known
    authkit_url: str | None = None
    database_url: str = field(default="", repr=False)  # it may hold the database's password
    timeout_seconds: float = 15.0
    connect_timeout_seconds: float = 5.0
    max_retries: int = 3
    retry_deadline_seconds: float = 30.0
    page_size: int = 300
    max_concurrency: int = 4
    catalog_ttl_seconds: int = 600
    connections_ttl_seconds: int = 60
    authkit_allowed_origin: str = "*"
    grant_secret: Secret | None = None
    grant_ttl_seconds: int = 300
    allow_live_writes: bool = False
    history_body_limit: int = 16_384
    display_body_limit: int = 200_000
    roles_claim: str = "groups"
    role_map: Mapping[str, str] = field(default_factory=dict)
    sandbox_mounted: bool = False  # api_url is the sandbox this process serves (browsers reach it on their origin)
    ignored: tuple[str, ...] = ()  # what was set and not read, each said in a line (`_ignored`)

    @property
    def sandbox(self) -> bool:
        return self.secret_key is None

    @property
    def environment(self) -> str:
        """'test' or 'live': the environment of the key in use."""
        key = self.effective_secret().reveal()
        return "live" if key.startswith("sk_live_") else "test"

    def effective_secret(self) -> Secret:
        return self.secret_key if self.secret_key else Secret(SANDBOX_TEST_KEY)

    def with_sandbox_port(self, port: int, address: str | None = None) -> Settings:
        """Point sandbox mode at the sandbox mounted in this process (unless a URL was set), at the address the
        server listens on: bound to one interface (a container's, a demo host's), it does not answer on 127.0.0.1."""
        if not self.sandbox or self.api_url:
            return self
        host = "127.0.0.1" if address in (None, "", "0.0.0.0", "::", "localhost") else address
        base = f"http://{f'[{host}]' if ':' in host else host}:{port}{SANDBOX_MOUNT}"
        return replace(self, api_url=base, authkit_url=self.authkit_url or f"{SANDBOX_MOUNT}/authkit",
                       sandbox_mounted=True)


# Every setting by name (the Settings field it fills, for the Settings page), and other names the dashboard reads.
SETTING_FIELDS = {
    "PICA_SECRET_KEY": "secret_key", "PICA_API_URL": "api_url", "PICA_AUTHKIT_URL": "authkit_url",
    "DATABASE_URL": "database_url", "PICA_TIMEOUT_SECONDS": "timeout_seconds",
    "PICA_CONNECT_TIMEOUT_SECONDS": "connect_timeout_seconds", "PICA_MAX_RETRIES": "max_retries",
    "PICA_RETRY_DEADLINE_SECONDS": "retry_deadline_seconds", "PICA_PAGE_SIZE": "page_size",
    "PICA_MAX_CONCURRENCY": "max_concurrency", "CATALOG_CACHE_TTL": "catalog_ttl_seconds",
    "CONNECTIONS_CACHE_TTL": "connections_ttl_seconds", "AUTHKIT_ALLOWED_ORIGIN": "authkit_allowed_origin",
    "AUTHKIT_GRANT_SECRET": "grant_secret", "AUTHKIT_GRANT_TTL_SECONDS": "grant_ttl_seconds",
    "ALLOW_LIVE_WRITES": "allow_live_writes", "HISTORY_BODY_LIMIT": "history_body_limit",
    "DISPLAY_BODY_LIMIT": "display_body_limit", "ROLES_CLAIM": "roles_claim", "ROLE_MAP": "role_map",
}
_OTHER_NAMES = {"PICA_SECRETS_FILE"}
_OURS = ("PICA_", "AUTHKIT_")  # environment variables of this dashboard: any other is some other program's


def _ignored(env: Mapping[str, str], secrets: Mapping[str, Any]) -> tuple[str, ...]:
    """What was set and will not be read, which nothing said: a misspelt name (PICA_PAGESIZE) in the environment or
    the secrets file, and a setting under a table of the file, of which only the root keys are read."""
    notes = []
    names = [*(name for name in env if name.startswith(_OURS)),
             *(name for name, value in secrets.items() if not isinstance(value, Mapping))]
    for name in dict.fromkeys(names):
        if name in SETTING_FIELDS or name in _OTHER_NAMES:
            continue
        close = difflib.get_close_matches(name.upper(), SETTING_FIELDS, n=1, cutoff=0.8)
        if close or name.startswith(_OURS):
            notes.append(f"{name} is not a setting" + (f": did you mean {close[0]}?" if close else "."))
    for table, values in secrets.items():
        if isinstance(values, Mapping) and table not in ("auth", "ROLE_MAP"):
            notes += [f"{name} under [{table}] in the secrets file is not read: settings are its root keys, above "
                      "every [table]." for name in values if name in SETTING_FIELDS]
    return tuple(notes)


def read_secrets_file(path: Path = DEFAULT_SECRETS_PATH) -> dict[str, Any]:
    """Root keys of `.streamlit/secrets.toml` (absent file → empty)."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}): fix or remove it.") from None


def _number(raw: Mapping[str, Any], name: str, default: float, *, integer: bool = False, minimum: float = 0,
            maximum: float | None = None):
    value = raw.get(name)
    if value in (None, ""):
        return default
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool):  # TOML's `true` is an int to Python: PICA_PAGE_SIZE = true paged one by one
        raise ConfigError(f"{name}={value!r} is not {kind}: set it to {kind} such as {default}.")
    try:
        number = int(value) if integer else float(value)
    except OverflowError:  # int(float("inf")), from a TOML inf: refused as not finite, below
        number = math.inf
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not {kind}: set it to {kind} such as {default}.") from None
    if not math.isfinite(number):  # float("nan") and float("inf") parse, and nan passes every comparison
        raise ConfigError(f"{name}={value!r} is not a finite number: set it to {kind} such as {default}.")
    if number < minimum:
        raise ConfigError(f"{name}={value!r} is too small: it must be at least {minimum}.")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name}={value!r} is too large: it must be at most {maximum}.")
    return number


def _flag(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name)
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"", "0", "false", "no", "off"}:
        return False
    # "maybe" or "ture" was read as false without a word, which for a safety switch hides a typo until it matters
    raise ConfigError(f"{name}={value!r} is neither true nor false: set it to true or false (or 1/0, yes/no, on/off).")


def _database_url(raw: Mapping[str, Any], data_dir: Path) -> str:
    url = str(raw.get("DATABASE_URL") or "").strip()
    if not url:
        return f"sqlite:///{data_dir / 'pica_dashboard.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL: use e.g. sqlite:///data/pica.db or "
            "postgresql+psycopg://user@host:5432/dbname."
        ) from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"DATABASE_URL uses {parsed.get_backend_name()!r}: only sqlite and postgresql are supported."
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each connection of the pool (one per thread: every browser session, the sync's writer) would get its
        # own empty database.
        raise ConfigError("DATABASE_URL names an in-memory SQLite database, which the dashboard's threads cannot "
                          "share: name a file (sqlite:///data/pica.db), or leave DATABASE_URL unset for the default.")
    if parsed.drivername not in _INSTALLED_DRIVERS:  # psycopg2's was a traceback (ModuleNotFoundError) on every page
        raise ConfigError(f"DATABASE_URL names the driver {parsed.drivername!r}, which the dashboard does not install: "
                          "use postgresql+psycopg:// (or postgresql://) or sqlite:///.")
    if parsed.drivername == "postgresql":
        # psycopg 3 is what requirements.txt installs; psycopg2 is not.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


_INSTALLED_DRIVERS = {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"}


def _role_map(raw: Mapping[str, Any]) -> dict[str, str]:
    """ROLE_MAP like "ops-admins=admin,support=viewer" (or a TOML table)."""
    value = raw.get("ROLE_MAP") or {}
    if isinstance(value, Mapping):
        pairs = value.items()
    else:
        pairs = []
        for item in str(value).split(","):
            if item.strip():
                if "=" not in item:
                    raise ConfigError(f"ROLE_MAP entry {item.strip()!r} needs the form group=role.")
                group, role = item.split("=", 1)
                pairs.append((group, role))
    roles = {"viewer", "operator", "engineer", "admin"}
    result = {}
    for group, role in pairs:
        role = str(role).strip().lower()
        if role not in roles:
            raise ConfigError(f"ROLE_MAP maps {group!r} to {role!r}: roles are {', '.join(sorted(roles))}.")
        result[str(group).strip()] = role
    return result


def _no_secret_in(url: str, name: str) -> None:
    """Refuse, without quoting it, a URL holding a user name, a password or a query: the dashboard shows and records
    Pica's URL (Overview, Settings, "Could not reach Pica at …" in a sync's error), and Pica takes the key in a
    header (PICA_SECRET_KEY), not in its URL."""
    if "@" in url or "?" in url or "#" in url:  # anywhere: a malformed one ("host:pw@…" with no scheme) was quoted
        raise ConfigError(f"{name} holds a user name, a password or a query, which the dashboard would show on its "
                          "pages and in its records: name the host alone (Pica takes the key as PICA_SECRET_KEY).")


def _http_url(url: str) -> bool:
    """Whether `url` is an http(s) URL that can be called: with a host and, if any, a port that exists (port 99999
    or an unclosed [ passed a prefix check, then failed every call with a traceback)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def load_settings(
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, Any] | None = None,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
) -> Settings:
    """Build settings; raise ConfigError with one line saying what to fix."""
    env = os.environ if env is None else env
    if secrets is None:
        # PICA_SECRETS_FILE points elsewhere (the tests point it at nothing).
        secrets = read_secrets_file(Path(env.get("PICA_SECRETS_FILE") or DEFAULT_SECRETS_PATH))
    raw: dict[str, Any] = {k: v for k, v in secrets.items() if not isinstance(v, Mapping) or k == "ROLE_MAP"}
    raw.update({k: v for k, v in env.items() if v != ""})

    key = str(raw.get("PICA_SECRET_KEY") or "").strip()
    if key and not key.startswith(KEY_PREFIXES):
        raise ConfigError(
            "PICA_SECRET_KEY must start with sk_test_ or sk_live_: copy the key from Pica's dashboard "
            "(Settings → API keys), or unset it to use the sandbox."
        )
    if key and not _KEY_CHARACTERS.fullmatch(key):  # the message never quotes the key
        raise ConfigError(
            "PICA_SECRET_KEY holds a space, a line break or a character beyond ASCII, which no Pica key has: copy "
            "the key again from Pica's dashboard (Settings → API keys)."
        )
    api_url = str(raw.get("PICA_API_URL") or "").strip().rstrip("/") or None
    authkit_url = str(raw.get("PICA_AUTHKIT_URL") or "").strip() or None
    if api_url:
        _no_secret_in(api_url, "PICA_API_URL")
    if api_url and not _http_url(api_url):  # the server calls it: no page to be relative to
        raise ConfigError(f"PICA_API_URL={api_url!r} must be an http(s) URL with a host (and a port from 1 to "
                          f"65535, if any), such as {LIVE_API_URL}.")
    if api_url and urlsplit(api_url).path.rstrip("/") == "/v1":  # every call went to /v1/v1/…: 404s, "check the id"
        # (a gateway's /pica/v1 may well strip its prefix)
        raise ConfigError(f"PICA_API_URL={api_url!r} ends in /v1, which the dashboard adds to every call itself: "
                          f"name the host alone, such as {LIVE_API_URL}.")
    if authkit_url:
        _no_secret_in(authkit_url, "PICA_AUTHKIT_URL")  # the browser loads it
    if authkit_url and not (authkit_url.startswith("/") or _http_url(authkit_url)):
        raise ConfigError(f"PICA_AUTHKIT_URL={authkit_url!r} must be an http(s) URL with a host (and a port from 1 "
                          "to 65535, if any), or a path on this dashboard.")
    if key:
        api_url = api_url or LIVE_API_URL
        authkit_url = authkit_url or LIVE_AUTHKIT_URL
    elif api_url and not authkit_url:
        authkit_url = f"{api_url}/authkit"  # a standalone sandbox serves its page beside its API

    grant = str(raw.get("AUTHKIT_GRANT_SECRET") or "").strip()
    if grant and len(grant) < MIN_GRANT_SECRET_LENGTH:  # the message never quotes it
        raise ConfigError(f"AUTHKIT_GRANT_SECRET is {len(grant)} characters long: use at least "
                          f"{MIN_GRANT_SECRET_LENGTH} random ones (python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'), or unset it for a random one per process.")
    origin = str(raw.get("AUTHKIT_ALLOWED_ORIGIN") or "*").strip()
    if not _ORIGIN.fullmatch(origin):
        raise ConfigError(f"AUTHKIT_ALLOWED_ORIGIN={origin!r} must be * or one origin, scheme and host with no "
                          "path or trailing slash, such as https://authkit.picaos.com.")
    return Settings(
        secret_key=Secret(key) if key else None,
        api_url=api_url,
        authkit_url=authkit_url,
        database_url=_database_url(raw, data_dir),
        timeout_seconds=_number(raw, "PICA_TIMEOUT_SECONDS", 15.0, minimum=0.1),
        connect_timeout_seconds=_number(raw, "PICA_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.1),
        max_retries=_number(raw, "PICA_MAX_RETRIES", 3, integer=True),
        retry_deadline_seconds=_number(raw, "PICA_RETRY_DEADLINE_SECONDS", 30.0, minimum=0.1),
        page_size=_number(raw, "PICA_PAGE_SIZE", 300, integer=True, minimum=1, maximum=MAX_PAGE_SIZE),
        max_concurrency=_number(raw, "PICA_MAX_CONCURRENCY", 4, integer=True, minimum=1),
        catalog_ttl_seconds=_number(raw, "CATALOG_CACHE_TTL", 600, integer=True),
        connections_ttl_seconds=_number(raw, "CONNECTIONS_CACHE_TTL", 60, integer=True),
        authkit_allowed_origin=origin,
        grant_secret=Secret(grant) if grant else None,
        grant_ttl_seconds=_number(raw, "AUTHKIT_GRANT_TTL_SECONDS", 300, integer=True, minimum=10,
                                  maximum=MAX_GRANT_TTL_SECONDS),
        allow_live_writes=_flag(raw, "ALLOW_LIVE_WRITES"),
        history_body_limit=_number(raw, "HISTORY_BODY_LIMIT", 16_384, integer=True, minimum=256),
        display_body_limit=_number(raw, "DISPLAY_BODY_LIMIT", 200_000, integer=True, minimum=1024),
        roles_claim=str(raw.get("ROLES_CLAIM") or "groups").strip(),
        role_map=_role_map(raw),
        ignored=_ignored(env, secrets),
    )
