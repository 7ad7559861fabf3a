"""What the Connections and Fleet pages show, as plain data: lookups, table rows, hints, bulk input."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlencode

import pandas as pd

from . import exports, validation
from .errors import InvalidInputError
from .health import NEEDS_ATTENTION, counted_state, state_label
from .models import IDENTITY_TYPES, STATES, Connection
from .store import Store, UserConnection
from .text import count

ATTENTION_ORDER = {"failed": 0, "degraded": 1, "unknown": 2, "operational": 3}
TRIAGE_ERROR = "error"  # the state column of a triage row whose identity could not be looked up
MAX_BULK_IDENTITIES = 500
MAX_BULK_PROBLEMS = 20  # each named; the rest counted (a wrong file is thousands of lines, each wrong alike)


# The lookup's filters that take known values only: (those values, what a value outside them is not).
# What a Connections link may say (Lookup.to_query's names), and what it may say instead (the API's spelling).
URL_PARAMS = ("identity", "identityType", "key", "platform", "state", "platforms", "environment", "connection")
URL_ALIASES = ("identity_type",)
_CHOSEN_FROM = {"state": (STATES, "a state"), "environment": (("test", "live"), "an environment")}


def _query_value(params: Mapping[str, str | list[str]], name: str) -> str:
    """A query parameter's last value, stripped ("" when absent)."""
    value = params.get(name, "")
    return (value[-1] if isinstance(value, list) and value else value or "").strip()


def _query_items(params: Mapping[str, str | list[str]], name: str) -> list[str]:
    """A comma-separated query parameter's items, stripped, empty ones dropped."""
    return [v.strip() for v in _query_value(params, name).split(",") if v.strip()]


@dataclass(frozen=True)
class Lookup:
    """A lookup as it lives in the URL: `?identity=…&identityType=…&state=failed,degraded…`."""

    identity: str = ""
    identity_type: str = ""  # "" = any
    key: str = ""
    platform: str = ""
    states: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    selected: str = ""  # connection id shown in detail

    @property
    def empty(self) -> bool:
        return not (self.identity or self.key or self.platform)

    @property
    def narrowed_key(self) -> bool:
        """A key looked up with other fields, which narrow it: the key alone may well be listed."""
        return bool(self.key and (self.identity or self.identity_type or self.platform))

    @classmethod
    def opening(cls, key: str, *, identity: str | None = None, identity_type: str | None = None,
                connection_id: str | None = None) -> Lookup:
        """The lookup that opens one connection: among its identity's connections, or by its key when it has no
        identity (a lookup of the id alone finds nothing), or one a lookup cannot ask for as it is (Pica matches
        identities exactly, and a lookup strips "Acme Corp " and refuses a control character)."""
        if identity and _askable(identity):
            return cls(identity=identity, identity_type=identity_type or "", selected=connection_id or "")
        return cls(key=key, selected=connection_id or "")

    @property
    def file_name(self) -> str:
        """connections-<what was looked up>.csv, in characters every file system takes."""
        what = ([self.identity, self.identity_type, self.platform] if not self.key
                else [*self.key.split("::")[1:2], "key"])  # a key's platform
        stem = re.sub(r"[^\w.@-]+", "_", "-".join(w for w in what if w)).strip("._")[:80]
        return f"connections-{stem}.csv" if stem else "connections.csv"

    def link(self, base: str = "/") -> str:
        """The Connections page's address that runs this lookup (for link columns), under the path the app is
        served from (`base`: a `server.baseUrlPath` deployment's links leave the app without it)."""
        return f"{base.rstrip('/')}/connections?{urlencode(self.to_query())}"

    @staticmethod
    def left_out(params: Mapping[str, str | list[str]]) -> list[str]:
        """What a link's filters name that `from_query` leaves out, as '<value> (<what it is not>)'."""
        return [f"{v} (not {what})" for name, (allowed, what) in _CHOSEN_FROM.items()
                for v in _query_items(params, name) if v.lower() not in allowed]

    @classmethod
    def from_query(cls, params: Mapping[str, str | list[str]]) -> Lookup:
        def one(name: str) -> str:
            return _query_value(params, name)

        def many(name: str) -> tuple[str, ...]:
            allowed = _CHOSEN_FROM[name][0] if name in _CHOSEN_FROM else None
            # Lower case, as every state, environment and platform id is: ?state=DEGRADED means degraded. Each once:
            # ?state=failed,FAILED drew two chips.
            return tuple(dict.fromkeys(v.lower() for v in _query_items(params, name)
                                       if allowed is None or v.lower() in allowed))

        return cls(
            identity=one("identity"),
            identity_type=validation.linked_identity_type(one("identityType") or one("identity_type")),
            key=one("key"),
            platform=one("platform").lower(),  # ids are lower case: ?platform=Gmail means gmail
            states=many("state"),
            platforms=many("platforms"),
            environments=many("environment"),
            selected=one("connection"),
        )

    def to_query(self) -> dict[str, str]:
        query = {
            "identity": self.identity, "identityType": self.identity_type, "key": self.key, "platform": self.platform,
            "state": ",".join(self.states), "platforms": ",".join(self.platforms),
            "environment": ",".join(self.environments), "connection": self.selected,
        }
        return {k: v for k, v in query.items() if v}

    def filters(self) -> dict:
        """Client filters for GET /v1/vault/connections; raises InvalidInputError before any request."""
        if self.empty:
            raise InvalidInputError("Enter an identity, a connection key or a platform to look up.")
        filters: dict = {}
        if self.key:
            filters["keys"] = [validation.connection_key(self.key)]
        if self.identity:
            filters["identity"] = validation.identity(self.identity)
        if self.identity_type:  # Pica filters by type alone too: "gmail, teams only"
            filters["identity_type"] = validation.identity_type(self.identity_type)
        if self.platform:
            filters["platform"] = validation.platform_id(self.platform)
        return filters

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """What is looked up, in words; the platform by its name in `names` (id → name) when it has one."""
        parts = [f"key {self.key}"] if self.key else []
        if self.identity:
            parts.append(f"{self.identity} (type {self.identity_type or 'any'})")
        elif self.identity_type:
            parts.append(f"identities of type {self.identity_type}")
        if self.platform:
            parts.append(f"platform {(names or {}).get(self.platform, self.platform)}")
        return ", ".join(parts)

    def platform_by_name(self, names: Mapping[str, str]) -> Lookup:
        """The lookup with a platform a link named by its catalog name (`?platform=Google Calendar`) as its id."""
        if not self.platform or self.platform in names:
            return self
        named = next((pid for pid, name in names.items() if name.lower() == self.platform.lower()), None)
        return replace(self, platform=named) if named else self


