"""The effective configuration as a table for admins: values with secrets masked, and where each came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import Settings

# (setting name, Settings attribute, is secret)
SHOWN = (
    ("PICA_SECRET_KEY", "secret_key", True),
    ("PICA_API_URL", "api_url", False),
    ("PICA_AUTHKIT_URL", "authkit_url", False),
    ("DATABASE_URL", "database_url", True),
    ("PICA_TIMEOUT_SECONDS", "timeout_seconds", False),
    ("PICA_CONNECT_TIMEOUT_SECONDS", "connect_timeout_seconds", False),
    ("PICA_MAX_RETRIES", "max_retries", False),
    ("PICA_RETRY_DEADLINE_SECONDS", "retry_deadline_seconds", False),
    ("PICA_PAGE_SIZE", "page_size", False),
    ("PICA_MAX_CONCURRENCY", "max_concurrency", False),
    ("CATALOG_CACHE_TTL", "catalog_ttl_seconds", False),
    ("CONNECTIONS_CACHE_TTL", "connections_ttl_seconds", False),
    ("AUTHKIT_ALLOWED_ORIGIN", "authkit_allowed_origin", False),
    ("AUTHKIT_GRANT_SECRET", "grant_secret", True),
    ("AUTHKIT_GRANT_TTL_SECONDS", "grant_ttl_seconds", False),
    ("ALLOW_LIVE_WRITES", "allow_live_writes", False),
    ("HISTORY_BODY_LIMIT", "history_body_limit", False),
    ("DISPLAY_BODY_LIMIT", "display_body_limit", False),
    ("ROLES_CLAIM", "roles_claim", False),
    ("ROLE_MAP", "role_map", False),
)


def mask(name: str, value: Any) -> str:
    """Enough to recognise a value, never enough to use it."""
    if value in (None, "", {}):
        return "(not set)"
    text = value.reveal() if hasattr(value, "reveal") else str(value)
    if name == "DATABASE_URL":
        from sqlalchemy.engine import make_url

        return make_url(text).render_as_string(hide_password=True)
    if name == "PICA_SECRET_KEY":
        return f"{text[:8]}…{text[-2:]} (set)" if len(text) > 14 else f"{text[:8]}… (set)"
    return "(set)"


def configuration_rows(settings: Settings, env: Mapping[str, str], secrets_file: Mapping[str, Any]) -> list[dict]:
    rows = []
    for name, attribute, secret in SHOWN:
        value = getattr(settings, attribute)
        source = "environment" if env.get(name) else "secrets.toml" if name in secrets_file else "default"
        if name in ("PICA_API_URL", "PICA_AUTHKIT_URL") and source == "default" and value:
            source = "sandbox mount" if settings.sandbox else "default"
        shown = mask(name, value) if secret else ("(not set)" if value in (None, "", {}) else str(value))
        rows.append({"setting": name, "value": shown, "source": source})
    return rows
