"""Typed Pica API objects (see docs/pica-api.md in the team's shared docs).

Attributes are snake_case; the wire names are camelCase. Unknown fields are
ignored so that Pica can add fields without breaking the dashboard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Required

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict  # pydantic needs this one's TypedDict before Python 3.12

from .config import PASSTHROUGH_HEADER_PREFIX

STATES = ("operational", "degraded", "failed", "unknown")
IDENTITY_TYPES = ("user", "team", "organization", "project")
CONNECTOR_STATUSES = ("generally_available", "beta", "alpha", "not_available")

State = Literal["operational", "degraded", "failed", "unknown"]


class PicaModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The object as Pica sends it (camelCase)."""
        return self.model_dump(by_alias=True, mode="json")


class Connector(PicaModel):
    id: int | None = None
    name: str
    key: str = ""
    platform: str
    platform_version: str | None = None
    status: str = "generally_available"
    description: str | None = None
    category: str | None = None
    image: str | None = None
    tags: list[str] = Field(default_factory=list)
    oauth: bool = False
    tools: int = 0
    version: str | None = None
    active: bool = True


class Connection(PicaModel):
    id: str
    key: str
    platform: str
    environment: str = "test"
    identity: str | None = None
    identity_type: str | None = None
    state: str = "unknown"
    name: str | None = None
    type: str | None = None
    platform_version: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    active: bool = True
    created_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _environment_of_key(cls, data: Any) -> Any:
        """Left out by Pica, the environment is the key's (`live::…`), not the default: a live connection filed as
        a test one was missing from the live fleet. The store's SQL reads a sync's rows the same way."""
        if isinstance(data, dict) and data.get("environment") is None and isinstance(data.get("key"), str):
            environment = data["key"][:6]
            if environment in ("live::", "test::"):
                data = {**data, "environment": environment[:4]}
        return data


class ConnectionRow(TypedDict, total=False):
    """A connection as the store keeps it, in Pica's wire names: what a fleet sync parses from each page.

    Validated like `Connection` (types, required keys) but only these fields, into a plain dict: about half
    the CPU of building models for 50,000 rows. Absent keys take `Connection`'s defaults (`row_defaults`).
    """

    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    id: Required[str]
    key: Required[str]
    platform: Required[str]
    environment: str
    identity: str | None
    identityType: str | None
    state: str
    tags: list[str]
    active: bool
    createdAt: datetime | None


def connection_row(c: Connection) -> ConnectionRow:
    return ConnectionRow(id=c.id, key=c.key, platform=c.platform, environment=c.environment, identity=c.identity,
                         identityType=c.identity_type, state=c.state, tags=list(c.tags), active=c.active,
                         createdAt=_utc(c.created_at))


def _utc(value: datetime | None) -> datetime | None:
    """In UTC: JSON keeps an offset's hours and minutes only (a historical zone can have seconds)."""
    return value.astimezone(UTC) if value is not None and value.tzinfo else value


def row_defaults() -> dict[str, Any]:
    """`Connection`'s defaults for the optional fields of a ConnectionRow (one source of truth)."""
    fields = Connection.model_fields
    return {"environment": fields["environment"].default, "identity": None, "identityType": None,
            "state": fields["state"].default, "tags": [], "active": fields["active"].default, "createdAt": None}


class Action(PicaModel):
    """A row of GET /v1/available-actions/{platform}: no action id (Pica does not send one)."""

    title: str
    key: str | None = None
    model_name: str | None = None
    method: str | None = None
    platform: str | None = None


class ActionHit(PicaModel):
    """A row of GET /v1/available-actions/search/{platform}: carries the action id and path."""

    system_id: str
    title: str
    key: str | None = None
    method: str = "GET"
    path: str = ""
    tags: list[str] = Field(default_factory=list)
    knowledge: str | None = None


class Knowledge(PicaModel):
    id: str = Field(alias="_id")
    connection_platform: str | None = None
    title: str | None = None
    path: str | None = None
    knowledge: str | None = None
    method: str | None = None
    base_url: str | None = None
    tags: list[str] = Field(default_factory=list)
    active: bool = True


class UserFlags(PicaModel):
    access_list: list[str] = Field(default_factory=list)
    authkit_whitelist: bool = False
    early_access: list[str] = Field(default_factory=list)
    completed_quickstart: bool = False


class AuthKitIntegration(PicaModel):
    id: int | str
    connection_def_id: int | str | None = None
    type: str
    title: str
    image: str | None = None
    environment: str | None = None
    active: bool = True
    tags: list[str] = Field(default_factory=list)


@dataclass
class PassthroughResponse:
    """What came back from /v1/passthrough: the upstream status and body, verbatim."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float
    url: str = ""
    request_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    waits: list[tuple[float, str]] = field(default_factory=list)  # (seconds, why) before each try again

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def passthrough_headers(self) -> dict[str, str]:
        """The upstream's own headers, which Pica re-emits as x-pica-passthrough-<name>."""
        prefix = PASSTHROUGH_HEADER_PREFIX
        return {k[len(prefix):]: v for k, v in self.headers.items() if k.lower().startswith(prefix)}

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300