def _askable(identity: str) -> bool:
    """Whether a lookup asks Pica for exactly this identity."""
    try:
        return validation.identity(identity) == identity
    except InvalidInputError:
        return False


def sort_for_attention(connections: Iterable[Connection]) -> list[Connection]:
    """Broken first (failed, degraded, unknown), newest first within a state."""
    newest_first = sorted(connections, key=lambda c: c.created_at.timestamp() if c.created_at else 0, reverse=True)
    return sorted(newest_first, key=lambda c: ATTENTION_ORDER.get(c.state, 2))


def apply_filters(connections: Sequence[Connection], lookup: Lookup) -> list[Connection]:
    return [c for c in connections
            if (not lookup.states or counted_state(c.state) in lookup.states)  # as the counts above it count
            and (not lookup.platforms or c.platform in lookup.platforms)
            and (not lookup.environments or c.environment in lookup.environments)]


def merge_tags(shown: Sequence[str], edited: Sequence[str], current: Sequence[str]) -> list[str]:
    """The reader's edit (from the tags `shown` to the tags `edited`) applied to Pica's `current` tags: what someone
    else added or removed meanwhile stays so, and so does what the reader did (a save of the list as edited undid
    the others' change, or the reader's own when the page was drawn again with theirs)."""
    others_removed, others_added = set(shown) - set(current), set(current) - set(shown)
    mine = [t for t in edited if t not in others_removed or t not in shown]  # in the reader's order
    return mine + [t for t in current if t in others_added and t not in mine]


def connection_rows(connections: Sequence[Connection], stored: Mapping[str, UserConnection],
                    names: Mapping[str, str], logos: Mapping[str, str | None]) -> pd.DataFrame:
    """One row per connection, in the order given, for st.dataframe."""
    rows = []
    for c in connections:
        seen = stored.get(c.key)
        rows.append({
            "logo": logos.get(c.platform),
            "platform": names.get(c.platform, c.platform),
            "state": state_label(c.state),
            "state since": _since(seen) if seen and seen.state == c.state else None,
            "environment": c.environment,
            "identity": c.identity,
            "identity type": c.identity_type,
            "key": c.key,
            "tags": list(c.tags),
            "active": c.active,
            "created": c.created_at,
            "first seen": seen.first_seen_at if seen else None,
            "last seen": seen.last_seen_at if seen else None,
            "id": c.id,
        })
    columns = ["logo", "platform", "state", "state since", "environment", "identity", "identity type", "key", "tags",
               "active", "created", "first seen", "last seen", "id"]
    return pd.DataFrame(rows, columns=columns)


