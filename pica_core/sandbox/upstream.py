"""Simulated upstream APIs behind /v1/passthrough.

Each platform answers in its own style (Gmail's `messages`, Stripe's `object: list`,
Slack's `ok: true` …). Responses are deterministic for a given connection, method and
path, so a replayed request gets the same answer. A failed connection answers like an
expired OAuth token (401); a degraded one fails every other call (429, then 503).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from .catalog import CatalogAction

_WORDS = ("quarterly", "report", "launch", "invoice", "renewal", "onboarding", "roadmap", "sync",
          "review", "kickoff", "budget", "hiring", "feedback", "release", "migration", "audit")
_NAMES = ("Ava Nguyen", "Ben Okafor", "Chloe Schmidt", "Diego Rossi", "Emma Tanaka", "Farah Haddad")


@dataclass
class UpstreamResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _noun(segments: tuple[str, ...], platform: str) -> str:
    for segment in reversed(segments):
        if segment.startswith(("{{", "${")) or re.fullmatch(r"v\d+(\.\d+)?", segment):
            continue
        noun = re.split(r"[.:$]", segment)[0]  # orders.json, 1234.json, Sheet1!A1:append
        if noun and not re.fullmatch(r"[0-9a-fA-F-]{6,}|\d+|me", noun):
            return noun
    return platform


def _item_id(method: str, segments: tuple[str, ...], action: CatalogAction | None) -> str | None:
    """The id a path names as its last segment's variable (`orders/{{order_id}}.json`), or None for a list."""
    if action is not None:
        return action.last_variable(method, segments) or None
    return segments[-1] if segments and re.fullmatch(r"[0-9a-zA-Z_-]*\d[0-9a-zA-Z_-]*", segments[-1]) else None


def _record(rng: random.Random, platform: str, noun: str, n: int) -> dict:
    name = rng.choice(_NAMES)
    words = " ".join(rng.sample(_WORDS, 2)).capitalize()
    rid = f"{rng.getrandbits(48):012x}"
    created = f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    if platform == "gmail":
        return {"id": rid, "threadId": f"{rng.getrandbits(48):012x}", "labelIds": ["INBOX"],
                "snippet": f"{words}: notes from {name}", "internalDate": str(1_760_000_000_000 + n * 3_600_000)}
    if platform == "stripe":
        prefix = {"invoices": "in", "subscriptions": "sub", "customers": "cus", "charges": "ch"}.get(noun, noun[:3])
        return {"id": f"{prefix}_{rid}", "object": noun.rstrip("s"), "amount_due": rng.randint(500, 90_000),
                "currency": "usd", "status": rng.choice(["paid", "open", "draft"]), "created": 1_760_000_000 + n}
    if platform == "github":
        return {"id": rng.randint(10_000, 9_999_999), "number": n + 1, "title": words,
                "state": rng.choice(["open", "closed"]), "user": {"login": name.split()[0].lower()},
                "created_at": created}
    if platform == "slack":
        return {"id": f"C{rid[:9].upper()}", "name": words.lower().replace(" ", "-"), "is_private": False,
                "num_members": rng.randint(2, 300), "created": 1_700_000_000 + n}
    if platform in {"hubspot", "attio"}:
        return {"id": str(rng.randint(10_000, 99_999_999)), "properties": {"name": f"{words} {name.split()[1]}",
                "email": f"{name.split()[0].lower()}@example.com"}, "createdAt": created, "archived": False}
    if platform == "salesforce":
        return {"attributes": {"type": "Account"}, "Id": f"001{rid[:15].upper()}", "Name": f"{name.split()[1]} Ltd"}
    if platform == "notion":
        return {"object": "page", "id": f"{rid}-{rng.getrandbits(32):08x}", "created_time": created,
                "properties": {"title": {"title": [{"plain_text": words}]}}}
    if platform in {"jira", "zendesk", "intercom", "linear", "asana"}:
        return {"id": str(rng.randint(1000, 999_999)), "subject": words, "title": words, "status": rng.choice(
            ["open", "pending", "solved", "in_progress"]), "assignee": name, "created_at": created}
    if platform == "google-calendar":
        return {"kind": "calendar#event", "id": rid, "status": "confirmed", "summary": words,
                "start": {"dateTime": created}, "organizer": {"email": f"{name.split()[0].lower()}@example.com"}}
    if platform in {"google-drive", "google-sheets"}:
        return {"kind": "drive#file", "id": rid, "name": f"{words}.xlsx", "mimeType": "application/vnd.google-apps.spreadsheet"}
    return {"id": rid, "name": words, "owner": name, "created_at": created}


