"""The effective configuration as a table for admins: values with secrets masked, and where each came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import SETTING_FIELDS, Settings

_SECRET = {"PICA_SECRET_KEY", "DATABASE_URL", "AUTHKIT_GRANT_SECRET"}  # masked (a URL's password)
# (setting name, Settings attribute, is secret)
SHOWN = tuple((name, attribute, name in _SECRET) for name, attribute in SETTING_FIELDS.items())


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