def stored_rows(stored: Sequence[UserConnection], names: Mapping[str, str]) -> pd.DataFrame:
    """What the dashboard stored of connections (`Store.stored_matching`), for a table: as they were last seen."""
    return pd.DataFrame([{
        "platform": names.get(s.platform, s.platform), "state when last seen": state_label(s.state),
        "state since": _since(s), "last seen": s.last_seen_at, "identity": s.user_id, "identity type": s.identity_type,
        "key": s.connection_key,
    } for s in stored], columns=["platform", "state when last seen", "state since", "last seen", "identity",
                                 "identity type", "key"])


def _since(seen: UserConnection) -> str:
    """When the stored state began (UTC), as text: "or earlier" when it was already so at first sight."""
    return f"{seen.state_since:%Y-%m-%d %H:%M}" + (" or earlier" if seen.since_is_lower_bound else "")


def connections_csv(table: pd.DataFrame, connections: Sequence[Connection],
                    stored: Mapping[str, UserConnection] | None = None) -> str:
    """The vault table (rows of `connection_rows` for these connections and `stored`) as CSV, written as the Fleet
    and triage exports write theirs: the platform's id beside its name, the state without its dot, when it began as
    a time (the table's "… or earlier" is text), tags joined by commas."""
    stored = stored or {}
    export = table.drop(columns=["logo"]).rename(columns={"platform": "platform name"})
    export.insert(0, "platform", [c.platform for c in connections])
    export["state"] = [c.state for c in connections]
    same = [seen if (seen := stored.get(c.key)) and seen.state == c.state else None for c in connections]
    export["state since"] = [seen.state_since if seen else None for seen in same]
    export.insert(export.columns.get_loc("state since") + 1, "since or earlier",
                  [seen.since_is_lower_bound if seen else None for seen in same])
    export["tags"] = export["tags"].map(",".join)
    return exports.frame_csv(export)


def no_results_message(lookup: Lookup, *, environment: str, others: Sequence[Connection] = (),
                       names: Mapping[str, str] | None = None,
                       same_letters: tuple[str, Sequence[Connection]] | None = None) -> tuple[str, str]:
    """(message, hint) for an empty lookup. `others`: the identity's connections of any type and platform (when the
    lookup named a type or a platform); `same_letters`: the identity in lower case and its connections of any type
    and platform (Pica matches identities exactly); the environment of the key."""
    names = names or {}
    platform = names.get(lookup.platform.strip().lower(), lookup.platform) if lookup.platform else ""
    narrowed = lookup.narrowed_key
    if lookup.key:
        message = f"No connection with key {lookup.key}" + (f" among {replace(lookup, key='').describe(names)}."
                                                            if narrowed else ".")
    elif lookup.identity:
        message = f"No connections for {lookup.identity} (type {lookup.identity_type or 'any'})"
        if platform:
            message += f" on {platform}"
        message += "."
    else:
        message = f"No connections on platform {platform}"
        message += f" for identities of type {lookup.identity_type}." if lookup.identity_type else "."
    hints = ["The other fields narrow a key's lookup: look the key up alone."] if narrowed else []
    split = _comma_split(lookup.identity)
    if split and split[1].lower() not in IDENTITY_TYPES and len(split[1]) <= 20:  # `identity,type` mistyped
        hints.append(f"“{split[1]}” after the comma is not an identity type ({', '.join(IDENTITY_TYPES)}), so the "
                     "whole text was looked up as the identity.")
    elif split and split[1].lower() in IDENTITY_TYPES and not lookup.identity_type:  # a link's `identity,type`
        # (Look up splits what is typed; links not)
        hints.append(f"The whole text was looked up as the identity: for {split[0]} of type {split[1].lower()}, "
                     "choose the type and look it up.")
    hints += _identity_hints(lookup.identity_type, others, same_letters)
    if lookup.platform and (elsewhere := [c for c in others if c.platform != lookup.platform.strip().lower()]):
        shown = sorted({names.get(c.platform, c.platform) for c in elsewhere}, key=str.lower)
        listed = ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
        broken = sum(1 for c in elsewhere if c.state in NEEDS_ATTENTION)
        hints.append(f"It has {count(len(elsewhere), 'connection')} on other platforms"
                     + (f" ({broken:,} need attention)" if broken else "") + f": {listed}.")
    other_env = "live" if environment == "test" else "test"
    # A narrowed key may well be listed alone: nothing says it is gone, or of the other environment.
    if lookup.key and not narrowed and lookup.key.startswith(f"{environment}::"):  # of this key's environment
        hints.append("Pica does not list it: deleted (by the end user or elsewhere), or the key was cut or changed "
                     "when copied.")
    elif not narrowed:
        hints.append(f"The dashboard's key is a {environment} key: connections made in the {other_env} environment "
                     f"are not visible with it.")
    if lookup.key and not lookup.key.startswith(f"{environment}::"):
        hints.insert(0, f"That key belongs to the {validation.key_environment(lookup.key)} environment.")
    return message, " ".join(hints)