def _list_body(platform: str, noun: str, records: list[dict], path: str) -> object:
    if platform == "gmail":
        return {noun: records, "resultSizeEstimate": len(records), "nextPageToken": "08213742910"}
    if platform == "stripe":
        return {"object": "list", "url": f"/v1/{noun}", "has_more": False, "data": records}
    if platform == "github":
        return records
    if platform == "slack":
        return {"ok": True, "channels" if noun.startswith("conversations") else noun.split(".")[0]: records,
                "response_metadata": {"next_cursor": ""}}
    if platform == "hubspot":
        return {"results": records, "paging": {"next": {"after": str(len(records))}}}
    if platform == "salesforce":
        return {"totalSize": len(records), "done": True, "records": records}
    if platform == "notion":
        return {"object": "list", "results": records, "has_more": False, "next_cursor": None}
    if platform in {"outlook-mail", "teams"}:
        return {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{noun}", "value": records}
    if platform == "google-calendar":
        return {"kind": "calendar#events", "summary": "primary", "items": records}
    if platform == "google-sheets":
        return {"range": "Sheet1!A1:C3", "majorDimension": "ROWS", "values": [["Name", "Plan", "MRR"],
                ["Acme", "pro", "1200"], ["Globex", "team", "480"]]}
    if platform == "linear":
        return {"data": {"issues": {"nodes": records}}}
    return {noun: records, "count": len(records), "next_page": None}


def _unauthorized(platform: str) -> object:
    if platform in {"gmail", "google-calendar", "google-drive", "google-sheets"}:
        return {"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 "
                          "access token, login cookie or other valid authentication credential.",
                          "status": "UNAUTHENTICATED"}}
    if platform == "slack":
        return {"ok": False, "error": "token_expired"}
    if platform == "stripe":
        return {"error": {"type": "invalid_request_error", "message": "Expired API key provided."}}
    if platform == "github":
        return {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
    return {"error": "invalid_token", "error_description": "The access token expired"}


def _exported(file_id: str, mime_type: str, headers: dict[str, str], answer) -> UpstreamResponse:
    """Drive's export answers the file itself in the format asked for, not JSON: a PDF's bytes hold NULs."""
    if not mime_type:
        return answer(400, {"error": {"code": 400, "message": "Required parameter: mimeType",
                                      "errors": [{"reason": "required", "location": "mimeType"}]}})
    if mime_type == "application/pdf":
        body = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\nstream\n" + bytes(range(32))
                + f"\n{file_id}\nendstream\n%%EOF\n".encode())
    elif mime_type in ("text/plain", "text/csv"):
        body = f"Exported {file_id}\n".encode()
    else:
        return answer(400, {"error": {"code": 400, "message": "The requested conversion is not supported.",
                                      "errors": [{"reason": "badRequest", "location": "mimeType"}]}})
    return UpstreamResponse(200, body, {**headers, "content-type": mime_type})


def respond(
    *,
    platform: str,
    state: str,
    call_number: int,
    method: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str,
    action: CatalogAction | None,
    connection_key: str,
) -> UpstreamResponse:
    """What the platform's own API answers to this call on this connection."""
    request_id = hashlib.sha1(f"{connection_key}|{call_number}".encode()).hexdigest()[:16]
    headers = {"content-type": "application/json; charset=utf-8", "x-request-id": request_id}

    def answer(status: int, payload: object, **extra: str) -> UpstreamResponse:
        return UpstreamResponse(status, json.dumps(payload).encode(), {**headers, **extra})

    if state == "failed":
        return answer(401, _unauthorized(platform), **{"www-authenticate": 'Bearer error="invalid_token"'})
    if state == "degraded" and call_number % 2 == 1:
        # Every other call fails while the platform's token refresh is pending.
        if (call_number // 2) % 2 == 0:
            return answer(429, {"error": "rate_limited", "message": "Too many requests"}, **{"retry-after": "30"})
        return answer(503, {"error": "service_unavailable", "message": "Upstream temporarily unavailable"})

    segments = tuple(unquote(s) for s in path.strip("/").split("/") if s)  # `path` as sent: %2F inside a segment
    if action is None:
        return answer(404, {"error": "not_found", "message": f"No route for {method} /{'/'.join(segments)}"})
    noun = _noun(segments, platform)
    rng = random.Random(f"{connection_key}|{method}|{path}|{query}")
    sent: object = None
    if body:
        try:
            sent = json.loads(body) if "json" in content_type or not content_type else {"form": body.decode("utf-8", "replace")[:200]}
        except ValueError:
            return answer(400, {"error": "invalid_json", "message": "The request body is not valid JSON."})

    if method == "GET" and platform == "google-drive" and segments[-1:] == ("export",):
        return _exported(segments[-2] if len(segments) > 1 else "", parse_qs(query).get("mimeType", [""])[0],
                         headers, answer)
    if method == "GET":
        if (item := _item_id(method, segments, action)) is not None:
            record = _record(rng, platform, noun, 0)
            record["id"] = item if "id" in record else record.get("id")
            return answer(200, record)
        records = [_record(rng, platform, noun, n) for n in range(rng.randint(3, 8))]
        return answer(200, _list_body(platform, noun, records, path))
    if method == "DELETE":
        if platform in {"slack"}:
            return answer(200, {"ok": True})
        return UpstreamResponse(204, b"", {"x-request-id": request_id})
    record = _record(rng, platform, noun, 0)
    if isinstance(sent, dict):
        record.update({k: v for k, v in sent.items() if k != "connectionKey"})
    if platform == "slack":
        return answer(200, {"ok": True, noun.split(".")[0]: record})
    if platform == "gmail" and noun == "send":
        return answer(200, {"id": record["id"], "threadId": record["threadId"], "labelIds": ["SENT"]})
    status = 201 if method == "POST" and platform in {"github", "hubspot", "intercom", "attio", "zendesk", "jira"} else 200
    return answer(status, record)
