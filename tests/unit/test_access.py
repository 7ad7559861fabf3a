"""Roles and principals: pure logic."""

from __future__ import annotations

import pytest

from pica_core.access import LIVE_READ_ONLY, NO_ROLE, Principal, principal_for, role_from_claims

MAP = {"support": "viewer", "ops": "operator", "devs": "engineer", "admins": "admin", "boss@acme.io": "admin"}


@pytest.mark.parametrize("claims, role", [
    ({"groups": ["support"]}, "viewer"), ({"groups": ["support", "devs"]}, "engineer"), ({"groups": "ops, x"}, "operator"),
    ({"email": "boss@acme.io"}, "admin"), ({"email": "Boss@ACME.io"}, "admin"),  # as mail systems read it
    ({"email": "boss@acme.io", "email_verified": True}, "admin"),
])
def test_role_from_claims_takes_the_highest_mapped_role(claims, role):
    assert role_from_claims(claims, "groups", MAP) == role


@pytest.mark.parametrize("claims", [
    {"groups": []}, {}, {"groups": 42}, {"groups": ["strangers"], "email": "someone@gmail.com"},
    {"email": "boss@acme.io", "email_verified": False},  # anyone could have typed it
    {"email": "boss@acme.io", "email_verified": "false"},
])
def test_a_user_mapped_to_nothing_has_no_role(claims):
    """Any account the identity provider vouches for (any Google account) was a viewer of every customer's data."""
    assert role_from_claims(claims, "groups", MAP) == NO_ROLE
    nobody = Principal("someone", NO_ROLE, True)
    assert not any(nobody.sees(page) for page in ("overview", "connections", "fleet", "catalog"))
    assert nobody.why_not("view") == "Needs the viewer role (you are no role)."


def test_everyone_signed_in_gets_the_role_mapped_to_star():
    assert role_from_claims({"groups": ["strangers"]}, "groups", {**MAP, "*": "viewer"}) == "viewer"
    assert role_from_claims({"groups": ["devs"]}, "groups", {**MAP, "*": "viewer"}) == "engineer"


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