def pasted_identity(text: str) -> tuple[str, str]:
    """(identity, identity type) of a row pasted from a spreadsheet (the identity, a tab, then its type) or written
    as Bulk triage asks (`identity,type`). Anything else comes back as it is, with no type (a tab left in it is then
    refused, with a message; a comma before anything but a type is part of the identity)."""
    identity, tab, kind = text.strip().partition("\t")
    split = (identity.strip(), kind.strip()) if tab else _comma_split(text)
    if split and split[0] and split[1].lower() in IDENTITY_TYPES:
        return split[0], split[1].lower()
    return text, ""


def _comma_split(text: str) -> tuple[str, str] | None:
    """(identity, word) of `identity,word` as Bulk triage's lines are written, or None: no comma, nothing before it,
    or a space after it ("Acme, Team" is a name with a comma in it)."""
    head, comma, tail = text.strip().rpartition(",")
    return (head.strip(), tail.strip()) if comma and head.strip() and tail and tail == tail.lstrip() else None


def _identity_hints(identity_type: str | None, others: Sequence[Connection],
                    same_letters: tuple[str, Sequence[Connection]] | None) -> list[str]:
    """Why an identity looked up with `identity_type` found nothing: it has `others` under other types, or its
    lower-case spelling has connections (`same_letters`: that spelling and its connections of every type)."""
    hints = []
    if same_letters:
        lowered, found = same_letters
        text = f"Pica matches identities exactly, letter case included: {lowered} has {count(len(found), 'connection')}"
        if identity_type and any(c.identity_type != identity_type for c in found):  # both mistakes at once
            text += f" ({_by_type(found)})"
        hints.append(text + ".")
    if identity_type and (other_types := [c for c in others if c.identity_type != identity_type]):
        hints.append(f"This identity has connections under another identity type: {_by_type(other_types)}.")
    return hints


def _by_type(connections: Sequence[Connection]) -> str:
    """'2 as type team, 1 as type user'."""
    kinds = Counter(c.identity_type for c in connections)
    return ", ".join(f"{n} as type {kind or 'none'}" for kind, n in sorted(kinds.items(), key=lambda kv: str(kv[0])))


def likely_meant(lookup: Lookup) -> Lookup | None:
    """For a lookup that found nothing, the lookup it was likely written for: a key's alone, when other fields
    narrowed it; an identity split from the type written after it (`ana@acme.io, user`: the form reads a comma and
    a space as part of a name), or without the quotes a spreadsheet or a chat put around it (`"usr_1"`,
    `“usr_1”`). None when none applies."""
    if lookup.key:
        return Lookup(key=lookup.key) if lookup.narrowed_key else None
    identity = lookup.identity.strip()
    head, comma, tail = identity.rpartition(",")
    if comma and head.strip() and tail.strip().lower() in IDENTITY_TYPES:
        return replace(lookup, identity=_unquoted(head), identity_type=tail.strip().lower(), selected="")
    if _unquoted(identity) != identity:
        return replace(lookup, identity=_unquoted(identity), selected="")
    return None


_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "„": "“", "«": "»", "「": "」"}  # opening: closing


def _unquoted(text: str) -> str:
    """`text` without the quotes around it, straight or as a word processor or chat writes them."""
    text = text.strip()
    return text[1:-1].strip() if len(text) > 2 and _QUOTES.get(text[0]) == text[-1] else text


