"""Connecting an account through AuthKit: choosing the integration, and trusting a success only after Pica confirms it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError, PicaError
from .console import identity_of_key, platform_of_key
from .models import Connection, Connector
from .store import Store


def resolve_connector(value: str | None, connectors: Sequence[Connector]) -> Connector | None:
    """The connector named by a platform id ("google-calendar") or a display name ("Google Calendar").

    AuthKit's `selectedConnection` takes the display name; passing the id opens the list instead
    of the integration, the seed guide's most common mistake. Unknown → InvalidInputError.
    """
    wanted = (value or "").strip()
    if not wanted:
        return None
    lowered = wanted.lower()
    for connector in connectors:
        if connector.platform == lowered or connector.name.lower() == lowered:
            return connector
    raise InvalidInputError(f"No connector called {wanted!r} in the catalog.",
                            hint="Pick one from the list (names like 'Gmail' or ids like 'google-calendar').")


def record_key(record: Any) -> str | None:
    """The connection key in a LINK_SUCCESS payload (`key`, or `connectionKey` as one docs page has it)."""
    if not isinstance(record, Mapping):
        return None
    key = record.get("key") or record.get("connectionKey")
    return key if isinstance(key, str) and key else None


@dataclass
class ConnectOutcome:
    ok: bool
    message: str
    connection: Connection | None = None
    note: str | None = None  # what else the person should know (a reconnect that made a new connection)
    key: str | None = None  # the key the widget reported
    unconfirmed: bool = False  # Pica could not be asked: the connection may exist; confirming again is the retry


def identity_as_in_key(identity: str) -> str:
    """An identity as Pica writes it into a connection key (spaces and colons become dashes). The sandbox writes
    keys with its own copy (`sandbox.seed.key_identity`): each side of the contract keeps its own, so that a test of
    one against the other can fail."""
    return identity.replace(" ", "-").replace(":", "-")


def reconnect_applies(reconnect_key: str | None, identity: str, platform: str | None = None) -> bool:
    """Whether a reconnect of `reconnect_key` is one for `identity` and, once known, connector `platform`: a
    link's key with another identity typed in, or another connector chosen, is a new connection, and the old
    one stays as it was."""
    return (bool(reconnect_key) and identity_of_key(reconnect_key) == identity_as_in_key(identity.strip())
            and platform in (None, platform_of_key(reconnect_key)))


def confirm_and_store(client, store: Store, record: Any, *, identity: str, identity_type: str | None, actor: str,
                      reconnect_key: str | None = None, session: str | None = None) -> ConnectOutcome:
    """Treat the widget's success as a hint: confirm it with Pica, then store and audit it. `session` (the
    widget's nonce) makes each audit once per widget session (`_audit_once`)."""
    if not reconnect_applies(reconnect_key, identity):
        reconnect_key = None
    action = "reconnect" if reconnect_key else "connect"
    key = record_key(record)
    who = {"identity": identity, "identity_type": identity_type}
    if key is None:
        store.audit(actor=actor, action=action, target=identity, outcome="error", reason="no key in LINK_SUCCESS", **who)
        return ConnectOutcome(False, "The widget reported a success without a connection key; nothing was stored.")
    try:
        connection = client.connection_by_key(key, identity=identity)
    except InvalidInputError as exc:
        _audit_once(store, session, actor=actor, action=action, target=key, outcome="error", error=str(exc), **who)
        return ConnectOutcome(False, f"The widget reported a connection key the dashboard cannot ask Pica about: "
                                     f"{str(exc).rstrip('.')}. {exc.hint}", key=key)
    except PicaError as exc:
        _audit_once(store, session, actor=actor, action=action, target=key, outcome="error", error=str(exc), **who)
        return ConnectOutcome(False, f"Could not confirm the new connection with Pica: {exc}. AuthKit may well have "
                                     "made it: confirm it again once Pica answers, rather than opening AuthKit again, "
                                     "which would make a second one.", key=key, unconfirmed=True)
    if connection is None:
        store.audit(actor=actor, action=action, target=key, outcome="refused", reason="unknown to Pica", session=session,
                    **who)
        return ConnectOutcome(False, "Pica does not know the connection the widget reported; nothing was stored.")
    if connection.identity != identity:
        store.audit(actor=actor, action=action, target=key, outcome="refused", reason="identity mismatch",
                    expected=identity, actual=connection.identity, session=session, identity_type=identity_type)
        return ConnectOutcome(False, f"The reported connection belongs to {connection.identity!r}, not {identity!r}; "
                                     "nothing was stored.")
    if identity_type and connection.identity_type and connection.identity_type != identity_type:
        # Identity type is part of the identity: a team's connection is not the user's of the same name.
        store.audit(actor=actor, action=action, target=key, outcome="refused", reason="identity type mismatch",
                    expected=identity_type, actual=connection.identity_type, session=session, identity=identity)
        return ConnectOutcome(False, f"The reported connection belongs to {identity!r} as a {connection.identity_type}, "
                                     f"not as a {identity_type}, so the dashboard did not store it: choose "
                                     f"{connection.identity_type} as the identity type and open AuthKit again (Pica "
                                     "may have changed that connection already: Connections shows what it has).")
    if reconnect_key and not reconnect_applies(reconnect_key, identity, connection.platform):
        action, reconnect_key = "connect", None  # another connector chosen in the widget: a connection beside it
    note = None
    if reconnect_key and reconnect_key != key:
        note = _still_there(client, reconnect_key, identity)
    store.upsert_connections([connection], source="connect")
    _audit_once(store, session, actor=actor, action=action, target=key, outcome="ok", platform=connection.platform,
                identity=identity, identity_type=connection.identity_type or identity_type,
                **({"replaced": reconnect_key} if reconnect_key == key else
                   {"new_connection_instead_of": reconnect_key} if reconnect_key else {}))
    return ConnectOutcome(True, f"{connection.platform} is connected for {identity}.", connection, note, key)


def _audit_once(store: Store, session: str | None, *, action: str, target: str, outcome: str, **detail: Any) -> None:
    """Audit, once per widget session and outcome: a rerun that came while a confirmation was under way (Done
    clicked with Pica slow or failing) confirms the same success again."""
    if session and any(event.detail.get("session") == session for event in
                       store.audit_events(action=action, target=target, outcome=outcome, limit=20)):
        return
    store.audit(action=action, target=target, outcome=outcome, **detail, **({"session": session} if session else {}))


def _still_there(client, old_key: str, identity: str) -> str:
    """A reconnect whose widget reported another key made a new connection: say so, and what became of the old."""
    try:
        old = client.connection_by_key(old_key, identity=identity)
    except (PicaError, InvalidInputError):
        old = None
        state = "Pica could not say what became of the old one"
    else:
        # Not "gone": Pica lists it by key within this identity, and another identity's key can look the same
        # (rev bob, jr and rev-bob,-jr write one key).
        state = f"the old one is still there ({old.state})" if old else f"Pica no longer lists the old one for {identity}"
    todo = " Delete the old one once the new one works." if old else ""
    return f"AuthKit made a new connection rather than repairing {old_key}: {state}.{todo}"
