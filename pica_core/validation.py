"""Checks on user input, run before any request is sent."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from .config import ACTION_HEADER, CONNECTION_HEADER, SECRET_HEADER
from .errors import InvalidInputError
from .models import IDENTITY_TYPES
from .text import BIDI_CONTROLS

MAX_IDENTITY = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (NEL: U+0085) and Unicode's line breaks
_KEY = re.compile(r"^(test|live)::[a-z0-9][a-z0-9-]*::[A-Za-z0-9_-]+::[0-9a-f]{32}(\|.+)?$")


# Invisible characters a paste from a document or chat brings along, which make a value differ from the one it
# looks like: direction overrides and isolates, zero-width space, word joiner and invisible operators, byte order
# mark, soft hyphen; and direction marks at either end (chat apps and right-to-left sheets add them). Not the
# joiners and marks that written languages and emoji need inside a value (U+200C, U+200D, U+200E, U+200F, U+061C,
# the emoji tag characters).
_INVISIBLE = re.compile(f"[{BIDI_CONTROLS}\u200b\u2060-\u2064\ufeff\u00ad]|^[\u200e\u200f\u061c]|[\u200e\u200f\u061c]$")
_INVISIBLE_NAMES = {"\ufeff": "byte order mark"}  # Unicode names it "zero width no-break space"


def invisible_character(value: str) -> str | None:
    """The first such invisible character in the value, or None."""
    found = _INVISIBLE.search(value)
    return found.group() if found else None


def has_control(value: str) -> bool:
    """Control characters, or invisible formatting characters, anywhere in the value."""
    return bool(_CONTROL.search(value)) or invisible_character(value) is not None


def _invisible_error(what: str, value: str) -> InvalidInputError | None:
    """`what` ("That identity") holds an invisible character: which, and where, since the value looks fine."""
    found = _INVISIBLE.search(value)
    if found is None:
        return None
    ch, before = found.group(), value[:found.start()]
    where = f"after “{before[-20:]}”" if before else "at the start"
    name = _INVISIBLE_NAMES.get(ch) or unicodedata.name(ch, "unnamed").lower()
    return InvalidInputError(f"{what} contains an invisible character, U+{ord(ch):04X} ({name}), {where}.",
                             hint="Type it again rather than copying it from a document or chat.")


def identity(value: str) -> str:
    """An end user's identity as Pica takes it: at most 128 characters, no control characters."""
    value = value.strip()
    if not value:
        raise InvalidInputError("Enter an identity (the id your app gave the end user, team, organization or project).")
    if len(value) > MAX_IDENTITY:
        raise InvalidInputError(
            f"That identity is {len(value)} characters long; Pica identities are at most {MAX_IDENTITY}.",
            hint="Check that you pasted only the identity, not a whole log line.",
        )
    if _CONTROL.search(value):
        raise InvalidInputError(
            "That identity contains control characters (a line break or tab?).",
            hint="Paste the identity alone, on one line.",
        )
    if error := _invisible_error("That identity", value):
        raise error
    return value


_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


def platform_id(value: str) -> str:
    """A platform id as Pica writes it (gmail, google-drive): lower case, digits and dashes."""
    value = value.strip().lower()
    if not _PLATFORM.match(value):
        raise InvalidInputError(f"“{value[:40]}{'…' if len(value) > 40 else ''}” is not a platform id: ids look like "
                                "gmail, google-drive or hubspot.", hint="The Catalog page lists every platform's id.")
    return value


MAX_TAG, MAX_TAGS = 64, 50


def tags(values: list[str], *, existing: Sequence[str] = ()) -> list[str]:
    """Tags as Pica keeps them: each once, non-empty, at most 64 characters, at most 50; no commas (Pica filters
    connections by tags as a comma-separated list, so a tag holding one could never be found by it). Tags in
    `existing` (the connection's at Pica) pass as they are: Pica took them, from another client, and refusing them
    refused every later change to the connection's tags."""
    kept = list(dict.fromkeys(v.strip() for v in values if v and v.strip()))
    had = {tag.strip() for tag in existing}
    problems = []  # every one at once: fixing them one save at a time is slow
    for tag in (tag for tag in kept if tag not in had):
        if len(tag) > MAX_TAG:
            problems.append(f"The tag “{tag[:24]}…” is {len(tag)} characters long; tags are at most {MAX_TAG}.")
        if "," in tag:
            problems.append(f"The tag “{tag}” holds a comma: Pica reads commas between tags when it filters.")
        if has_control(tag):
            problems.append("A tag contains control characters (a line break or tab?).")
    if len(kept) > max(MAX_TAGS, len(had)):
        problems.append(f"That is {len(kept)} tags; a connection carries at most {MAX_TAGS}.")
    if problems:
        raise InvalidInputError(" ".join(dict.fromkeys(problems)),
                                hint="Split a tag holding a comma into two, or use another character."
                                if any("comma" in p for p in problems) else None)
    return kept