def in_its_letters(lookup: Lookup, lowered: str, found: Sequence[Connection]) -> Lookup:
    """The lookup of `lowered` (the identity in lower case, which has `found`), keeping as much of its type and
    platform as still finds something together: a lookup wrong in case and in type finds nothing with either left."""
    platform = lookup.platform.strip().lower()
    for kind, on in ((lookup.identity_type, platform), (lookup.identity_type, ""), ("", platform), ("", "")):
        if any((not kind or c.identity_type == kind) and (not on or c.platform == on) for c in found):
            break
    return replace(lookup, identity=lowered, selected="", identity_type=kind,
                   platform=lookup.platform if on else "")


def alternative_chosen(shown: Lookup, submitted: Lookup) -> Lookup:
    """The lookup a form showing `shown` asks for with `submitted`: a key or an identity is looked up instead of
    the other when only it changed (a key pasted under the identity looked up before found nothing "among" it);
    both, when both changed. The same lookup again (Pica asked anew) keeps the reader's filters and open connection."""
    key_changed = submitted.key != shown.key
    rest_changed = (submitted.identity, submitted.identity_type, submitted.platform) != (
        shown.identity, shown.identity_type, shown.platform)
    if not key_changed and not rest_changed:
        return shown
    if submitted.key and key_changed and not rest_changed:
        return Lookup(key=submitted.key)
    if submitted.key and rest_changed and not key_changed:
        return replace(submitted, key="")
    return submitted


