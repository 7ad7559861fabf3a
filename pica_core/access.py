"""Who may see and do what: roles, permissions and the principal of a session.

Roles are cumulative: viewer < operator < engineer < admin. A signed-in user none of whose groups (nor email)
ROLE_MAP maps has no role and sees nothing: an identity provider may vouch for anyone (any Google account), and
the dashboard shows every customer's identities. `*=viewer` in ROLE_MAP gives every signed-in user a role.
- viewer: catalog, connections, fleet health (read only)
- operator: + connect, edit tags, reconnect
- engineer: + the passthrough console
- admin: + delete connections, the audit log, settings
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping

ROLES = ("viewer", "operator", "engineer", "admin")
NO_ROLE = "no role"  # signed in, mapped to nothing: below every role
EVERYONE = "*"  # the ROLE_MAP entry for every signed-in user

# The least role that may take each action.
ACTIONS = {
    "view": "viewer",
    "sync": "viewer",  # reads Pica, writes only the dashboard's own database
    "connect": "operator",
    "edit_tags": "operator",
    "reconnect": "operator",
    "console": "engineer",
    "console_write": "engineer",
    "delete": "admin",
    "audit": "admin",
    "settings": "admin",
}

# The least role that sees each page in its navigation.
PAGES = {
    "overview": "viewer",
    "connections": "viewer",
    "fleet": "viewer",
    "catalog": "viewer",
    "connect": "operator",
    "console": "engineer",
    "audit": "admin",
    "settings": "admin",
}

WRITE_ACTIONS = {"connect", "edit_tags", "reconnect", "console_write", "delete", "settings"}


def rank(role: str) -> int:
    return -1 if role == NO_ROLE else ROLES.index(role)


@dataclass(frozen=True)
class Principal:
    name: str  # what the audit log records
    role: str
    signed_in: bool
    read_only_reason: str | None = None  # set when writes are refused whatever the role
    # Who they are to the dashboard's own state across sessions (their last triage): unique, unlike a name or an
    # unverified email. The identity provider's issuer and subject; sandbox mode's one local admin; None for
    # visitors who share a name and may be anyone.
    account: str | None = None

    def can(self, action: str) -> bool:
        return self.why_not(action) is None

    def why_not(self, action: str) -> str | None:
        """None when allowed, else the reason to show beside the disabled control."""
        if action in WRITE_ACTIONS and self.read_only_reason:
            return self.read_only_reason
        needed = ACTIONS[action]
        if rank(self.role) < rank(needed):
            return f"Needs the {needed} role (you are {self.role})."
        return None

    def sees(self, page: str) -> bool:
        return rank(self.role) >= rank(PAGES[page])


def role_from_claims(claims: Mapping[str, Any], claim: str, role_map: Mapping[str, str]) -> str:
    """The highest role any of the user's groups (the configured claim), their email or `*` maps to; NO_ROLE if
    none does."""
    value = claims.get(claim)
    groups: Iterable[str]
    if isinstance(value, str):
        groups = [g.strip() for g in value.replace(";", ",").split(",")]
    elif isinstance(value, (list, tuple, set)):
        groups = [str(g) for g in value]
    else:
        groups = []
    roles = [role_map[g] for g in groups if g in role_map]
    if EVERYONE in role_map:
        roles.append(role_map[EVERYONE])
    # An email can be mapped directly too (handy for a first admin): in any case, as mail systems read it, and
    # not when the identity provider says it has not verified it (anyone could have typed it).
    email = claims.get("email")
    if isinstance(email, str) and str(claims.get("email_verified")).lower() != "false":
        emails = {name.lower(): role for name, role in role_map.items() if "@" in name}
        if email.lower() in emails:
            roles.append(emails[email.lower()])
    return max(roles, key=rank) if roles else NO_ROLE


LIVE_READ_ONLY = ("Live mode without sign-in is read-only: configure [auth] in secrets.toml, "
                  "or set ALLOW_LIVE_WRITES=true to allow writes without sign-in.")


def principal_for(*, auth_configured: bool, claims: Mapping[str, Any] | None, sandbox: bool, allow_live_writes: bool,
                  claim: str, role_map: Mapping[str, str]) -> Principal | None:
    """The session's principal, or None when sign-in is configured but the user has not signed in."""
    if auth_configured:
        if not claims or not claims.get("is_logged_in"):
            return None
        name = str(claims.get("email") or claims.get("name") or claims.get("sub") or "signed-in user")
        account = f"{claims.get('iss') or ''}|{claims['sub']}" if claims.get("sub") else None
        return Principal(name, role_from_claims(claims, claim, role_map), True, account=account)
    if sandbox:
        return Principal("local-admin", "admin", False, account="local-admin")
    if allow_live_writes:  # everyone who reaches it is this one name: no state of theirs is shared across sessions
        return Principal("local-admin", "admin", False)
    # Everything visible, nothing writable: reads stay useful, writes need a named person.
    return Principal("anonymous", "admin", False, read_only_reason=LIVE_READ_ONLY)