def identity_type(value: str | None) -> str | None:
    if value in (None, "", "any"):
        return None
    if value not in IDENTITY_TYPES:
        raise InvalidInputError(f"Identity type must be one of {', '.join(IDENTITY_TYPES)} (or any).")
    return value


def linked_identity_type(value: str | None) -> str:
    """The identity type a link names, in any letter case (`Team`); "" when it names none of Pica's."""
    value = (value or "").strip().lower()
    return value if value in IDENTITY_TYPES else ""


def connection_key(value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidInputError("Enter a connection key, e.g. test::gmail::default::<32 hex>|<identity>.")
    if error := _invisible_error("That connection key", value):
        raise error
    if has_control(value):
        raise InvalidInputError("That connection key contains control characters (a line break or a tab, say): "
                                "paste the key alone.")
    if len(value) > 400:
        raise InvalidInputError(f"That connection key is {len(value):,} characters long: keys are at most 400.")
    if not _KEY.match(value):
        raise InvalidInputError(
            "That does not look like a Pica connection key.",
            hint="Keys look like test::gmail::default::<32 hex characters>|<identity>.",
        )
    return value


def key_environment(key: str) -> str:
    return key.split("::", 1)[0]


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ACTION_ID = re.compile(r"^[A-Za-z0-9_:.\-]{3,200}$")
# Headers the dashboard sets itself, or that would let a request impersonate another account.
RESERVED_HEADERS = (SECRET_HEADER, CONNECTION_HEADER, ACTION_HEADER, "host", "content-length",
                    # the HTTP client frames the message and owns the connection: two framings in one request are
                    # how requests are smuggled past proxies
                    "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect",
                    "proxy-authorization", "proxy-connection")


MAX_PATH = 1_999  # "/" + the path fits PassthroughCallRecord.path (2,000)


def passthrough_path(path: str) -> str:
    """The action path after /v1/passthrough/, with its variables filled: no traversal, no control characters."""
    path = path.strip()
    decoded = _decoded(path)  # decoding keeps what is written plainly: one check covers both
    if has_control(decoded):
        raise InvalidInputError("The path contains control characters (CR, LF, tab or NUL) or invisible ones, written "
                                "plainly or percent-encoded.")
    if "?" in path or "#" in path:
        raise InvalidInputError("Put query parameters in the query table, not in the path.")
    if any(segment in ("..", ".") for segment in decoded.replace("\\", "/").split("/")):
        raise InvalidInputError("The path may not contain '.' or '..' segments, written plainly or percent-encoded.")
    if "{{" in path or "}}" in path:
        raise InvalidInputError("Fill every {{variable}} of the path before sending.")
    if not path.strip("/"):
        raise InvalidInputError("Enter the action's path.")
    if len(path) > MAX_PATH:  # History keeps the path whole (2,000 characters): one longer could not be kept
        raise InvalidInputError(f"The path is {len(path):,} characters long; at most {MAX_PATH:,}.",
                                hint="Send long values as query parameters or in the body.")
    return path.lstrip("/")


def _decoded(path: str) -> str:
    """The path as a server that decodes it (more than once, as a proxy and then the platform might) reads it:
    '.%2e' and '%252e%252e' are '..' there."""
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


def headers(values: dict[str, str]) -> dict[str, str]:
    """Extra request headers: valid (ASCII) names, one-line ASCII values, none of the reserved ones."""
    checked = {}
    for name, value in values.items():
        name = str(name).strip()
        value = str(value).strip(" \t")  # whitespace around a value is not part of it (and h11 refuses to send it)
        if not _HEADER_NAME.match(name):
            raise InvalidInputError(f"Header name {name[:40]!r} is not a valid HTTP header name.",
                                    hint="Use ASCII letters, digits and - (also !#$%&'*+.^_`|~), with no spaces.")
        if _CONTROL.search(value.replace("\t", "")):
            raise InvalidInputError(f"Header {name} contains a line break or control character.",
                                    hint="Header values must be one line: CR/LF would let a value inject headers.")
        if not value.isascii():  # httpx encodes str header values as ASCII: anything else fails while sending
            raise InvalidInputError(f"Header {name} contains non-ASCII characters: HTTP header values must be ASCII.",
                                    hint="Percent-encode the value, or send it in the body or a query parameter.")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInputError(f"Header {name} is set by the dashboard; remove it from the table.")
        checked[name] = value
    return checked


def action_id(value: str) -> str:
    value = value.strip()
    if not _ACTION_ID.match(value):
        raise InvalidInputError("Enter the action id (x-pica-action-id), e.g. conn_mod_def::GJ3odhCpd3I::….")
    return value