@dataclass
class BulkInput:
    identities: list[tuple[str, str | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # where each identity was read ("line 7", "file line 3")
    later: list[tuple[str, str | None]] = field(default_factory=list)  # past the first MAX_BULK_IDENTITIES
    later_origins: list[str] = field(default_factory=list)

    def next_batch(self) -> BulkInput:
        """The identities left for later, the next MAX_BULK_IDENTITIES of them first (each triage costs Pica calls
        per identity: at most that many at a time)."""
        return _first_batch(BulkInput(self.later, [], self.later_origins))

    @property
    def later_note(self) -> str:
        """What is left for later, and from where."""
        return (f"{count(len(self.later), 'more identity', 'more identities')}, from {self.later_origins[0]} on, "
                f"{'is' if len(self.later) == 1 else 'are'} not looked up yet: a triage looks up "
                f"{MAX_BULK_IDENTITIES} at a time.") if self.later else ""


# What a one-column export names its column of identities, when not `identity`: "email" was looked up as one.
_IDENTITY_HEADERS = {"identities", "email", "emails", "e-mail", "user", "users", "user id", "user_id", "userid",
                     "id", "ids", "customer", "customer id", "customer_id", "account", "account id", "account_id"}
_TYPE_HEADERS = ("identitytype", "identity_type", "identity type", "type")


def parse_bulk(text: str, upload: bytes = b"") -> BulkInput:
    """Identities to triage from pasted text and an uploaded CSV file: `identity[,identityType]` per line, or any
    columns under a header row naming `identity` (and `identityType`). Problems name the line of each."""
    result = BulkInput()
    seen: set[tuple[str, str | None]] = set()
    unreadable = None  # the file's own problem: said first, never counted away with the lines'
    _read_bulk(text, "Line", result, seen)
    if upload:
        try:
            content = upload.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte order mark
        except UnicodeDecodeError:
            unreadable = "The file is not UTF-8 text: save it as CSV UTF-8 and upload it again."
        else:
            _read_bulk(content, "File line", result, seen)
    if len(result.problems) > MAX_BULK_PROBLEMS:
        more = len(result.problems) - MAX_BULK_PROBLEMS
        result.problems = [*result.problems[:MAX_BULK_PROBLEMS], f"… and {count(more, 'more line')} skipped the same "
                           "ways or others: correct the lines above, then Triage again."]
    if unreadable:
        result.problems.insert(0, unreadable)
    return _first_batch(result)


def _first_batch(bulk: BulkInput) -> BulkInput:
    """`bulk` with its first MAX_BULK_IDENTITIES identities to triage now, and the rest for later."""
    bulk.later, bulk.later_origins = bulk.identities[MAX_BULK_IDENTITIES:], bulk.origins[MAX_BULK_IDENTITIES:]
    bulk.identities, bulk.origins = bulk.identities[:MAX_BULK_IDENTITIES], bulk.origins[:MAX_BULK_IDENTITIES]
    return bulk


def _read_bulk(text: str, where: str, result: BulkInput, seen: set[tuple[str, str | None]]) -> None:
    """Each line on its own: an identity never spans lines, so a stray quote spoils its own line and no other."""
    text = text.removeprefix("\ufeff")
    delimiter = _delimiter(text)
    identity_column, type_column = 0, 1
    header_possible = True
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        if header_possible and (excel := _EXCEL_SEPARATOR.fullmatch(line.strip(" "))):  # Excel's "sep=;" line
            delimiter = excel.group(1)
            continue
        # A row pasted from a spreadsheet under comma lines: a tab is no identity's (they are refused in one).
        own = "\t" if "\t" in line and delimiter not in line else delimiter
        try:
            row = next(csv.reader([line], delimiter=own, strict=True))
        except csv.Error as exc:  # a quote never closed, a field over csv's size limit
            why = "a quote opened on it is not closed" if "end of data" in str(exc) or "expected after" in str(exc) \
                else str(exc)
            result.problems.append(f"{where} {number}: not readable as CSV ({why}); it was skipped. It reads "
                                   f"“{_excerpt([line])}”.")
            continue
        first = header_possible
        if header_possible:
            header_possible = False
            names = [cell.strip().lower() for cell in row]
            if "identity" in names:
                identity_column = names.index("identity")
                type_column = next((names.index(n) for n in _TYPE_HEADERS if n in names), None)
                continue
            if len(names) == 1 and names[0] in _IDENTITY_HEADERS:  # a column's name, not an end user's id
                result.problems.append(f"{where} {number}, “{row[0].strip()}”, was read as the column's header, not "
                                       "looked up (a column named identity is read as such without a word).")
                continue
            if len(names) > 1 and names[1] in _TYPE_HEADERS:
                result.problems.append(f"{where} {number} is a header without an “identity” column: name the column "
                                       "of identities identity; the lines under it were read as identity, type.")
                continue
        raw_identity = exports.unguard(row[identity_column]) if identity_column < len(row) else ""
        raw_type = row[type_column].strip().lower() if type_column is not None and type_column < len(row) else ""
        try:
            identity = validation.identity(raw_identity)
        except InvalidInputError as exc:
            result.problems.append(f"{where} {number}: {exc.message} It reads “{_excerpt(row)}”.")
            continue
        try:
            identity_type = validation.identity_type(raw_type or None)
        except InvalidInputError as exc:
            # A first line refused for its second cell is most often a header naming other columns (email,name).
            header = (" If it is a header row, name the column of identities identity (and of their types "
                      "identityType).") if first else ""
            result.problems.append(f"{where} {number}: {exc.message} It reads “{_excerpt(row)}”.{header}")
            continue
        if (identity, identity_type) not in seen:
            seen.add((identity, identity_type))
            result.identities.append((identity, identity_type))
            result.origins.append(f"{where.lower()} {number}")


_EXCEL_SEPARATOR = re.compile(r"sep=(.)")


def _excerpt(row: Sequence[str], limit: int = 60) -> str:
    """A bad line as it was read, short and on one line, so it can be found in the list."""
    text = ", ".join(cell.strip() for cell in row)
    text = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _lines(text: str) -> list[str]:
    """Lines ended as Windows, Unix or old Macs (Excel's "CSV (Macintosh)") end them; not at the other breaks
    str.splitlines knows (a form feed, a vertical tab): those are refused as control characters in an identity."""
    return re.split(r"\r\n|\r|\n", text)


def _delimiter(text: str) -> str:
    """A comma, unless the first line has none and has semicolons or tabs (Excel's CSV in many locales, a paste
    from a spreadsheet)."""
    first = next((line for line in _lines(text) if line.strip()), "")
    if "," in first:
        return ","
    return ";" if ";" in first else "\t" if "\t" in first else ","


NOT_ASKED = "not looked up"  # a triage result's error when it was not asked (a limit or a refusal met before)


@dataclass
class TriageResult:
    identity: str
    identity_type: str | None
    connections: list[Connection] = field(default_factory=list)
    error: str | None = None
    hint: str = ""  # none found: where its connections may be instead (another identity type, lower case)
    retry_at: datetime | None = None  # not looked up for Pica's rate limit: when it lifts, if Pica said
    stopped_asking: bool = False  # its error (a rate limit, a refused key) stopped the asking for those after it

    @property
    def note(self) -> str:
        """What the identity's row says when it lists no connection of its own."""
        if self.error or self.connections:
            return self.error or ""
        return "no connections" + (f" — {self.hint}" if self.hint else "")


async def triage(client, identities: Sequence[tuple[str, str | None]],
                 progress: Callable[[int, int], None] | None = None) -> list[TriageResult]:
    """Every identity's connections, concurrently (as many at a time as the client allows); errors per identity.
    An identity with none is asked again as a lookup would be (without its type, then in lower case) to say where
    its connections may be. Once Pica rate-limits the account or refuses the key, the identities not asked yet are
    not asked: the limit is every dashboard user's, and going on only meets it, or the refusal, again (a refused
    key asked 500 times in a row). `progress(done, total)` after each one."""
    import asyncio

    from .errors import AuthError, PicaError, RateLimitedError

    done = 0
    slots = asyncio.Semaphore(client.max_concurrency)
    limited: list[RateLimitedError | AuthError] = []  # the first rate limit or refusal met: no more asking

    async def where_else(identity: str, identity_type: str | None) -> str:
        if limited:
            return ""
        try:
            others = await client.connections(identity=identity) if identity_type else []
            same_letters = None
            if not others and identity.lower() != identity:  # of every type: the hint says which
                found = await client.connections(identity=identity.lower())
                same_letters = (identity.lower(), found) if found else None
        except (RateLimitedError, AuthError) as exc:  # met all the same: stop asking
            limited.append(exc)
            return ""
        except PicaError:  # only a hint: Pica's answer, no connections, stands
            return ""
        return " ".join(_identity_hints(identity_type, others, same_letters))

    async def one(identity: str, identity_type: str | None) -> TriageResult:
        nonlocal done
        async with slots:
            if limited:
                stop = limited[0]
                why = stop.lasting_hint() if isinstance(stop, RateLimitedError) else f"Pica refused the key ({stop})"
                result = TriageResult(identity, identity_type, error=f"{NOT_ASKED} — {why}",
                                      retry_at=getattr(stop, "retry_at", None))
            else:
                try:
                    found = await client.connections(identity=identity, identity_type=identity_type)
                    result = TriageResult(identity, identity_type, sort_for_attention(found))
                    if not found:
                        result.hint = await where_else(identity, identity_type)
                except (RateLimitedError, AuthError) as exc:
                    limited.append(exc)
                    result = TriageResult(identity, identity_type, error=exc.as_recorded(),
                                          retry_at=getattr(exc, "retry_at", None), stopped_asking=True)
                except PicaError as exc:
                    result = TriageResult(identity, identity_type, error=exc.as_recorded())
        done += 1
        if progress:
            progress(done, len(identities))
        return result

    return list(await asyncio.gather(*(one(i, t) for i, t in identities)))


def triage_failures(failed: Sequence[TriageResult]) -> str:
    """What the identities that could not be looked up met, each cause once with how many met it: what stopped the
    asking (a rate limit, whose time says when to ask again, or a refused key) first. One error quoted for all hid
    the rate limit behind a 500 met first."""
    met = Counter(r.error for r in failed if r.error and not r.error.startswith(NOT_ASKED))
    stopping = {r.error for r in failed if r.stopped_asking}
    causes = sorted(met.items(), key=lambda item: item[0] not in stopping)  # stable: otherwise as met
    said = "; ".join(f"{error} ({count(n, 'identity', 'identities')})" for error, n in causes[:3])
    if len(causes) > 3:
        said += f"; and {count(sum(n for _, n in causes[3:]), 'other')}"
    unasked = len(failed) - sum(met.values())
    if not met:  # what stopped the asking was met by a hint's question, which keeps no error: the unasked say it
        return (f"{count(len(failed), 'identity', 'identities')} could not be looked up: "
                f"{next(r.error for r in failed if r.error)}.")
    text = f"{count(len(failed), 'identity', 'identities')} could not be looked up. Pica said: {said}"
    return text + (f"; {unasked:,} {'was' if unasked == 1 else 'were'} not asked after that." if unasked else ".")


def triage_rows(results: Sequence[TriageResult], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per connection, each once: an identity asked for with its type and without lists its connections
    under the first; an identity with none, or whose lookup failed, gets one row saying so."""
    names = names or {}
    rows, listed = [], set()
    for result in results:
        fresh = [c for c in result.connections if c.key not in listed]
        listed.update(c.key for c in fresh)
        if result.error or not fresh:
            if result.error:
                state, note = TRIAGE_ERROR, result.error
            elif result.connections:
                state, note = "listed above", f"{count(len(result.connections), 'connection')} listed above"
            else:
                state, note = "no connections", result.hint
            rows.append({"identity": result.identity, "identity type": result.identity_type or "any",
                         "platform": "", "state": state, "key": "", "note": note, "platform id": ""})
        for c in fresh:
            rows.append({"identity": result.identity, "identity type": c.identity_type,
                         "platform": names.get(c.platform, c.platform), "state": c.state, "key": c.key, "note": "",
                         "platform id": c.platform})
    return pd.DataFrame(rows, columns=[*TRIAGE_SHOWN, "platform id"])


def needing_attention(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `triage_rows` that need attention, most urgent first: identities that could not be looked up
    (nothing is known of them), then failed connections, then degraded ones."""
    urgency = {TRIAGE_ERROR: -1, **{state: ATTENTION_ORDER[state] for state in NEEDS_ATTENTION}}
    rank = table["state"].map(urgency)
    return table[rank.notna()].iloc[rank.dropna().argsort(kind="stable")]


def by_identity(results: Sequence[TriageResult]) -> list[TriageResult]:
    """One result per identity, in the order first asked: an identity asked for under several types, or with and
    without one, gets every connection found, once (its type then: any), and the first error or hint."""
    merged: dict[str, TriageResult] = {}
    for r in results:
        kept = merged.setdefault(r.identity, TriageResult(r.identity, r.identity_type))
        known = {c.key for c in kept.connections}
        kept.connections = sort_for_attention([*kept.connections, *(c for c in r.connections if c.key not in known)])
        kept.identity_type = kept.identity_type if kept.identity_type == r.identity_type else None
        kept.error, kept.hint = kept.error or r.error, kept.hint or r.hint
    return list(merged.values())


def triage_summary(identities: Sequence[TriageResult], names: Mapping[str, str] | None = None, *,
                   base: str = "/") -> pd.DataFrame:
    """One row per identity (the results of `by_identity`): those that could not be looked up first (nothing is
    known of them: their counts are empty, not 0), then those with broken connections: how many it has, how many
    need attention and on which platforms, and the lookup that opens it (a link under `base`)."""
    names = names or {}
    rows = []
    for r in identities:
        broken = sorted({names.get(c.platform, c.platform) for c in r.connections if c.state in NEEDS_ATTENTION},
                        key=str.lower)
        unknown = bool(r.error) and not r.connections
        rows.append({"open": Lookup(identity=r.identity, identity_type=r.identity_type or "").link(base),
                     "identity": r.identity, "identity type": r.identity_type or "any",
                     "connections": None if unknown else len(r.connections),
                     "need attention": None if unknown else sum(1 for c in r.connections
                                                                if c.state in NEEDS_ATTENTION),
                     "broken on": "not looked up: see note" if unknown else ", ".join(broken), "note": r.note})
    frame = pd.DataFrame(rows, columns=["open", "identity", "identity type", "connections", "need attention",
                                        "broken on", "note"]).astype({"connections": "Int64", "need attention": "Int64"})
    frame = frame.sort_values("need attention", ascending=False, kind="stable", na_position="first")
    # Shown as a dash: an empty count showed as a grey "None", which reads as none (Streamlit draws a null so even
    # under a Styler's na_rep). Text, all of the column: a dash among ints failed Arrow's conversion (a traceback in
    # the server's log on every run).
    for column in ("connections", "need attention"):
        frame[column] = [("—" if pd.isna(n) else str(n)) for n in frame[column]]
    return frame.reset_index(drop=True)


TRIAGE_SHOWN = ("identity", "identity type", "platform", "state", "key", "note")


def triage_csv(table: pd.DataFrame) -> str:
    """The triage table (`triage_rows`) as CSV, its platform columns named as in the vault CSV: the id under
    "platform", the display name under "platform name"."""
    export = table.rename(columns={"platform": "platform name"})
    export.insert(0, "platform", export.pop("platform id"))
    return exports.frame_csv(export)


def fleet_csv(rows: Iterable[Sequence], names: Mapping[str, str] | None = None) -> str:
    """The fleet export (rows of `Store.fleet_export`) as CSV, with the columns of the Connections CSV (the
    platform's name after its id, tags joined by commas) and Fleet's own last one."""
    names = names or {}
    tags = Store.EXPORT_COLUMNS.index("tags")
    header = (Store.EXPORT_COLUMNS[0], "platform name", *Store.EXPORT_COLUMNS[1:])
    return exports.rows_csv(header, ((row[0], names.get(row[0], row[0]), *row[1:tags], ",".join(row[tags]),
                                      *row[tags + 1:]) for row in rows))
