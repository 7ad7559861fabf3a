"""Roles and principals: pure logic."""

from __future__ import annotations

import pytest

from pica_core.access import LIVE_READ_ONLY, Principal, principal_for, role_from_claims

MAP = {"support": "viewer", "ops": "operator", "devs": "engineer", "admins": "admin", "boss@acme.io": "admin"}


@pytest.mark.parametrize("claims, role", [
    ({"groups": ["support"]}, "viewer"), ({"groups": ["support", "devs"]}, "engineer"), ({"groups": "ops, x"}, "operator"),
    ({"groups": []}, "viewer"), ({}, "viewer"), ({"email": "boss@acme.io"}, "admin"), ({"groups": 42}, "viewer"),
])
def test_role_from_claims_takes_the_highest_mapped_role(claims, role):
    assert role_from_claims(claims, "groups", MAP) == role


def test_permissions_are_cumulative_with_reasons():
    operator = Principal("o", "operator", True)
    assert operator.can("edit_tags") and operator.can("connect") and not operator.can("console")
    assert operator.why_not("delete") == "Needs the admin role (you are operator)."
    assert operator.sees("connect") and not operator.sees("console") and not operator.sees("audit")


def test_principal_modes():
    kwargs = dict(claim="groups", role_map=MAP)
    assert principal_for(auth_configured=True, claims={"is_logged_in": False}, sandbox=True, allow_live_writes=False,
                         **kwargs) is None
    signed = principal_for(auth_configured=True, claims={"is_logged_in": True, "email": "a@b.c", "groups": ["ops"]},
                           sandbox=False, allow_live_writes=False, **kwargs)
    assert (signed.name, signed.role, signed.signed_in) == ("a@b.c", "operator", True)
    sandbox = principal_for(auth_configured=False, claims=None, sandbox=True, allow_live_writes=False, **kwargs)
    assert sandbox.role == "admin" and sandbox.can("delete")
    live = principal_for(auth_configured=False, claims=None, sandbox=False, allow_live_writes=False, **kwargs)
    assert live.sees("console") and not live.can("delete") and live.why_not("edit_tags") == LIVE_READ_ONLY
    assert live.can("console") and not live.can("console_write")
    allowed = principal_for(auth_configured=False, claims=None, sandbox=False, allow_live_writes=True, **kwargs)
    assert allowed.can("delete")
