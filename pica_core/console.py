"""The passthrough console, without the UI: drafts, checks, sending, response views, history, exports.

A page turns its widgets into a `RequestDraft`; `prepare()` checks it and returns a `PreparedRequest` (or
raises `InvalidInputError` before anything is sent); `run_call()` sends it through the Pica client, stores a
redacted `PassthroughCallRecord` and audits writes. The same `PreparedRequest` is what history replays and what
the curl / Python-httpx exports print.

Limits (documented, one place):
- `MAX_REQUEST_BODY_BYTES` (1 MiB): a request body (JSON, form, multipart or raw, as encoded on the wire) larger
  than this is refused before sending.
- History keeps at most `settings.history_body_limit` bytes (UTF-8) of each request and response body
  (`HISTORY_BODY_LIMIT`, default 16 384 = 16 KiB); longer bodies are cut at a character boundary and the record is
  flagged `request_truncated` / `response_truncated`. A call whose request body was truncated cannot be replayed.
- The response panel shows at most `settings.display_body_limit` bytes (`DISPLAY_BODY_LIMIT`, default 200 000) of a
  body, with a note; the download button always gives the whole body.

Secrets: the Pica secret never enters a draft, a record or an export (exports read `$PICA_SECRET_KEY`); values of
`Authorization`-like headers are replaced by `REDACTED` in history and by an environment variable in exports; any
occurrence of the secret's text in what is stored is replaced by `****`.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import mimetypes
import pprint
import re
import shlex
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import httpx

from . import validation
from .client import PASSTHROUGH_METHODS, PassthroughCall, retry_after
from .config import ACTION_HEADER, CONNECTION_HEADER, PASSTHROUGH_HEADER_PREFIX, SECRET_HEADER
from .errors import InvalidInputError, PicaError
from .models import PassthroughResponse
from .store import PassthroughCallRecord, utcnow
from .text import SECRET_MASK, scrub, scrub_spelt

if TYPE_CHECKING:  # only for annotations: the console works with any client and store of these shapes
    from .client import PicaClient
    from .store import Store

log = logging.getLogger("pica_core.console")

MAX_REQUEST_BODY_BYTES = 1_048_576  # 1 MiB
MAX_TABLE_ROWS = 1_000  # records shown in the response table; the rest are in the raw body
BODY_KINDS = ("none", "json", "form", "multipart", "raw")
WRITE_METHODS = tuple(m for m in PASSTHROUGH_METHODS if m != "GET")
REDACTED = "[redacted]"
SECRET_ENV = "PICA_SECRET_KEY"

# Header names whose values are credentials: never shown back, stored or exported.
_SENSITIVE_EXACT = {"authorization", "proxy-authorization", "cookie", "set-cookie", SECRET_HEADER}
_SENSITIVE_PARTS = ("authorization", "secret", "token", "password", "passwd", "api-key", "apikey",  # "_" read as "-"
                    "cookie", "session", "auth-key", "subscription-key", "access-key", "private-key", "signature")
# {{var}} (Pica's templates) and ${var} (a few older action paths).
_PATH_VAR = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}|\$\{([^{}]+)\}")


# --- path templates -----------------------------------------------------------------------------------------
def path_variables(template: str) -> list[str]:
    """The variables of a path template, in order, each once: `/users/{{userId}}/messages/{{id}}` → [userId, id]."""
    names: list[str] = []
    for match in _PATH_VAR.finditer(template or ""):
        name = (match.group(1) or match.group(2)).strip()
        if name not in names:
            names.append(name)
    return names


def fill_path(template: str, values: Mapping[str, str]) -> str:
    """The template with every variable replaced by its URL-encoded value; a missing value is refused."""
    missing = [name for name in path_variables(template) if not str(values.get(name) or "").strip()]
    if missing:
        listed = ", ".join(f"{{{{{name}}}}}" for name in missing)
        raise InvalidInputError(f"Fill the path variable{'s' if len(missing) > 1 else ''} {listed} before sending.",
                                hint="Path variables are the fields under the action, e.g. userId = me for Gmail.")

    def value_of(match: re.Match) -> str:
        name = (match.group(1) or match.group(2)).strip()
        value = str(values[name]).strip()
        if value in (".", "..") or ".." in value.split("/"):
            raise InvalidInputError(f"The value of {{{{{name}}}}} may not be '.' or '..' (it would change the path).")
        if validation.has_control(value):
            raise InvalidInputError(f"The value of {{{{{name}}}}} contains control characters (a line break, tab or "
                                    "NUL).", hint="Type or paste the value alone, on one line.")
        return quote(value, safe="")

    return _PATH_VAR.sub(value_of, template)


# --- JSON bodies -----------------------------------------------------------------------------------------------
def _pointer(line: str, index: int, width: int = 120) -> str:
    """The line (a window of it around the fault when long) and a caret under the character at `index`, as a
    monospace font draws them: a tab as one space, a wide (CJK) character as two columns."""
    start = max(0, index - width // 2) if len(line) > width else 0
    shown = line[start:start + width].replace("\t", " ")
    before = shown[:index - start]
    column = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in before)
    lead = "…" if start else ""
    return f"{lead}{shown}{'…' if start + width < len(line) else ''}\n{' ' * (len(lead) + column)}^"


def parse_json_body(text: str) -> Any:
    """The JSON value of `text`, or InvalidInputError naming the line and column of the first error."""
    if not text.strip():
        raise InvalidInputError("The JSON body is empty.", hint="Enter a JSON value (e.g. {}), or choose body 'none'.")
    try:
        value = json.loads(text, parse_constant=_refuse_non_finite, parse_float=_finite_float)
        encode_json(value)  # a lone surrogate escape (\ud800) reads, but UTF-8 cannot carry it
        return value
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"The JSON body is not valid: \\u{ord(exc.object[exc.start]):04x} is half of a "
                                "surrogate pair, which cannot be sent as UTF-8.",
                                hint="Write the whole pair (e.g. \\ud83d\\ude00) or the character itself.") from None
    except json.JSONDecodeError as exc:
        lines = text.split("\n")  # as json counts lines: by \n only
        line = lines[exc.lineno - 1].removesuffix("\r") if exc.lineno <= len(lines) else ""
        raise InvalidInputError(f"The JSON body is not valid: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                                hint=_pointer(line, exc.colno - 1)) from None
    except _NonFiniteNumber as exc:
        raise InvalidInputError(f"The JSON body is not valid: NaN/Infinity are not valid JSON (found {exc}).",
                                hint="Use null, a finite number or a string instead.") from None
    except ValueError:  # Python's own limit: an integer of more than 4,300 digits
        raise InvalidInputError("The JSON body is not valid: a number in it has too many digits.",
                                hint="Send very long numbers as strings.") from None
    except RecursionError:
        raise InvalidInputError("The JSON body is nested too deeply to read.") from None


class _NonFiniteNumber(ValueError):
    """NaN, Infinity or a number beyond a float (1e999): Python's json reads them, but they are not JSON (httpx,
    like encode_json, refuses to send them)."""


def _refuse_non_finite(name: str) -> Any:
    raise _NonFiniteNumber(name)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as inf
        raise _NonFiniteNumber(text)
    return number


def _encodes_as_typed(text: str) -> bool:
    """Whether JSON `text`, parsed and encoded again (httpx's json=), still says the same to whoever reads it: no key
    twice (the last would win) and no number a float changes (20 digits; 10.10 and 1e2 are the same numbers)."""
    def once(pairs: list[tuple[str, Any]]) -> dict:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("a key twice")
        return dict(pairs)

    def as_written(literal: str) -> float:
        if Decimal(repr(float(literal))) != Decimal(literal):
            raise ValueError("a float changes it")
        return float(literal)

    try:
        json.loads(text, object_pairs_hook=once, parse_float=as_written)
    except (ValueError, RecursionError):
        return False
    return True


def json_error(text: str) -> InvalidInputError | None:
    """The error `parse_json_body` would raise, or None (for a live check under the editor)."""
    try:
        parse_json_body(text)
    except InvalidInputError as exc:
        return exc
    return None


def encode_json(value: Any) -> bytes:
    """The bytes httpx sends for `json=value` (compact, UTF-8): what curl must send to get the same answer."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --- drafts and prepared requests -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FilePart:
    """A multipart file: its bytes are sent, never stored (history keeps the name and size)."""

    field: str
    filename: str
    content: bytes = field(repr=False)
    content_type: str = "application/octet-stream"


@dataclass
class RequestDraft:
    """What the builder holds: a template and values, possibly incomplete or invalid."""

    connection_key: str
    action_id: str
    method: str
    path_template: str
    path_values: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_kind: str = "none"
    body_text: str = ""  # the JSON or raw text
    form: list[tuple[str, str]] = field(default_factory=list)  # form fields, or multipart's text fields
    files: list[FilePart] = field(default_factory=list)
    custom: bool = False  # the action is tagged `custom`: connectionKey goes into the body


@dataclass
class PreparedRequest:
    """A checked request, exactly as it will be sent (and replayed, and exported)."""

    method: str
    path: str  # filled and validated, without the leading slash
    connection_key: str
    action_id: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body_kind: str = "none"
    json_body: Any = None
    json_text: str | None = None  # the JSON body as typed, when encoding json_body would change what it says
    form: dict[str, str] | None = None
    files: list[FilePart] = field(default_factory=list)
    content: bytes | None = None

    @property
    def environment(self) -> str:
        return validation.key_environment(self.connection_key)

    @property
    def display_path(self) -> str:
        return f"/{self.path}"

    @property
    def typed(self) -> bool:
        """The user gave the body's Content-Type (else httpx, and so the exports, give their own)."""
        return any(name.lower() == "content-type" for name in self.headers)

    def json_bytes(self) -> bytes:
        """A JSON body as sent: encoded compact, as httpx's json= encodes it, unless that would change what it says
        (a key twice, a 20-digit number: the platform's to read as typed)."""
        return self.json_text.encode("utf-8") if self.json_text is not None else encode_json(self.json_body)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `PicaClient.passthrough(method, path, **kwargs)`."""
        kwargs: dict[str, Any] = dict(connection_key=self.connection_key, action_id=self.action_id,
                                      query=list(self.query), headers=dict(self.headers))
        if self.body_kind == "json":  # as bytes: httpx re-encodes json=, and reads json=None (JSON's null) as none
            kwargs["content"] = self.json_bytes()
            if not self.typed:
                kwargs["headers"]["Content-Type"] = "application/json"
        elif self.body_kind == "form":
            kwargs["form"] = dict(self.form or {})
        elif self.body_kind == "multipart":
            kwargs["form"] = dict(self.form or {})
            kwargs["files"] = [(f.field, (f.filename, f.content, f.content_type)) for f in self.files]
        elif self.body_kind == "raw":
            kwargs["content"] = self.content or b""
        return kwargs

    def body_bytes(self) -> int:
        """The size of the body on the wire (multipart: fields and files, without the boundaries)."""
        if self.body_kind == "json":
            return len(self.json_bytes())
        if self.body_kind == "form":
            return len(urlencode(list((self.form or {}).items())).encode())
        if self.body_kind == "multipart":
            return sum(len(k) + len(v.encode()) for k, v in (self.form or {}).items()) + sum(
                len(f.content) for f in self.files)
        if self.body_kind == "raw":
            return len(self.content or b"")
        return 0

    def url(self, base_url: str) -> str:
        """The full URL, query included, encoded exactly as httpx encodes it."""
        return str(httpx.URL(f"{base_url.rstrip('/')}/v1/passthrough/{self.path}", params=self.query or None))


def _pairs(rows: Iterable[tuple[Any, Any]], what: str) -> list[tuple[str, str]]:
    """Table rows → (name, value) pairs: blank rows dropped, a value without a name refused."""
    pairs = []
    for name, value in rows:
        name = "" if name is None else str(name).strip()
        value = "" if value is None else str(value)
        if not name and not value.strip():
            continue
        if not name:
            raise InvalidInputError(f"A {what} row has a value but no name.", hint="Name it, or clear the row.")
        pairs.append((name, value))
    return pairs


def _unique(pairs: list[tuple[str, str]], what: str, *, case_insensitive: bool = False) -> dict[str, str]:
    seen: dict[str, str] = {}
    names: set[str] = set()
    for name, value in pairs:
        folded = name.lower() if case_insensitive else name
        if folded in names:
            raise InvalidInputError(f"The {what} {name!r} appears twice: keep one row.")
        names.add(folded)
        seen[name] = value
    return seen


def inject_connection_key(body: Any, connection_key: str) -> Any:
    """A custom action's JSON body with `connectionKey` set to the connection used (Pica requires it)."""
    if body is None:
        return {"connectionKey": connection_key}
    if not isinstance(body, dict):
        raise InvalidInputError("This is a Pica custom action: its JSON body must be an object "
                                "(the console adds \"connectionKey\" to it).")
    return {**body, "connectionKey": connection_key}


def prepare(draft: RequestDraft, *, max_body: int = MAX_REQUEST_BODY_BYTES) -> PreparedRequest:
    """Check every part of a draft and build the request; InvalidInputError (nothing sent) when a part is wrong."""
    method = (draft.method or "").upper()
    if method not in PASSTHROUGH_METHODS:
        raise InvalidInputError(f"Method {method or '(none)'} is not supported by Pica's passthrough "
                                f"(use {', '.join(PASSTHROUGH_METHODS)}).")
    key = validation.connection_key(draft.connection_key or "")
    action_id = validation.action_id(draft.action_id or "")
    path = validation.passthrough_path(fill_path(draft.path_template or "", draft.path_values))
    query = _pairs(draft.query, "query parameter")
    headers = _unique(_pairs(draft.headers, "header"), "header", case_insensitive=True)
    for what, tab, pairs in (("header", "Headers", headers.items()), ("query parameter", "Params", query)):
        for name, value in pairs:
            if value == REDACTED:
                raise InvalidInputError(
                    f"The value of {what} {name} was redacted in history: enter it again.",
                    hint=f"Credentials are never stored: type it again in the builder's {tab} tab (from History, "
                         "Load into builder first: Replay sends only what was stored).")
    headers = validation.headers(headers)

    kind = draft.body_kind if draft.body_kind in BODY_KINDS else "none"
    prepared = PreparedRequest(method, path, key, action_id, query, headers, kind)
    if kind == "json":
        prepared.json_body = parse_json_body(draft.body_text)
        prepared.json_text = None if _encodes_as_typed(draft.body_text) else draft.body_text
    elif kind in ("form", "multipart"):
        prepared.form = _unique(_pairs(draft.form, "form field"), "form field")
        if kind == "multipart":
            prepared.files = list(draft.files)
            if not prepared.files and not prepared.form:
                raise InvalidInputError("The multipart body is empty: add a field or a file, or choose body 'none'.")
    elif kind == "raw":
        prepared.content = draft.body_text.encode("utf-8")
    if draft.custom:
        if kind in ("none", "json"):
            prepared.body_kind = "json"
            if prepared.json_text is not None:  # encoded again with connectionKey, it would say something else
                raise InvalidInputError(
                    "This is a Pica custom action: the console adds \"connectionKey\" to its JSON body and sends it "
                    "encoded again, which would drop a key written twice or change a number longer than a float "
                    "holds.", hint="Write each key once, and a very long number as a string.")
            prepared.json_body = inject_connection_key(prepared.json_body, key)
        elif kind in ("form", "multipart"):
            prepared.form = {**(prepared.form or {}), "connectionKey": key}
        else:
            raise InvalidInputError("A Pica custom action needs connectionKey in its body: use a JSON or form body.")

    size = prepared.body_bytes()
    if size > max_body:
        raise InvalidInputError(f"The request body is {size:,} bytes; the console sends at most {max_body:,} bytes "
                                f"({format_size(max_body)}).", hint="Send a smaller body, or call Pica from code.")
    # The client's own checks (method, path, headers, key, action id, one body) — run once more so that what the
    # console accepts is exactly what the client will send.
    PassthroughCall.build(method, path, **prepared.client_kwargs())
    return prepared


def preview(prepared: PreparedRequest) -> str:
    """What Send sends, as an HTTP request's head: the request line and the headers typed, a credential's value
    hidden (the console adds its own x-pica-* ones), then the body's kind and size. A header shown nowhere but its
    field went unnoticed when the field had not taken it (Tab to its eye icon leaves a password field unsaved)."""
    masked = [(k, "MASKEDVALUE" if is_sensitive_query(k) else v) for k, v in prepared.query]
    url = str(httpx.URL(prepared.url("")).copy_with(params=masked or None)).replace("MASKEDVALUE", "••••••")
    lines = [f"{prepared.method} {url}"]
    lines += [f"{name}: {'••••••' if is_sensitive_header(name) else value}" for name, value in prepared.headers.items()]
    if prepared.body_kind != "none":
        kind = {"json": "JSON", "form": "form-encoded", "multipart": "multipart", "raw": "raw"}[prepared.body_kind]
        lines += ["", f"({kind} body, {format_size(prepared.body_bytes())})"]
    return "\n".join(lines)


# --- permissions --------------------------------------------------------------------------------------------
def send_refusal(method: str, connection_key: str, *, can_write: bool, why_not_write: str | None,
                 live_confirmed: bool) -> str | None:
    """Why this send may not go ahead (None: it may). Non-GET needs the console_write permission and, on a live
    connection, an explicit confirmation."""
    if method.upper() == "GET":
        return None
    if not can_write:
        return why_not_write or "You may not send writes from the console."
    if needs_live_confirmation(method, connection_key) and not live_confirmed:
        return (f"{method.upper()} on a live connection changes real data: tick the confirmation box "
                "before sending.")
    return None


def needs_live_confirmation(method: str, connection_key: str) -> bool:
    return method.upper() != "GET" and validation.key_environment(connection_key or "") == "live"


# --- responses ----------------------------------------------------------------------------------------------
@dataclass
class ResponseView:
    """A passthrough response ready to show: status and its meaning, timings, the body in its best form."""

    status: int
    reason: str
    elapsed_ms: float
    size: int
    content_type: str
    passthrough_headers: dict[str, str]
    kind: str  # json | records | text | binary | empty
    display: str  # pretty JSON or text, cut at the display limit
    records: list[dict] | None = None
    records_key: str | None = None  # where the records were found ("messages", or None for a bare list)
    around: dict[str, str] = field(default_factory=dict)  # the envelope's other fields (nextPageToken…), as JSON
    truncated: bool = False
    note: str | None = None
    meaning: str | None = None
    retry_after: float | None = None
    body: bytes = field(default=b"", repr=False)  # the whole body, for the download button

    @property
    def extension(self) -> str:
        if self.kind in ("json", "records"):
            return "json"
        if self.kind == "binary":  # a PDF saved as .txt opens in no viewer
            guessed = mimetypes.guess_extension(self.content_type.split(";")[0].strip().lower(), strict=False)
            return guessed[1:] if guessed else "bin"
        return "txt"


UPSTREAM_RETRY_HEADERS = ("retry-after", "x-ratelimit-reset", "x-rate-limit-reset")  # what platforms send


def status_meaning(status: int, retry_after: float | None = None) -> str | None:
    """What an upstream error status means for the person testing the connection (None for success)."""
    if status < 400:
        return None
    wait = f"retry after {retry_after:.0f} s" if retry_after is not None else "retry later"
    if status == 401:
        return ("401: the platform refused the connection's credentials — the connection needs reconnecting "
                "(open Connect for the same identity and platform).")
    if status == 403:
        return "403: the platform refused access — the connection lacks a permission or scope this action needs."
    if status == 404:
        return "404: the platform found nothing at this path — check the path variables and the action."
    if status == 429:
        return f"429: the platform is rate-limiting this connection — {wait}."
    if status in (400, 422):
        return f"{status}: the platform refused the request — check the body and parameters against the knowledge."
    if status >= 500:
        return f"{status}: the platform failed or is unavailable — {wait}."
    return f"{status}: the platform answered with an error."


def _records(value: Any) -> tuple[list[dict] | None, str | None]:
    """A list of records in the body: the body itself, or the one list of objects inside an envelope."""
    if isinstance(value, list):
        return (value, None) if value and all(isinstance(v, dict) for v in value) else (None, None)
    if isinstance(value, dict):
        lists = [(k, v) for k, v in value.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
        if len(lists) == 1:
            return lists[0][1], lists[0][0]
    return None, None


def _short_json(value: Any, limit: int = 120) -> str:
    """A value as one line of JSON, cut at `limit` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.3g} KiB"
    return f"{size / (1024 * 1024):.3g} MiB"


def response_view(response: PassthroughResponse, *, display_limit: int, secret: str | None = None) -> ResponseView:
    """Status, meaning, headers and the body as pretty JSON, a records table or text, cut for display."""
    body, masked = scrub_body(response.body or b"", secret)  # the platform echoed the secret: not to the browser
    headers = {k.lower(): v for k, v in response.headers.items()}
    upstream = redact_headers(response.passthrough_headers, secret)
    wait = retry_after(upstream, UPSTREAM_RETRY_HEADERS) if response.status in (429, 503) else None
    view = ResponseView(
        status=response.status, reason=httpx.codes.get_reason_phrase(response.status), elapsed_ms=response.elapsed_ms,
        size=len(body), content_type=headers.get("content-type", ""), passthrough_headers=upstream, kind="empty",
        display="", meaning=status_meaning(response.status, wait), retry_after=wait, body=body,
        note="The body contained the Pica secret: it is masked as ****." if masked else None)
    if not body:
        return view
    parsed: Any = None
    is_json = False
    if len(body) <= display_limit * 10:  # past that, pretty-printing costs more than it shows
        try:
            parsed = json.loads(body)
            is_json = True
        except (ValueError, RecursionError) as exc:  # not JSON, or nested too deeply to read: shown as text
            if "json" in view.content_type.lower():
                problem = ("is nested too deeply to read" if isinstance(exc, RecursionError)
                           else f"does not parse ({exc})")
                view.note = " ".join(filter(None, (view.note, f"The body is labelled {view.content_type.split(';')[0]} "
                                                              f"but {problem}: shown as text.")))
    if is_json:
        pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
        records, key = _records(parsed)
        view.kind = "records" if records else "json"
        if records:
            view.records = records[:MAX_TABLE_ROWS]
            view.records_key = key
            if key is not None:  # the paging token and counts beside the records: the table alone hid them
                view.around = {k: _short_json(v) for k, v in parsed.items() if k != key}
            if len(records) > MAX_TABLE_ROWS:
                view.note = " ".join(filter(None, (view.note, f"The table shows the first {MAX_TABLE_ROWS} of "
                                                              f"{len(records)} records.")))
        text = pretty
    else:
        try:
            text = body.decode("utf-8")
            view.kind = "text"
        except UnicodeDecodeError:
            view.kind = "binary"
            view.note = " ".join(filter(None, (view.note, f"A binary body of {format_size(len(body))}: download it "
                                                          "to inspect it.")))
            return view
    encoded = text.encode("utf-8")
    if len(encoded) > display_limit:
        view.display = encoded[:display_limit].decode("utf-8", errors="ignore")
        view.truncated = True
        cut = (f"The body is {format_size(len(body))}: showing the first {format_size(display_limit)}. "
               "Download it for the whole body.")
        view.note = f"{cut} {view.note}" if view.note else cut
    else:
        view.display = text
    return view


# --- redaction and history ------------------------------------------------------------------------------------
def is_sensitive_header(name: str) -> bool:
    lowered = name.lower().replace("_", "-")
    if lowered.startswith(PASSTHROUGH_HEADER_PREFIX):
        lowered = lowered[len(PASSTHROUGH_HEADER_PREFIX):]
    # A header named for a key is a credential in most APIs (AccessKey, X-Functions-Key, X-Master-Key); the few
    # that are not (an idempotency key) only have to be typed again to replay.
    return (lowered in _SENSITIVE_EXACT or any(part in lowered for part in _SENSITIVE_PARTS)
            or lowered.endswith("key"))




# Query parameters whose values are credentials: a name that holds one of these words (api_token, private_token,
# X-Amz-Security-Token, app_key, client_secret, sig…), compared without case or separators, unless it is a paging
# cursor or a search word, which History must keep to replay a page. A name taken wrongly for a credential only has
# to be typed again to replay; one missed was stored and exported.
_CREDENTIAL_WORDS = ("token", "key", "secret", "auth", "password", "passwd", "passphrase", "credential",
                     "signature", "session", "jwt")
_CREDENTIAL_NAMES = {"sig", "code", "sas"}
_NOT_CREDENTIALS = {"pagetoken", "nextpagetoken", "prevpagetoken", "previouspagetoken", "synctoken",
                    "continuationtoken", "nextsynctoken", "sortkey", "keyword", "keywords", "author", "authors",
                    "authorid", "authorname"}


def is_sensitive_query(name: str) -> bool:
    """Whether a query parameter's value is a credential (`?access_token=`, `?key=`, `?api_token=`)."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    if squashed in _NOT_CREDENTIALS:
        return False
    return squashed in _CREDENTIAL_NAMES or any(word in squashed for word in _CREDENTIAL_WORDS)


def redact_headers(headers: Mapping[str, str], secret: str | None) -> dict[str, str]:
    """Headers safe to store or show: credential values replaced, the secret scrubbed from the rest (names too)."""
    return {scrub(str(name), secret) or "": REDACTED if is_sensitive_header(name) else (scrub(str(value), secret) or "")
            for name, value in headers.items()}


def scrub_body(body: bytes, secret: str | None) -> tuple[bytes, bool]:
    """`body` with the secret masked, and whether it was there. The console and history decode bodies to show
    them, and decoding can spell the secret where the bytes do not: JSON in UTF-16 or UTF-32 (json.loads reads
    them), and escapes (\\u0073k_…, or \\/ for a slash in the key). Such a body is decoded and scrubbed."""
    if not secret or not body:
        return body, False
    found = secret.encode() in body
    body = body.replace(secret.encode(), SECRET_MASK.encode())
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:  # not text: nothing shows it decoded
        return body, found
    if secret in text:  # spelt in UTF-16 or UTF-32
        text, found = scrub(text, secret) or "", True
        body = text.encode(encoding)
    if "\\" in text:  # any JSON escape may spell a character of the key (\u0073, \/, \" or \\ in it)
        hits = []

        def masked(match: re.Match) -> str:
            """One JSON string, written again only if it spells the key: a key written twice, a long number and
            the text around JSON (NDJSON, server-sent events) stay as they were."""
            try:
                value = json.loads(match.group())
            except ValueError:
                return match.group()
            if secret not in value:
                return match.group()
            hits.append(True)
            return json.dumps(scrub(value, secret), ensure_ascii=False)

        text = _JSON_STRING.sub(masked, text)
        if hits:
            return text.encode(encoding, errors="replace"), True
    return body, found


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def truncate(text: str | None, limit: int) -> tuple[str | None, bool]:
    """At most `limit` UTF-8 bytes of `text`, cut at a character boundary; (text, was it cut)."""
    if text is None:
        return None, False
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text, False
    return encoded[:limit].decode("utf-8", errors="ignore"), True


def request_body_text(prepared: PreparedRequest) -> str | None:
    """The request body as history stores it: what was sent (JSON, urlencoded form), or multipart's fields and
    file names (file contents are not stored)."""
    if prepared.body_kind == "json":
        return prepared.json_bytes().decode("utf-8")
    if prepared.body_kind == "form":
        return urlencode(list((prepared.form or {}).items()))
    if prepared.body_kind == "multipart":
        return json.dumps({
            "fields": [[k, v] for k, v in (prepared.form or {}).items()],
            "files": [{"field": f.field, "filename": f.filename, "content_type": f.content_type,
                       "size": len(f.content)} for f in prepared.files],
        }, ensure_ascii=False)
    if prepared.body_kind == "raw":
        return body_text(prepared.content or b"")
    return None


def body_text(body: bytes) -> str:
    """A body as history keeps it: its text, or, for a binary body (a NUL byte, which PDFs, images and archives
    hold and PostgreSQL's text refuses), what it was."""
    if b"\x00" in body:
        return f"[binary, {len(body):,} bytes: not kept]"
    return body.decode("utf-8", errors="replace")


def _without_spelt_secret(prepared: PreparedRequest, secret: str | None) -> PreparedRequest:
    """`prepared` for an export: its path decoded and masked when its percent-escapes spell the secret (scrubbing
    the export's text finds it only as typed)."""
    if secret and secret in unquote(prepared.path):
        return replace(prepared, path=scrub_spelt(prepared.path, secret) or "")
    return prepared


def make_record(prepared: PreparedRequest, *, response: PassthroughResponse | None = None,
                error: PicaError | None = None, actor: str, platform: str, action_title: str | None = None,
                secret: str | None, body_limit: int) -> PassthroughCallRecord:
    """A history row for one call: credentials redacted, the secret scrubbed, bodies cut at `body_limit` bytes."""
    sent = request_body_text(prepared)  # the secret masked however spelt: a body kept as typed may escape it
    request_body, request_cut = truncate(None if sent is None else body_text(scrub_body(sent.encode(), secret)[0]),
                                         body_limit)
    if prepared.body_kind == "raw" and b"\x00" in (prepared.content or b""):
        request_cut = True  # kept as "[binary, …]": a replay must not send that text as the body
    record = PassthroughCallRecord(
        at=utcnow(), actor=actor, environment=prepared.environment,
        connection_key=scrub(prepared.connection_key, secret) or "",  # every field typed by a user is scrubbed
        platform=platform, action_id=scrub(prepared.action_id, secret), action_title=scrub(action_title, secret) or None,
        method=prepared.method, path=scrub_spelt(prepared.display_path, secret) or "",
        query=[[scrub(k, secret) or "", REDACTED if is_sensitive_query(k) else scrub(v, secret) or ""]
               for k, v in prepared.query],
        request_headers=redact_headers(prepared.headers, secret), body_kind=prepared.body_kind,
        request_body=request_body, request_truncated=request_cut,
    )
    if response is not None:
        kept, response_cut = truncate(body_text(scrub_body(response.body or b"", secret)[0]), body_limit)
        record.status = response.status
        record.response_headers = redact_headers(response.headers, secret)
        record.response_body = kept or None
        record.response_truncated = response_cut
        record.response_size = len(response.body or b"")
        record.elapsed_ms = round(response.elapsed_ms, 2)
    if error is not None:
        record.status = error.status
        record.error = scrub_spelt(error.as_recorded(), secret)  # read later: a rate limit's wait as a clock time
        if outcome_unknown(prepared.method, error):  # its own hint said "retry": a second send may do it twice
            record.error = scrub_spelt(f"{error} — {OUTCOME_UNKNOWN}", secret)
    return record


OUTCOME_UNKNOWN = ("whether it was carried out is unknown: it went out and no answer came back. Check on the platform "
                   "before you send it again: a second send may do it twice.")


def outcome_unknown(method: str, error: PicaError) -> bool:
    """A write that went out and got no answer: done or not, nobody can say."""
    return error.maybe_delivered and method not in ("GET", "HEAD")


# --- sending ------------------------------------------------------------------------------------------------
@dataclass
class CallOutcome:
    """One sent call: the upstream's response, or Pica's own error; and its history row."""

    prepared: PreparedRequest
    response: PassthroughResponse | None = None
    error: PicaError | None = None
    record: PassthroughCallRecord | None = None
    not_recorded: str | None = None  # why the history (or the audit log) could not keep it: the call was sent

    @property
    def status(self) -> int | None:
        return self.response.status if self.response is not None else (self.error.status if self.error else None)

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.status < 400


def send(client: PicaClient, prepared: PreparedRequest) -> CallOutcome:
    """Send a prepared request. Upstream errors are responses; Pica's own errors are kept in the outcome."""
    try:
        response = client.passthrough(prepared.method, prepared.path, **prepared.client_kwargs())
    except InvalidInputError as exc:
        if exc.status is None:  # refused by the client before sending: not a call
            raise
        return CallOutcome(prepared, error=exc)
    except PicaError as exc:
        return CallOutcome(prepared, error=exc)
    return CallOutcome(prepared, response=response)


def run_call(client: PicaClient, store: Store, prepared: PreparedRequest, *, actor: str, platform: str,
             action_title: str | None, secret: str | None, body_limit: int) -> CallOutcome:
    """Send, store the redacted call in history, and audit it when it is not a GET."""
    outcome = send(client, prepared)
    record = make_record(prepared, response=outcome.response, error=outcome.error, actor=actor, platform=platform,
                         action_title=action_title, secret=secret, body_limit=body_limit)
    try:  # the call went out: its answer is shown whatever happens to its record
        outcome.record = store.record_call(record)
    except Exception as exc:  # noqa: BLE001 - the database's first line, not its statement (it holds the body)
        outcome.not_recorded = _first_line(exc, secret)
        log.warning("console call %s %s sent but not recorded: %s", prepared.method, record.path, outcome.not_recorded)
    if prepared.method != "GET":  # audited even when History could not keep it; scrubbed as the record is
        try:
            store.audit(actor=actor, action="console_call", target=record.connection_key,
                        outcome="ok" if outcome.ok else "error", method=prepared.method, path=record.path,
                        status=outcome.status, action_id=record.action_id,
                        history_id=outcome.record.id if outcome.record else None)
        except Exception as exc:  # noqa: BLE001 - the answer is still shown, with why it was not kept
            outcome.not_recorded = outcome.not_recorded or _first_line(exc, secret)
            log.warning("console call %s %s sent but not audited: %s", prepared.method, record.path,
                        _first_line(exc, secret))
    return outcome


def _first_line(exc: Exception, secret: str | None) -> str:
    """A database error as the reader is told it: its name and first line, not its statement (it holds the body)."""
    return scrub(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}", secret) or ""


# --- replay and loading -----------------------------------------------------------------------------------------
def draft_from_record(record: PassthroughCallRecord) -> RequestDraft:
    """A stored call as a builder draft (raw mode: the path is already filled)."""
    draft = RequestDraft(
        connection_key=record.connection_key, action_id=record.action_id, method=record.method,
        path_template=record.path, query=[(str(k), str(v)) for k, v in (record.query or [])],
        headers=list((record.request_headers or {}).items()), body_kind=record.body_kind or "none")
    body = record.request_body or ""
    if draft.body_kind in ("json", "raw"):
        draft.body_text = body
    elif draft.body_kind == "form":
        draft.form = parse_qsl(body, keep_blank_values=True)
    elif draft.body_kind == "multipart":
        draft.form = [(str(k), str(v)) for k, v in _stored_multipart(body).get("fields", [])]
    return draft


def _stored_multipart(body: str | None) -> dict:
    try:
        stored = json.loads(body) if body else {}
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def replay_request(record: PassthroughCallRecord, *, for_export: bool = False) -> PreparedRequest:
    """The exact request a stored call sent; InvalidInputError when history did not keep enough to repeat it."""
    if record.request_truncated:
        raise InvalidInputError("This call's request body was longer than history keeps, so it cannot be repeated "
                                "exactly.", hint="Load it into the builder and paste the whole body.")
    if record.body_kind == "multipart" and _stored_multipart(record.request_body).get("files"):
        raise InvalidInputError("This call sent files, and history does not keep file contents.",
                                hint="Load it into the builder and attach the files again.")
    draft = draft_from_record(record)
    if for_export:  # credentials become environment variables in an export: the stored marker is fine
        draft.headers = [(k, "" if v == REDACTED else v) for k, v in draft.headers]
        draft.query = [(k, "" if v == REDACTED else v) for k, v in draft.query]
    # Bodies are as sent: no connectionKey injection, no size limit beyond what was sent then.
    return prepare(draft, max_body=max(MAX_REQUEST_BODY_BYTES, len((record.request_body or "").encode())))


# --- exports ----------------------------------------------------------------------------------------------------
def _env_name(name: str, what: str = "header") -> str:
    return ("HEADER_" if what == "header" else "QUERY_") + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()


@dataclass(frozen=True)
class _Credential:
    """A credential an export reads from the environment instead of holding it."""

    variable: str
    name: str
    what: str  # "header" or "query parameter"
    position: int | None = None  # a query parameter's, in the query


def _credentials(prepared: PreparedRequest, secret: str | None = None) -> list[_Credential]:
    """Every credential of the request, each with a variable of its own: a name that repeats (two access_token
    parameters) or two that read alike (api-key and api_key) shared one, and so one value where two were sent.
    Names and variables say the secret masked, should a name hold it."""
    taken: dict[str, int] = {}

    def variable(base: str) -> str:
        name, n = base, 1
        while name in taken:  # api_key, api-key and api_key_2 would make QUERY_API_KEY_2 twice
            n += 1
            name = f"{base}_{n}"
        taken[name] = n
        return name

    def shown(name: str) -> str:
        return scrub(name, secret) or ""

    found = [_Credential(variable(_env_name(shown(name))), name, "header") for name in prepared.headers
             if is_sensitive_header(name)]
    return found + [_Credential(variable(_env_name(shown(name), "query")), name, "query parameter", position)
                    for position, (name, _) in enumerate(prepared.query) if is_sensitive_query(name)]


def export_variables(prepared: PreparedRequest, secret: str | None = None) -> list[tuple[str, str]]:
    """(variable, header or query parameter) for each credential an export reads from the environment."""
    return [(c.variable, scrub(c.name, secret) or "") for c in _credentials(prepared, secret)]


def _curl_query(prepared: PreparedRequest, base_url: str, credentials: list[_Credential]) -> tuple[str, list[str]]:
    """The request's URL for a shell without its credential query parameters, and curl's options that add each,
    read from its variable and URL-encoded by curl (`--url-query`, curl 7.87 or later): after the others."""
    url = httpx.URL(prepared.url(base_url)).copy_with(
        params=[(k, v) for k, v in prepared.query if not is_sensitive_query(k)] or None)
    # The name encoded here: curl encodes only the value ("client secret" made a URL it refused, and a name
    # starting with + switched it to sending the value unencoded).
    return shlex.quote(str(url)), [f'--url-query {shlex.quote(quote(c.name, safe="") + "=")}"${c.variable}"'
                                   for c in credentials if c.position is not None]


# A body longer than this goes to curl on its standard input: Linux refuses an argument over 128 KiB ("Argument
# list too long"), and printf, a bash builtin, is not bound by it.
CURL_ARGUMENT_LIMIT = 100_000


def export_curl(prepared: PreparedRequest, base_url: str, *, secret: str | None = None) -> str:
    """A curl command that sends this request; the secret is read from $PICA_SECRET_KEY (and masked should it
    appear in the request itself), a credential header's value from its variable, which must be set (curl sent an
    empty header's request without it, silently)."""
    # The message is expanded inside double quotes: a header name is named only when nothing in it is shell syntax.
    prepared = _without_spelt_secret(prepared, secret)
    credentials = _credentials(prepared, secret)
    guard = " ".join(f'"${{{c.variable}:?set {c.variable} to the value of the '
                     f'{c.name + " " if re.fullmatch(r"[A-Za-z0-9_-]+", c.name) else ""}{c.what}}}"'
                     for c in credentials)
    url, url_queries = _curl_query(prepared, base_url, credentials)
    variables = {c.name: c.variable for c in credentials if c.position is None}
    lines = [f"curl -sS -X {prepared.method} {url}", *url_queries,
             f'-H "{SECRET_HEADER}: ${SECRET_ENV}"',
             f"-H {shlex.quote(f'{CONNECTION_HEADER}: {prepared.connection_key}')}",
             f"-H {shlex.quote(f'{ACTION_HEADER}: {prepared.action_id}')}"]
    for name, value in prepared.headers.items():
        if name in variables:
            lines.append(f'-H {_shell_header_name(name)}${variables[name]}"')
        else:
            lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    # As httpx sends it: its own Content-Type unless one was given (curl would send both); --data-raw, which
    # reads no @file; a form encoded whole (--data-urlencode leaves a field's name as it is).
    data = stdin = None  # the body curl is given as an argument; what it reads on its standard input
    if prepared.body_kind == "json":
        lines += [] if prepared.typed else ["-H 'content-type: application/json'"]
        data = body_text(scrub_body(prepared.json_bytes(), secret)[0])  # as typed: the key may be escaped
    elif prepared.body_kind == "form" and prepared.form:  # an empty one sends nothing, as httpx does
        data = urlencode(list(prepared.form.items()))
    elif prepared.body_kind == "multipart":
        for k, v in (prepared.form or {}).items():
            if len(v.encode()) > CURL_ARGUMENT_LIMIT and stdin is None:  # one field can come on standard input
                stdin = v
                lines.append(f"-F {shlex.quote(f'{k}=<-')}")
            else:
                lines.append(f"--form-string {shlex.quote(f'{k}={v}')}")
        lines += [f"-F {shlex.quote(f'{f.field}=@{_curl_quoted(f.filename)};type={f.content_type}')}"
                  for f in prepared.files]
    elif prepared.body_kind == "raw":
        lines += [] if prepared.typed else ["-H 'content-type:'"]  # httpx sends raw content with none; curl a form's
        data = scrub_body(prepared.content or b"", secret)[0].decode("utf-8", errors="replace")
    if data is not None and len(data.encode()) > CURL_ARGUMENT_LIMIT:
        stdin, data = data, None
        lines.append("--data-binary @-")
    if data is not None:
        lines.append(f"--data-raw {shlex.quote(data)}")
    before = [f": {guard} &&"] if guard else []
    if stdin is not None:
        before.append(f"printf '%s' {shlex.quote(stdin)} |")
    return scrub(" \\\n  ".join([*before, *lines]), secret) or ""


def _shell_header_name(name: str) -> str:
    """`"name: ` for the usual names, or the name single-quoted apart: HTTP allows ` $ ' | in a header name, and a
    shell runs them inside double quotes."""
    return f'"{name}: ' if re.fullmatch(r"[A-Za-z0-9_-]+", name) else shlex.quote(f"{name}: ") + '"'


def _curl_quoted(value: str) -> str:
    """A value inside curl's -F syntax, where ';' and ',' would start another option: in double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def export_httpx(prepared: PreparedRequest, base_url: str, *, secret: str | None = None) -> str:
    """Python (httpx) code that sends this request; the secret is read from the PICA_SECRET_KEY variable."""
    prepared = _without_spelt_secret(prepared, secret)
    headers = [f'        "{SECRET_HEADER}": os.environ["{SECRET_ENV}"],  # ${SECRET_ENV}',
               f"        {CONNECTION_HEADER!r}: {prepared.connection_key!r}"  # beyond ASCII: as the console, UTF-8
               + ("" if prepared.connection_key.isascii() else ".encode()") + ",",
               f"        {ACTION_HEADER!r}: {prepared.action_id!r},"]
    credentials = _credentials(prepared, secret)
    variables = {c.name: c.variable for c in credentials if c.position is None}
    in_query = {c.position: c.variable for c in credentials if c.position is not None}
    for name, value in prepared.headers.items():
        shown = f'os.environ["{variables[name]}"]' if name in variables else repr(value)
        headers.append(f"        {name!r}: {shown},")
    url = f"{base_url.rstrip('/')}/v1/passthrough/{prepared.path}"
    args = [f"    {prepared.method!r},", f"    {url!r},"]
    if prepared.query:
        params = ", ".join(f'({name!r}, os.environ["{in_query[n]}"])' if n in in_query else repr((name, value))
                           for n, (name, value) in enumerate(prepared.query))
        args.append(f"    params=[{params}],")
    args += ["    headers={", *headers, "    },"]
    if prepared.body_kind == "json" and (prepared.json_body is None  # httpx reads json=None as no body
                                         or prepared.json_text is not None):  # json= would change it
        if not prepared.typed:
            args.insert(-1, "        'Content-Type': 'application/json',")  # the last of headers={…}
        args.append(f"    content={scrub_body(prepared.json_bytes(), secret)[0]!r},")
    elif prepared.body_kind == "json":  # json=, as one would write it, when it sends what was typed
        literal = pprint.pformat(prepared.json_body, width=100, sort_dicts=False).replace("\n", "\n    ")
        args.append(f"    json={literal},")
    elif prepared.body_kind == "form" and prepared.form:
        args.append(f"    data={dict(prepared.form)!r},")
    elif prepared.body_kind == "multipart":  # fields as (None, value) parts: httpx sends data= alone urlencoded
        parts = [f"({k!r}, (None, {v!r}))" for k, v in (prepared.form or {}).items()]
        parts += [f"({f.field!r}, ({f.filename!r}, open({f.filename!r}, 'rb'), {f.content_type!r}))"
                  for f in prepared.files]
        args.append(f"    files=[{', '.join(parts)}],")
    elif prepared.body_kind == "raw":
        args.append(f"    content={scrub_body(prepared.content or b'', secret)[0]!r},")
    args.append("    timeout=30.0,")
    code = "\n".join(["import os", "", "import httpx", "", "response = httpx.request(", *args, ")",
                      "print(response.status_code)", "print(response.text)"])
    return scrub(code, secret) or ""


# --- comparing two calls ----------------------------------------------------------------------------------------
@dataclass
class Comparison:
    left: str
    right: str
    diff: str  # unified diff of the bodies as history kept them ("" when identical)
    summary: list[dict[str, Any]]  # rows: field, left, right, same
    cut: bool = False  # history kept only the first part of one body or both
    sizes: tuple[int | None, int | None] = (None, None)  # the whole bodies' sizes, as received

    @property
    def same_body(self) -> bool:
        """Whether the bodies are known to be the same: both whole in history, and not both missing."""
        return not self.diff and not self.cut and bool(self.left or self.right)

    @property
    def verdict(self) -> str:
        """What can be said of the two bodies, when the diff is empty or says less than the whole."""
        if not self.left and not self.right:
            return "Neither call has a response body to compare."
        if not self.cut:
            return "" if self.diff else "The response bodies are identical."
        if not self.diff and self.sizes[0] != self.sizes[1]:
            return ("The response bodies differ: their sizes do (see above), though the part history keeps of each "
                    "is the same.")
        return ("History keeps only the first part of a long body: " + (
            "they differ already there." if self.diff else
            "that part is the same in both, and whether they differ after it is unknown."))


def pretty_json(body: str | None, *, sort_keys: bool = False) -> str:
    """A JSON body indented, its keys in the order sent (or sorted: a comparison ignores their order); other text
    as it is."""
    if not body or not _encodes_as_typed(body):  # a key twice, a 20-digit number: shown as sent, not as parsed
        return body or ""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False, sort_keys=sort_keys)
    except (ValueError, RecursionError):
        return body


def compare(left: PassthroughCallRecord, right: PassthroughCallRecord) -> Comparison:
    """Two stored calls side by side: a field summary and a unified diff of their (pretty, key-sorted) bodies."""
    a, b = (pretty_json(r.response_body, sort_keys=True) for r in (left, right))
    diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), f"#{left.id}", f"#{right.id}", lineterm=""))
    fields = (("status", "status"), ("method", "method"), ("path", "path"), ("action", "action_title"),
              ("connection", "connection_key"), ("size (bytes)", "response_size"), ("elapsed (ms)", "elapsed_ms"))
    summary = [{"field": label, "left": getattr(left, attr), "right": getattr(right, attr),
                "same": getattr(left, attr) == getattr(right, attr)} for label, attr in fields]
    return Comparison(a, b, diff, summary, cut=bool(left.response_truncated or right.response_truncated),
                      sizes=(left.response_size, right.response_size))


# --- history helpers for the page ------------------------------------------------------------------------------
def history_label(record: PassthroughCallRecord) -> str:
    status = record.status if record.status is not None else "—"
    title = f" · {record.action_title}" if record.action_title else ""
    who = f" · {identity}" if (identity := identity_of_key(record.connection_key)) else ""
    return f"#{record.id} · {status} · {record.method} {record.path}{title}{who}"


_STATUS = re.compile(r"[1-9][0-9]{2}")
_STATUS_CLASS = re.compile(r"([1-9])xx", re.IGNORECASE)


def status_filter(text: str) -> tuple[int, int] | None:
    """The history's Status filter as the statuses it takes, lowest and highest: 429 → (429, 429), 4xx → (400,
    499); None when blank. InvalidInputError unless it is a three-digit status or class. Platforms may answer any
    three digits (LinkedIn's 999), so 100–999; ASCII digits only: `isdigit()` takes "²" (which int() refuses), and
    a 20-digit number overflows the database's integer."""
    text = (text or "").strip()
    if not text:
        return None
    if match := _STATUS_CLASS.fullmatch(text):
        return int(match[1]) * 100, int(match[1]) * 100 + 99
    if not _STATUS.fullmatch(text):
        raise InvalidInputError("Status must be a three-digit HTTP status such as 200 or 429, or a class such as 4xx.")
    return int(text), int(text)


def platform_of_key(connection_key: str) -> str:
    """A connection key's platform (its second segment): test::gmail::default::… → gmail."""
    parts = (connection_key or "").split("::")
    return parts[1] if len(parts) > 1 else ""


def identity_of_key(connection_key: str) -> str:
    """A connection key's identity part, as Pica writes it (…::<32 hex>|user-123 → user-123; spaces and colons of
    the identity become dashes there); "" for a connection without identity."""
    return (connection_key or "").partition("|")[2]


def flatten_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records for a table: nested objects become dotted columns, lists and deeper values JSON text."""
    def flat(value: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, item in value.items():
            column = f"{prefix}{name}"
            if isinstance(item, Mapping) and depth < 2:
                out.update(flat(item, f"{column}.", depth + 1))
            elif isinstance(item, (list, dict)):
                out[column] = json.dumps(item, ensure_ascii=False)
            else:
                out[column] = item
        return out

    return [flat(record) for record in records]


def as_pairs(rows: Sequence[Mapping[str, Any]], name: str = "name", value: str = "value") -> list[tuple[Any, Any]]:
    """Editor rows ({name, value} dicts, NaN for blanks) → pairs for a draft."""
    pairs = []
    for row in rows:
        n, v = row.get(name), row.get(value)
        pairs.append((None if _blank(n) else n, None if _blank(v) else v))
    return pairs


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
