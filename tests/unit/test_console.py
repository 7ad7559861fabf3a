"""The console's core: drafts, checks, response views, history records, replay, exports, compare.

The pure parts are tested directly; sending, storing and the exports' round trips run against the real sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from urllib.parse import parse_qsl

import pytest

from pica_core import console
from pica_core.client import PicaClient
from pica_core.config import SANDBOX_TEST_KEY
from pica_core.errors import InvalidInputError, NotFoundError
from pica_core.models import PassthroughResponse
from pica_core.store import AuditEvent, PassthroughCallRecord, Store

KEY = "test::gmail::default::" + "a" * 32 + "|user-1"
LIVE_KEY = "live::gmail::default::" + "b" * 32
ACTION = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"  # Gmail: list a user's messages
SEND_ACTION = "conn_mod_def::GJ3odhCpd3I::gujvYoneSk6NFWltse9bGg"  # Gmail: send a user's message
CUSTOM_ACTION = "conn_mod_def::GGSNOTZxFUU::ZWXBuJboTpS3Q_U06pF8gA"  # Gmail: get emails (custom)


def draft(**overrides) -> console.RequestDraft:
    values = dict(connection_key=KEY, action_id=ACTION, method="GET",
                  path_template="/gmail/v1/users/{{userId}}/messages", path_values={"userId": "me"})
    values.update(overrides)
    return console.RequestDraft(**values)


def refused(message_part: str, **overrides) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        console.prepare(draft(**overrides))
    assert message_part in caught.value.message, caught.value.message
    return caught.value


# --- path templates -----------------------------------------------------------------------------------------
def test_path_variables_become_fields_in_order_once_each():
    assert console.path_variables("/gmail/v1/users/{{userId}}/messages/{{ id }}") == ["userId", "id"]
    assert console.path_variables("/users/me/messages/${messageRef.id}") == ["messageRef.id"]
    assert console.path_variables("/a/{{x}}/b/{{x}}") == ["x"]
    assert console.path_variables("/conversations.list") == []


def test_filled_values_are_url_encoded_into_one_segment():
    path = console.fill_path("/users/{{userId}}/labels/{{id}}", {"userId": "ava@acme.io", "id": "a b/c?d"})
    assert path == "/users/ava%40acme.io/labels/a%20b%2Fc%3Fd"


def test_a_missing_path_variable_is_named():
    with pytest.raises(InvalidInputError, match=r"\{\{userId\}\}"):
        console.fill_path("/users/{{userId}}/messages", {"userId": "  "})
    refused("Fill the path variables {{userId}}, {{id}}", path_template="/u/{{userId}}/m/{{id}}", path_values={})


@pytest.mark.parametrize("value", ["..", ".", "a/../b"])
def test_a_path_variable_cannot_climb_out_of_its_segment(value):
    refused("may not be '.' or '..'", path_values={"userId": value})


def test_a_raw_path_with_dot_dot_is_refused():
    refused("'.' or '..'", path_template="/gmail/v1/users/../admin", path_values={})
    refused("'.' or '..'", path_template="/gmail/%2e%2e/admin", path_values={})


@pytest.mark.parametrize("path", ["/gmail/v1/users/.%2e/x", "/gmail/%2E./x", "/gmail/%252e%252e/x", "/gmail/%2e/x",
                                  "/gmail/..%5Cadmin", "/gmail\\..\\admin"])
def test_a_raw_path_climbing_out_in_any_encoding_is_refused(path):
    refused("'.' or '..'", path_template=path, path_values={})


@pytest.mark.parametrize("value", ["me\x00x", "me\nx", "me\u202ex", "me\u200bx"])
def test_a_control_character_in_a_path_variable_is_named_before_sending(value):
    refused("{{userId}} contains control characters", path_values={"userId": value})


@pytest.mark.parametrize("path", ["/gmail/me%00x/x", "/gmail/me%250Ax/x"])
def test_a_raw_path_with_an_encoded_control_character_is_refused(path):
    refused("control characters", path_template=path, path_values={})


def test_dots_inside_a_segment_are_fine():
    assert console.prepare(draft(path_template="/files/a..b/v1.2/.hidden", path_values={})).path == (
        "files/a..b/v1.2/.hidden")


# --- JSON bodies ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, caret", [
    ('\t{"a": x}', 7),  # a tab drawn as one space
    ('{"名前": x}', 9),  # two wide characters, two columns each
    ("[" + "1, " * 100 + "x]", 61),  # a long line: a window around the fault, after a leading "…"
])
def test_the_json_caret_stands_under_the_fault_as_a_monospace_font_draws_it(text, caret):
    hint = refused("The JSON body is not valid", method="POST", body_kind="json", body_text=text).hint
    shown, pointer = hint.splitlines()
    assert pointer.index("^") == caret
    assert "x" in shown and len(shown) <= 122


def test_invalid_json_reports_line_and_column():
    text = '{\n  "to": "ava@acme.io",\n  "subject" "hi"\n}'
    error = refused("at line 3, column 13", method="POST", body_kind="json", body_text=text)
    assert "Expecting ':' delimiter" in error.message
    assert error.hint.splitlines()[1].index("^") == 12  # the caret under the error


def test_empty_json_body_is_refused_not_sent_as_nothing():
    refused("The JSON body is empty", method="POST", body_kind="json", body_text="   ")


@pytest.mark.parametrize("text, found", [('{"n": NaN}', "NaN"), ("[Infinity]", "Infinity"),
                                         ("-Infinity", "-Infinity"), ('{"n": 1e999}', "1e999")])
def test_nan_and_infinity_in_a_json_body_are_refused_by_name(text, found):
    # Python's json reads them, but they are not JSON: they used to escape prepare() as a ValueError.
    error = refused(f"NaN/Infinity are not valid JSON (found {found})", method="POST", body_kind="json", body_text=text)
    assert "null" in error.hint
    assert console.json_error(text).message == error.message  # the live check under the editor says the same


def test_json_python_cannot_read_is_refused_not_raised():
    refused("too many digits", method="POST", body_kind="json", body_text="1" * 5000)
    refused("nested too deeply", method="POST", body_kind="json", body_text="[" * 100_000 + "]" * 100_000)


def test_json_error_helper_for_the_live_check():
    assert console.json_error('{"a": 1}') is None
    assert "line 1, column 9" in console.json_error('{"a": 1,}').message


# --- preparing --------------------------------------------------------------------------------------------------
def test_a_complete_draft_prepares_exactly():
    prepared = console.prepare(draft(
        method="post", body_kind="json", body_text='{"raw": "SGk=", "n": 1}',
        query=[("maxResults", "5"), (None, None), ("labelIds", "INBOX"), ("labelIds", "SENT")],
        headers=[("X-Trace", "abc"), ("", "")]))
    assert prepared.method == "POST"
    assert prepared.path == "gmail/v1/users/me/messages"
    assert prepared.query == [("maxResults", "5"), ("labelIds", "INBOX"), ("labelIds", "SENT")]
    assert prepared.headers == {"X-Trace": "abc"}
    assert prepared.json_body == {"raw": "SGk=", "n": 1}
    assert prepared.url("http://pica") == ("http://pica/v1/passthrough/gmail/v1/users/me/messages"
                                           "?maxResults=5&labelIds=INBOX&labelIds=SENT")


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_a_header_with_cr_or_lf_is_refused(value):
    refused("line break", headers=[("X-Test", value)])


@pytest.mark.parametrize("value", ["café", "ok ✓", "Bearer tökén"])
def test_a_header_value_that_is_not_ascii_is_refused(value):
    error = refused("contains non-ASCII characters: HTTP header values must be ASCII", headers=[("X-Note", value)])
    assert value not in error.message + error.hint  # it may be a credential: never echoed


def test_a_header_name_that_is_not_ascii_is_refused():
    refused("is not a valid HTTP header name", headers=[("X-Noté", "1")])


def test_headers_the_console_sets_cannot_be_overridden():
    refused("set by the dashboard", headers=[("X-Pica-Secret", "sk_live_other")])
    refused("set by the dashboard", headers=[("x-pica-connection-key", KEY)])
    for framing in ("Transfer-Encoding", "Connection", "TE", "Upgrade", "Expect", "Keep-Alive"):  # smuggling
        refused("set by the dashboard", headers=[(framing, "chunked")])


def test_duplicate_headers_and_nameless_values_are_refused():
    refused("appears twice", headers=[("X-A", "1"), ("x-a", "2")])
    refused("has a value but no name", query=[("", "5")])


def test_a_redacted_header_loaded_from_history_must_be_entered_again():
    refused("was redacted in history", headers=[("Authorization", console.REDACTED)])


def test_an_unsupported_method_is_refused():
    refused("not supported", method="OPTIONS")


def test_an_oversized_body_is_refused():
    big = json.dumps({"raw": "x" * console.MAX_REQUEST_BODY_BYTES})
    refused(f"at most {console.MAX_REQUEST_BODY_BYTES:,} bytes", method="POST", body_kind="json", body_text=big)
    refused("at most", method="POST", body_kind="raw", body_text="y" * (console.MAX_REQUEST_BODY_BYTES + 1))
    just_enough = "y" * console.MAX_REQUEST_BODY_BYTES
    assert console.prepare(draft(method="POST", body_kind="raw", body_text=just_enough)).body_bytes() == len(just_enough)


def test_custom_actions_get_the_connection_key_in_the_body():
    none = console.prepare(draft(method="POST", custom=True))
    assert none.body_kind == "json" and none.json_body == {"connectionKey": KEY}
    body = console.prepare(draft(method="POST", custom=True, body_kind="json",
                                 body_text='{"query": "is:unread", "connectionKey": "stale"}'))
    assert body.json_body == {"query": "is:unread", "connectionKey": KEY}
    form = console.prepare(draft(method="POST", custom=True, body_kind="form", form=[("q", "1")]))
    assert form.form == {"q": "1", "connectionKey": KEY}
    refused("must be an object", method="POST", custom=True, body_kind="json", body_text="[1, 2]")


def test_form_and_multipart_bodies():
    form = console.prepare(draft(method="POST", body_kind="form", form=[("a", "1"), ("b", "x y")]))
    assert form.client_kwargs()["form"] == {"a": "1", "b": "x y"}
    upload = console.FilePart("file", "notes.txt", b"hello", "text/plain")
    multi = console.prepare(draft(method="POST", body_kind="multipart", form=[("title", "t")], files=[upload]))
    assert multi.client_kwargs()["files"] == [("file", ("notes.txt", b"hello", "text/plain"))]
    assert multi.body_bytes() == len("title") + 1 + 5
    refused("multipart body is empty", method="POST", body_kind="multipart")


def test_who_may_send_what():
    def refusal(method, key, can_write=True, confirmed=False):
        return console.send_refusal(method, key, can_write=can_write, why_not_write="Needs the engineer role.",
                                    live_confirmed=confirmed)

    assert refusal("GET", LIVE_KEY, can_write=False) is None
    assert refusal("POST", KEY) is None
    assert refusal("POST", KEY, can_write=False) == "Needs the engineer role."
    assert "live connection" in refusal("DELETE", LIVE_KEY)
    assert refusal("DELETE", LIVE_KEY, confirmed=True) is None
    assert console.needs_live_confirmation("PATCH", LIVE_KEY) and not console.needs_live_confirmation("GET", LIVE_KEY)


# --- response views -----------------------------------------------------------------------------------------------
def response(status=200, body=b"", headers=None) -> PassthroughResponse:
    return PassthroughResponse(status=status, headers=headers or {"content-type": "application/json"}, body=body,
                               elapsed_ms=12.5)


def test_a_bare_list_of_records_is_a_table():
    view = console.response_view(response(body=b'[{"id": 1, "user": {"login": "ava"}}, {"id": 2}]'),
                                 display_limit=10_000)
    assert view.kind == "records" and view.records_key is None and len(view.records) == 2
    assert console.flatten_records(view.records)[0] == {"id": 1, "user.login": "ava"}


def test_records_inside_an_envelope_are_found():
    body = json.dumps({"messages": [{"id": "a"}, {"id": "b"}], "resultSizeEstimate": 2}).encode()
    view = console.response_view(response(body=body), display_limit=10_000)
    assert view.kind == "records" and view.records_key == "messages"
    assert '"resultSizeEstimate": 2' in view.display  # the pretty JSON is there too


def test_the_fields_beside_the_records_are_shown_with_them():
    """The paging token and counts were only in the collapsed JSON under the records' table."""
    body = json.dumps({"messages": [{"id": "a"}], "nextPageToken": "p2", "resultSizeEstimate": 201,
                       "meta": {"note": "x" * 300}}).encode()
    around = console.response_view(response(body=body), display_limit=10_000).around
    assert list(around) == ["nextPageToken", "resultSizeEstimate", "meta"]
    assert (around["nextPageToken"], around["resultSizeEstimate"]) == ('"p2"', "201")
    assert len(around["meta"]) == 120 and around["meta"].endswith("…")


def test_json_text_binary_and_empty_bodies():
    assert console.response_view(response(body=b'{"ok": true}'), display_limit=100).display == '{\n  "ok": true\n}'
    text = console.response_view(response(body=b"plain <b>text</b>", headers={"content-type": "text/html"}),
                                 display_limit=100)
    assert text.kind == "text" and text.display == "plain <b>text</b>"
    assert console.response_view(response(body=b"\xff\xfe\x00"), display_limit=100).kind == "binary"
    assert console.response_view(response(status=204), display_limit=100).kind == "empty"
    assert text.extension == "txt" and console.response_view(response(body=b"[]"), display_limit=9).extension == "json"


@pytest.mark.parametrize(("content_type", "extension"), [("application/pdf", "pdf"), ("image/PNG; x=1", "png"),
                                                         ("application/x-unheard-of", "bin"), ("", "bin")])
def test_a_binary_body_downloads_under_its_type_s_extension(content_type, extension):
    view = console.response_view(response(body=b"%PDF-1.4\xff\x00", headers={"content-type": content_type}),
                                 display_limit=100)
    assert view.kind == "binary" and view.extension == extension


def test_a_body_labelled_json_that_does_not_parse_says_so():
    view = console.response_view(response(body=b'{"rows":[{"id":"trunc'), display_limit=100)
    assert view.kind == "text" and view.display == '{"rows":[{"id":"trunc'
    assert view.note.startswith("The body is labelled application/json but does not parse (Unterminated string")
    plain = console.response_view(response(body=b"not json", headers={"content-type": "text/plain"}), display_limit=100)
    assert plain.note is None


def test_a_large_body_is_cut_for_display_but_kept_whole_for_download():
    body = json.dumps({"blob": "é" * 5000}).encode()
    view = console.response_view(response(body=body), display_limit=1000)
    assert view.truncated and len(view.display.encode()) <= 1000
    assert "showing the first" in view.note and view.body == body


def test_a_body_nested_too_deeply_to_read_is_shown_as_text():
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError
    view = console.response_view(response(body=deep), display_limit=1000, secret="sk_test_x")
    assert view.kind == "text" and view.truncated and view.body == deep
    assert console.pretty_json(deep.decode()) == deep.decode()


def test_upstream_errors_carry_their_meaning():
    expired = console.response_view(response(401, b'{"error": "invalid_token"}'), display_limit=1000)
    assert "needs reconnecting" in expired.meaning and expired.display == '{\n  "error": "invalid_token"\n}'
    limited = console.response_view(response(429, b"{}", {"x-pica-passthrough-retry-after": "30"}), display_limit=100)
    assert limited.retry_after == 30 and "retry after 30 s" in limited.meaning
    assert "retry later" in console.status_meaning(503)
    assert console.status_meaning(200) is None


def test_a_rate_limit_reset_sent_as_a_moment_is_read_as_the_wait_until_then():
    """GitHub's x-ratelimit-reset is a Unix time, Retry-After may be an HTTP date: "retry after 1796421115 s"."""
    from email.utils import formatdate

    from pica_core.client import retry_after

    reset = {"x-pica-passthrough-x-ratelimit-reset": str(int(time.time()) + 90)}
    limited = console.response_view(response(429, b"{}", reset), display_limit=100)
    assert 80 <= limited.retry_after <= 90 and re.search(r"retry after (8\d|90) s", limited.meaning)
    assert 110 <= retry_after({"Retry-After": formatdate(time.time() + 120, usegmt=True)}) <= 120
    assert retry_after({"retry-after": "30"}) == 30
    assert 80 <= retry_after({"x-ratelimit-reset": str(int(time.time() * 1000) + 90_000)},
                             ["x-ratelimit-reset"]) <= 90  # in milliseconds
    assert retry_after({"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"}) is None  # long past: meant nothing
    assert retry_after({"retry-after": str(3 * 86_400)}) is None  # days: no wait anyone means
    assert retry_after({"retry-after": "soon"}) is retry_after({"retry-after": "inf"}) is None


def test_passthrough_headers_are_shown_without_credentials():
    view = console.response_view(response(headers={"x-pica-passthrough-x-request-id": "r1",
                                                   "x-pica-passthrough-set-cookie": "session=abc",
                                                   "x-pica-rate-limit-limit": "500"}), display_limit=100)
    assert view.passthrough_headers == {"x-request-id": "r1", "set-cookie": console.REDACTED}
    for credential in ("X-Auth-Key", "Ocp-Apim-Subscription-Key", "X-Amz-Access-Key", "X-Hub-Signature-256",
                       "AccessKey", "X-Functions-Key", "X-Master-Key", "x-access_key", "X_API_KEY"):
        assert console.is_sensitive_header(credential), credential
    assert not console.is_sensitive_header("X-Request-Id")


# --- history records ----------------------------------------------------------------------------------------------
def test_a_record_is_redacted_scrubbed_and_truncated():
    secret = "sk_test_0123456789abcdef"
    prepared = console.prepare(draft(
        method="POST", body_kind="json", body_text=json.dumps({"note": f"key={secret}", "pad": "z" * 400}),
        query=[("q", secret)], headers=[("Authorization", "Bearer upstream-token"), ("X-Api-Key", "k"),
                                        ("X-Trace", f"t-{secret}")]))
    answer = response(200, json.dumps({"echo": secret, "pad": "y" * 500}).encode(),
                      {"content-type": "application/json", "set-cookie": "s=1"})
    record = console.make_record(prepared, response=answer, actor="ava", platform="gmail", action_title="List",
                                 secret=secret, body_limit=256)
    stored = record.model_dump_json()
    assert secret not in stored and "upstream-token" not in stored
    assert record.request_headers == {"Authorization": console.REDACTED, "X-Api-Key": console.REDACTED,
                                      "X-Trace": "t-****"}
    assert record.query == [["q", "****"]] and record.response_headers["set-cookie"] == console.REDACTED
    assert record.request_truncated and len(record.request_body.encode()) <= 256
    assert record.response_truncated and record.response_size == len(answer.body)
    assert (record.status, record.environment, record.path) == (200, "test", "/gmail/v1/users/me/messages")


def test_a_record_scrubs_the_secret_from_names_and_from_json_escapes():
    secret = "sk_test_0123456789abcdef"
    escaped = "".join(f"\\u{ord(c):04x}" for c in secret)  # the secret as JSON \u escapes: only decoding shows it
    prepared = console.prepare(draft(query=[(f"q-{secret}", "1")], headers=[(f"X-{secret}", "1")]))
    answer = response(200, f'{{"echo": "{escaped}", "note": "é"}}'.encode(), {"x-pica-passthrough-x-" + secret: "1"})
    record = console.make_record(prepared, response=answer, actor="ava", platform="gmail", secret=secret,
                                 body_limit=16_384, action_title=f"raw {secret}")
    assert secret not in record.model_dump_json()
    assert record.action_title == "raw ****"
    assert record.query == [["q-****", "1"]] and record.request_headers == {"X-****": "1"}
    assert json.loads(record.response_body) == {"echo": "****", "note": "é"}
    assert secret not in console.pretty_json(record.response_body)  # what the History tab shows
    assert console.redact_headers(answer.headers, secret) == {"x-pica-passthrough-x-****": "1"}


def test_truncation_cuts_at_a_character_boundary():
    text, cut = console.truncate("é" * 10, 5)
    assert cut and text == "éé"
    assert console.truncate("short", 5) == ("short", False)


def test_the_history_status_filter_takes_only_a_three_digit_status_or_class():
    assert console.status_filter(" 429 ") == (429, 429) and console.status_filter("999") == (999, 999)
    assert console.status_filter("4xx") == (400, 499) and console.status_filter("5XX") == (500, 599)
    assert console.status_filter("  ") is None
    # "²" and "٤٢٩" pass str.isdigit(); a 20-digit number overflowed the database's integer
    for bad in ("²", "٤٢٩", "99999999999999999999", "42", "1000", "099", "-1", "4 29", "0xx", "4x", "xx"):
        with pytest.raises(InvalidInputError, match="three-digit HTTP status"):
            console.status_filter(bad)


def round_trip(prepared: console.PreparedRequest, body_limit: int = 16_384) -> console.PreparedRequest:
    record = console.make_record(prepared, response=response(200, b"{}"), actor="a", platform="gmail",
                                 secret=None, body_limit=body_limit)
    return console.replay_request(record)


@pytest.mark.parametrize("overrides", [
    dict(query=[("b", "2"), ("a", "1"), ("a", "0")], headers=[("X-Trace", "1")]),
    dict(method="POST", body_kind="json", body_text='{"z": 1, "a": [1, {"é": null}]}'),
    dict(method="PUT", body_kind="form", form=[("x", "1 2&3"), ("y", "")]),
    dict(method="PATCH", body_kind="raw", body_text="<xml>é</xml>", headers=[("Content-Type", "application/xml")]),
    dict(method="POST", body_kind="multipart", form=[("title", "t")]),
])
def test_replay_rebuilds_the_identical_request(overrides):
    prepared = console.prepare(draft(**overrides))
    assert round_trip(prepared) == prepared


def test_replay_refuses_what_history_did_not_keep():
    long = console.prepare(draft(method="POST", body_kind="json", body_text=json.dumps({"x": "y" * 300})))
    with pytest.raises(InvalidInputError, match="cannot be repeated exactly"):
        round_trip(long, body_limit=256)
    files = console.prepare(draft(method="POST", body_kind="multipart",
                                  files=[console.FilePart("file", "a.bin", b"123")]))
    with pytest.raises(InvalidInputError, match="file contents"):
        round_trip(files)
    binary = console.prepare(draft(method="POST", body_kind="raw", body_text="a\x00b"))  # kept as "[binary, …]"
    with pytest.raises(InvalidInputError, match="cannot be repeated exactly"):
        round_trip(binary)
    authorized = console.prepare(draft(headers=[("Authorization", "Bearer x")]))
    record = console.make_record(authorized, actor="a", platform="gmail", secret=None, body_limit=1000)
    with pytest.raises(InvalidInputError, match="redacted in history"):
        console.replay_request(record)
    assert "$HEADER_AUTHORIZATION" in console.export_curl(console.replay_request(record, for_export=True), "http://p")


def test_loading_a_record_gives_a_raw_draft():
    prepared = console.prepare(draft(method="PUT", body_kind="form", form=[("a", "1")], query=[("q", "x")]))
    record = console.make_record(prepared, actor="a", platform="gmail", secret=None, body_limit=1000)
    loaded = console.draft_from_record(record)
    assert (loaded.method, loaded.path_template, loaded.action_id) == ("PUT", "/gmail/v1/users/me/messages", ACTION)
    assert loaded.form == [("a", "1")] and loaded.query == [("q", "x")] and loaded.body_kind == "form"


# --- exports ----------------------------------------------------------------------------------------------------
def test_curl_export_reads_the_secret_from_the_environment():
    prepared = console.prepare(draft(method="POST", body_kind="json", body_text='{"text": "it\'s $HOME"}',
                                     headers=[("Authorization", "Bearer upstream"), ("X-Trace", "a b")],
                                     query=[("q", "a b&c")]))
    curl = console.export_curl(prepared, "http://127.0.0.1:8700")
    assert '"x-pica-secret: $PICA_SECRET_KEY"' in curl and "upstream" not in curl
    assert '"Authorization: $HEADER_AUTHORIZATION"' in curl
    words = shlex.split(curl.replace("\\\n", " "))
    assert words[words.index("--data-raw") + 1] == '{"text":"it\'s $HOME"}'  # single-quoted: no expansion
    assert prepared.url("http://127.0.0.1:8700") in words
    assert "X-Trace: a b" in words


def test_curl_export_runs_nothing_a_header_name_or_file_name_carries(tmp_path):
    """HTTP allows ` $ ' | in a header name: the exported command, pasted into bash, must pass them to curl as
    text. A stand-in `curl` function prints the arguments bash gives it."""
    name = "x-api-token`touch$IFS'pwned'`"
    prepared = console.PreparedRequest(
        method="POST", path="gmail/v1/x", connection_key="test::gmail::default::" + "a" * 32 + "|u",
        action_id=ACTION, headers={name: "abc", "X-Note": "$(touch pwned2)"}, body_kind="multipart",
        files=[console.FilePart("file", 'a;type=text/html;b"c.txt', b"x", "text/plain")])
    curl = console.export_curl(prepared, "http://p")
    script = "curl() { printf '%s\\n' \"$@\"; }\n" + curl + "\n"
    env = {"PATH": os.environ["PATH"], "PICA_SECRET_KEY": "sk", console._env_name(name): "tok"}
    args = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert list(tmp_path.iterdir()) == []  # nothing ran
    assert f"{name}: tok" in args and "X-Note: $(touch pwned2)" in args
    assert 'file=@"a;type=text/html;b\\"c.txt";type=text/plain' in args  # curl's quoting of a file name


def test_curl_export_stops_when_a_credential_s_variable_is_not_set(tmp_path):
    """curl sent the request without the header (an empty -H value removes it), silently."""
    name = "x-api-token`touch$IFS'pwned'`"
    prepared = console.PreparedRequest(
        method="GET", path="gmail/v1/x", connection_key="test::gmail::default::" + "a" * 32 + "|u",
        action_id=ACTION, headers={"X-Api-Key": "abc", name: "def"})
    curl = console.export_curl(prepared, "http://p")
    script = "curl() { printf '%s\\n' \"$@\"; }\n" + curl + "\n"
    env = {"PATH": os.environ["PATH"], "PICA_SECRET_KEY": "sk"}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and done.stdout == ""  # curl never ran
    assert "set HEADER_X_API_KEY to the value of the X-Api-Key header" in done.stderr
    assert list(tmp_path.iterdir()) == []  # the odd name's message ran nothing either
    env.update({console._env_name(n): "v" for n in prepared.headers})
    assert "X-Api-Key: v" in subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                                            text=True, check=True).stdout.splitlines()


def test_python_export_is_valid_code_without_the_secret():
    prepared = console.prepare(draft(method="POST", body_kind="json", body_text='{"ok": true, "n": null}',
                                     query=[("q", "1")], headers=[("X-Api-Key", "hidden")]))
    code = console.export_httpx(prepared, "http://127.0.0.1:8700")
    compile(code, "export.py", "exec")
    assert 'os.environ["PICA_SECRET_KEY"]' in code and "hidden" not in code
    assert "json={'ok': True, 'n': None}" in code and "params=[('q', '1')]" in code


# --- compare ------------------------------------------------------------------------------------------------------
def test_compare_two_calls():
    def rec(i, status, body):
        return PassthroughCallRecord(id=i, at=None, actor="a", environment="test", connection_key=KEY,
                                     platform="gmail", action_id=ACTION, method="GET", path="/p", status=status,
                                     response_body=body)

    same = console.compare(rec(1, 200, '{"b": 1, "a": 2}'), rec(2, 200, '{"a": 2, "b": 1}'))
    assert same.same_body and all(row["same"] for row in same.summary if row["field"] != "elapsed (ms)")
    different = console.compare(rec(1, 200, '{"a": 1}'), rec(2, 429, '{"a": 2}'))
    assert '-  "a": 1' in different.diff and '+  "a": 2' in different.diff
    assert next(r for r in different.summary if r["field"] == "status")["same"] is False


def test_history_shows_a_json_body_in_the_order_it_was_sent():
    """History sorted its keys: Gmail's id, threadId, labelIds read id, labelIds, threadId."""
    assert console.pretty_json('{"id": "m1", "threadId": "t1", "labelIds": ["SENT"]}').splitlines()[1:4] == [
        '  "id": "m1",', '  "threadId": "t1",', '  "labelIds": [']
    assert console.pretty_json("not json {") == "not json {" and console.pretty_json(None) == ""


def test_compare_says_identical_only_of_whole_bodies():
    """Two bodies history had cut at its limit were "identical" when they differed after it; two timeouts, with no
    body at all, were "identical" too."""
    def rec(i, body, size, cut=True):
        return PassthroughCallRecord(id=i, at=None, actor="a", environment="test", connection_key=KEY,
                                     platform="gmail", action_id=ACTION, method="POST", path="/p", status=200,
                                     response_body=body, response_size=size, response_truncated=cut)

    kept = '{"aa": "' + "x" * 280
    same_start = console.compare(rec(1, kept, 320), rec(2, kept, 320))
    assert not same_start.same_body and not same_start.diff
    assert same_start.verdict.endswith("that part is the same in both, and whether they differ after it is unknown.")
    assert "their sizes do" in console.compare(rec(1, kept, 320), rec(2, kept, 330)).verdict
    differ_early = console.compare(rec(1, kept, 320), rec(2, kept.replace("x", "y", 1), 320))
    assert differ_early.diff and differ_early.verdict.endswith("they differ already there.")
    nothing = console.compare(rec(1, None, None, cut=False), rec(2, None, None, cut=False))
    assert not nothing.same_body and nothing.verdict == "Neither call has a response body to compare."
    whole = console.compare(rec(1, '{"a": 1}', 8, cut=False), rec(2, '{"a": 1}', 8, cut=False))
    assert whole.same_body and whole.verdict == "The response bodies are identical."


# --- against the sandbox ------------------------------------------------------------------------------------------
@pytest.fixture
def client(sandbox, secret):
    with PicaClient(base_url=sandbox.url, secret=secret) as instance:
        yield instance


@pytest.fixture
def store(database_url):
    instance = Store.from_url(database_url)
    yield instance
    instance.engine.dispose()


def connection(sandbox, platform="gmail", state="operational") -> dict:
    return next(c for c in sandbox.state.connections.values()
                if c["platform"] == platform and c["environment"] == "test" and c["state"] == state)


def run(client, store, prepared, **overrides):
    values = dict(actor="tester", platform="gmail", action_title="List", secret=SANDBOX_TEST_KEY,
                  body_limit=16_384)
    values.update(overrides)
    return console.run_call(client, store, prepared, **values)


def test_a_get_is_sent_stored_and_not_audited(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], query=[("maxResults", "3")]))
    outcome = run(client, store, prepared)
    assert outcome.ok and sandbox.count("passthrough") == 1
    view = console.response_view(outcome.response, display_limit=200_000)
    assert view.kind == "records" and view.records_key == "messages"
    assert "x-request-id" in view.passthrough_headers
    stored = store.call(outcome.record.id)
    assert (stored.status, stored.query, stored.actor) == (200, [["maxResults", "3"]], "tester")
    assert store.count(AuditEvent) == 0


def test_a_post_is_audited(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/{{userId}}/messages/send",
                                     body_kind="json", body_text='{"raw": "SGk="}'))
    outcome = run(client, store, prepared, action_title="Send")
    assert outcome.response.status == 200 and outcome.response.json()["labelIds"] == ["SENT"]
    [event] = store.audit_events(action="console_call")
    assert (event.actor, event.target, event.outcome) == ("tester", conn["key"], "ok")
    assert event.detail["method"] == "POST" and event.detail["status"] == 200
    assert event.detail["path"] == "/gmail/v1/users/me/messages/send"


EXPORT_ACTION = "conn_mod_def::GJ6RziZnVhE::KyuPyhkzQ1K3CQxYqa8IGA"  # Export a File From Google Drive


def export(sandbox, mime_type: str = "application/pdf") -> console.PreparedRequest:
    conn = connection(sandbox, platform="google-drive")
    return console.prepare(draft(connection_key=conn["key"], action_id=EXPORT_ACTION,
                                 path_template="/drive/v3/files/{{fileId}}/export", path_values={"fileId": "f1"},
                                 query=[("mimeType", mime_type)]))


def test_a_binary_answer_is_shown_and_history_says_what_it_was(sandbox, client, store):
    """A PDF's bytes hold NULs, which PostgreSQL's text refuses: the call was sent, and must not be lost."""
    outcome = run(client, store, export(sandbox), platform="google-drive")
    assert outcome.ok and b"\x00" in outcome.response.body and outcome.not_recorded is None
    stored = store.call(outcome.record.id)
    assert stored.response_body == f"[binary, {len(outcome.response.body):,} bytes: not kept]"
    assert stored.response_size == len(outcome.response.body)
    text = run(client, store, export(sandbox, "text/plain"), platform="google-drive")
    assert store.call(text.record.id).response_body == "Exported f1\n"


@contextmanager
def tables_lost(store, *tables: str):
    """These tables dropped (a migration gone wrong, say), and made again afterwards."""
    from sqlalchemy import text

    with store.engine.begin() as db:
        for table in tables:
            db.execute(text(f"DROP TABLE {table}"))
    try:
        yield
    finally:
        store.create_schema()


def send_a_message(sandbox, client, store) -> console.CallOutcome:
    """A POST through the console: Gmail's send, on an operational connection."""
    return run(client, store, console.prepare(draft(
        connection_key=connection(sandbox)["key"], action_id=SEND_ACTION, method="POST",
        path_template="/gmail/v1/users/{{userId}}/messages/send", body_kind="json", body_text="{}")))


def test_a_write_whose_history_cannot_be_kept_is_audited_all_the_same(sandbox, client, store):
    with tables_lost(store, "passthrough_calls"):
        outcome = send_a_message(sandbox, client, store)
        assert outcome.not_recorded and outcome.record is None
        [event] = store.audit_events(action="console_call")
        assert event.detail["status"] == 200 and event.detail["history_id"] is None


def test_a_write_neither_history_nor_the_audit_log_can_keep_still_shows_its_answer(sandbox, client, store):
    with tables_lost(store, "passthrough_calls", "audit_events"):  # the call was sent all the same
        outcome = send_a_message(sandbox, client, store)
        assert outcome.ok and outcome.response.json()["labelIds"] == ["SENT"] and outcome.not_recorded


def test_a_path_too_long_for_history_is_refused_before_sending():
    refused("at most 1,999", path_template="/gmail/v1/users/{{userId}}/messages/" + "x" * 2000)


def test_a_call_whose_history_cannot_be_written_keeps_its_answer(sandbox, client, store):
    with tables_lost(store, "passthrough_calls"):
        outcome = run(client, store, export(sandbox), platform="google-drive")
        assert outcome.ok and outcome.record is None and sandbox.count("passthrough") == 1
        assert outcome.not_recorded.split(":")[0] in ("OperationalError", "ProgrammingError")
        assert SANDBOX_TEST_KEY not in outcome.not_recorded


def test_a_json_null_body_is_sent(sandbox, client, store):
    """httpx reads json=None as no body at all; history and the exports said null was sent."""
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/{{userId}}/messages/send",
                                     body_kind="json", body_text="null"))
    run(client, store, prepared, action_title="Send")
    sent = sandbox.requests(1)[0]
    assert (sent["body"], sent["headers"]["content-type"]) == ("null", "application/json")


def test_the_audit_log_is_scrubbed_of_the_secret_too(sandbox, client, store):
    conn = connection(sandbox)
    key = conn["key"].split("|")[0] + "|" + SANDBOX_TEST_KEY  # an identity that is the secret, pasted by mistake
    prepared = console.prepare(draft(connection_key=key, action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/{{userId}}/messages/send",
                                     body_kind="json", body_text='{"raw": "SGk="}'))
    outcome = run(client, store, prepared, action_title="Send")
    [event] = store.audit_events(action="console_call")
    assert SANDBOX_TEST_KEY not in event.model_dump_json() and event.target.endswith("|****")
    assert SANDBOX_TEST_KEY not in store.call(outcome.record.id).model_dump_json()


def test_custom_actions_reach_the_sandbox_with_their_connection_key(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], action_id=CUSTOM_ACTION, method="POST",
                                     path_template="/gmail/get-emails", path_values={}, custom=True))
    outcome = run(client, store, prepared)
    assert outcome.response.status == 200, outcome.response.text
    assert json.loads(sandbox.requests(1)[0]["body"]) == {"connectionKey": conn["key"]}


def test_upstream_errors_are_responses_and_pica_errors_are_kept(sandbox, client, store):
    failed = connection(sandbox, state="failed")
    outcome = run(client, store, console.prepare(draft(connection_key=failed["key"])))
    assert outcome.response.status == 401 and not outcome.ok
    assert "needs reconnecting" in console.response_view(outcome.response, display_limit=1000).meaning

    conn = connection(sandbox)
    unknown = console.prepare(draft(connection_key=conn["key"], action_id="conn_mod_def::nope::nope"))
    outcome = run(client, store, unknown)
    assert isinstance(outcome.error, NotFoundError) and outcome.response is None
    assert store.call(outcome.record.id).status == 404 and "Action not found" in store.call(outcome.record.id).error


def test_a_degraded_connection_alternates_with_retry_after(sandbox, client, store):
    degraded = connection(sandbox, state="degraded")
    statuses = [run(client, store, console.prepare(draft(connection_key=degraded["key"]))) for _ in range(2)]
    second = console.response_view(statuses[1].response, display_limit=1000)
    assert statuses[0].response.status == 200 and second.status == 429
    assert second.retry_after == 30 and "retry after 30 s" in second.meaning
    assert sandbox.count("passthrough") == 2  # a passthrough GET is not retried on the upstream's 429


def test_replay_sends_byte_identical_requests(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/{{userId}}/messages/send",
                                     query=[("b", "1"), ("a", "x y")], headers=[("X-Trace", "t1")],
                                     body_kind="json", body_text='{"raw": "SGk=", "é": [1, 2]}'))
    first = run(client, store, prepared)
    again = run(client, store, console.replay_request(store.call(first.record.id)))
    original, replayed = sandbox.requests(2)
    assert replayed == original
    assert again.response.body == first.response.body


def test_history_and_exports_never_contain_the_secret(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(
        connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
        path_template="/gmail/v1/users/{{userId}}/messages/send", query=[("note", SANDBOX_TEST_KEY)],
        headers=[("X-Echo", SANDBOX_TEST_KEY), ("Authorization", "Bearer up")],
        body_kind="json", body_text=json.dumps({"raw": SANDBOX_TEST_KEY})))
    outcome = run(client, store, prepared)
    assert outcome.ok and SANDBOX_TEST_KEY in sandbox.requests(1)[0]["body"]  # it did reach the platform
    unknown = console.prepare(draft(connection_key=conn["key"], action_id="conn_mod_def::x::y"))
    run(client, store, unknown)
    for record in store.search_calls():
        stored = record.model_dump_json()
        assert SANDBOX_TEST_KEY not in stored and "Bearer up" not in stored
        exportable = console.replay_request(record, for_export=True)
        for text in (console.export_curl(exportable, sandbox.url), console.export_httpx(exportable, sandbox.url)):
            assert SANDBOX_TEST_KEY not in text and "Bearer up" not in text
    for text in (console.export_curl(prepared, sandbox.url), console.export_httpx(prepared, sandbox.url)):
        assert "Bearer up" not in text and "$PICA_SECRET_KEY" in text


def test_search_history_by_platform_action_status_and_text(sandbox, client, store):
    conn = connection(sandbox)
    failed = connection(sandbox, state="failed")
    run(client, store, console.prepare(draft(connection_key=conn["key"])), action_title="List messages")
    run(client, store, console.prepare(draft(connection_key=failed["key"])), action_title="List messages")
    run(client, store, console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                                             path_template="/gmail/v1/users/me/messages/send", body_kind="json",
                                             body_text='{"raw": "needle-42"}')), action_title="Send")
    assert len(store.search_calls(platform="gmail")) == 3 and store.search_calls(platform="slack") == []
    assert [r.action_title for r in store.search_calls(action="send")] == ["Send"]
    assert len(store.search_calls(status=401)) == 1
    assert len(store.search_calls(status=(400, 499))) == 1 and len(store.search_calls(status=(200, 299))) == 2
    assert len(store.search_calls(text_query="needle-42")) == 1  # request body
    assert len(store.search_calls(text_query="invalid authentication")) == 1  # response body
    assert store.call_platforms() == ["gmail"] and store.count(PassthroughCallRecord) == 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_export_returns_the_same_response(sandbox, client, store):
    conn = connection(sandbox)
    for prepared in (
        console.prepare(draft(connection_key=conn["key"], query=[("q", "from:ava is:unread"), ("maxResults", "3")])),
        console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                              path_template="/gmail/v1/users/me/messages/send", body_kind="json",
                              body_text='{"raw": "it\'s é $HOME"}')),
    ):
        expected = run(client, store, prepared).response
        curl = console.export_curl(prepared, sandbox.url)
        env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
        result = subprocess.run(["bash", "-c", curl], capture_output=True, env=env, timeout=30, check=True)
        assert result.stdout == expected.body
        via_console, via_curl = sandbox.requests(2)
        assert (via_curl["path"], via_curl["query"], via_curl["body"]) == (
            via_console["path"], via_console["query"], via_console["body"])


def _as_sent(logged: dict) -> tuple:
    """What a request carried, its multipart boundary (random per sender) taken out."""
    kind = logged["headers"].get("content-type")
    boundary = (kind or "").partition("boundary=")[2]
    body = logged["body"].replace(boundary, "B") if boundary else logged["body"]
    return logged["path"], logged["query"], kind.partition("; boundary")[0] if kind else None, body


# Encoded again, a JSON body lost its first "raw" and the number's last digits, silently; the editor said valid JSON.
AS_TYPED = '{"raw": "first", "raw": "second", "amount": 10.10, "big": 12345678901234567890.12}'


def test_a_json_body_is_sent_as_typed_when_encoding_it_again_would_change_it(sandbox, client, store):
    conn = connection(sandbox)
    for typed, sent in ((AS_TYPED, AS_TYPED), ('{"amount": 10.10, "n": 1e2}', '{"amount":10.1,"n":100.0}')):
        prepared = console.prepare(draft(connection_key=conn["key"], action_id=SEND_ACTION, method="POST",
                                         path_template="/gmail/v1/users/me/messages/send", body_kind="json",
                                         body_text=typed))
        record = run(client, store, prepared).record
        assert sandbox.requests(1)[0]["body"] == sent and record.request_body == sent
        assert prepared.body_bytes() == len(sent.encode())


def test_a_body_kept_as_typed_masks_an_escaped_secret_and_shows_as_sent(sandbox, client, store):
    """Kept as typed, "\\u0073k_test_…" escaped the masking (it looks for the key's plain text) into history, and
    History's pretty view decoded it; that view also showed the body parsed (one "raw", a float), not as sent."""
    escaped = "\\u0073" + SANDBOX_TEST_KEY[1:]
    typed = '{"raw": "a", "raw": "b", "note": "' + escaped + '"}'
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/me/messages/send", body_kind="json",
                                     body_text=typed))
    record = run(client, store, prepared).record
    stored = store.call(record.id)
    for shown in (stored.request_body, console.pretty_json(stored.request_body),
                  console.export_curl(prepared, sandbox.url, secret=SANDBOX_TEST_KEY),
                  console.export_httpx(prepared, sandbox.url, secret=SANDBOX_TEST_KEY)):
        assert SANDBOX_TEST_KEY not in shown and escaped not in shown and "****" in shown
    assert console.pretty_json(AS_TYPED) == AS_TYPED  # as sent: both "raw", every digit
    with pytest.raises(InvalidInputError, match="adds \"connectionKey\""):  # encoded again, it would lose one
        console.prepare(draft(method="POST", body_kind="json", body_text=AS_TYPED, custom=True))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("body", [
    dict(body_kind="raw", body_text="@channel"),  # curl's --data-binary read the file named channel
    dict(body_kind="raw", body_text="hello", headers=[("Content-Type", "text/plain")]),
    dict(body_kind="form", form=[("a b", "x y"), ("c=d", "e&f")]),  # --data-urlencode left names as they were
    dict(body_kind="form", form=[]),  # nothing sent, and no Content-Type either
    dict(body_kind="json", body_text='{"a": 1}', headers=[("Content-Type", "application/vnd.api+json")]),
    dict(body_kind="json", body_text="null"),
    dict(body_kind="multipart", form=[("to", "a@b.c"), ('sub"ject', "hi é")]),  # fields alone: multipart still
    dict(body_kind="json", body_text=AS_TYPED),
], ids=["raw-at", "raw-typed", "form-names", "form-empty", "json-typed", "json-null", "multipart-fields",
        "json-as-typed"])
def test_both_exports_send_what_the_console_sent(sandbox, client, store, tmp_path, body):
    (tmp_path / "channel").write_text("LOCAL FILE CONTENTS")
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/{{userId}}/messages/send", **body))
    run(client, store, prepared)
    sent = _as_sent(sandbox.requests(1)[0])
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
    subprocess.run(["bash", "-c", console.export_curl(prepared, sandbox.url)], capture_output=True, env=env,
                   cwd=tmp_path, timeout=30, check=True)
    assert _as_sent(sandbox.requests(1)[0]) == sent, "curl"
    subprocess.run([sys.executable, "-c", console.export_httpx(prepared, sandbox.url)], capture_output=True, env=env,
                   cwd=tmp_path, timeout=60, check=True)
    assert _as_sent(sandbox.requests(1)[0]) == sent, "python"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_credential_in_the_query_is_kept_out_of_history_and_exports_and_they_still_send_it(sandbox, client, store,
                                                                                              tmp_path):
    """`?access_token=` was stored, shown in History and written into both exports as typed, while History said
    credentials are never stored. (curl adds them after the other parameters, encoded its own way: the same query
    to the platform.) Two of one name get a variable each: they shared one, and so one value."""
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], query=[
        ("q", "from:ava"), ("access_token", "ya29.QUERY/SECRET"), ("pageToken", "p-2"), ("access_token", "B+2"),
        ("key", "AIza")]))
    record = run(client, store, prepared).record
    assert record.query == [["q", "from:ava"], ["access_token", console.REDACTED], ["pageToken", "p-2"],
                            ["access_token", console.REDACTED], ["key", console.REDACTED]]  # a page cursor is kept
    assert "ya29" not in store.call(record.id).model_dump_json()
    assert "ya29" not in console.preview(prepared) and "access_token=••••••" in console.preview(prepared)
    sent = sandbox.requests(1)[0]
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
    values = {"QUERY_ACCESS_TOKEN": "ya29.QUERY/SECRET", "QUERY_ACCESS_TOKEN_2": "B+2", "QUERY_KEY": "AIza"}
    assert console.export_variables(prepared) == [("QUERY_ACCESS_TOKEN", "access_token"),
                                                  ("QUERY_ACCESS_TOKEN_2", "access_token"), ("QUERY_KEY", "key")]
    for command in (["bash", "-c", console.export_curl(prepared, sandbox.url)],
                    [sys.executable, "-c", console.export_httpx(prepared, sandbox.url)]):
        assert "ya29" not in command[-1] and "AIza" not in command[-1]
        before = sandbox.count("passthrough")
        refused = subprocess.run(command, capture_output=True, env=env, cwd=tmp_path, timeout=60)
        assert refused.returncode != 0 and sandbox.count("passthrough") == before  # not sent without them
        subprocess.run(command, capture_output=True, env={**env, **values}, cwd=tmp_path, timeout=60, check=True)
        assert sorted(parse_qsl(sandbox.requests(1)[0]["query"])) == sorted(parse_qsl(sent["query"])), command[0]
    # From history: the export reads the variables again; Replay asks for the value, as for a header.
    assert "QUERY_ACCESS_TOKEN" in console.export_curl(console.replay_request(record, for_export=True), sandbox.url)
    with pytest.raises(InvalidInputError, match="query parameter access_token was redacted in history"):
        console.replay_request(record)


def test_credential_query_parameters_are_told_from_paging_cursors():
    for name in ("access_token", "accessToken", "key", "api-key", "apiKey", "auth", "sig", "code", "jwt",
                 "client_secret", "hapikey", "X-Api-Key", "api_token", "private_token", "X-Amz-Security-Token",
                 "circle-token", "application_key", "app_key", "sessionToken", "authKey", "user_key"):
        assert console.is_sensitive_query(name), name
    for name in ("pageToken", "nextPageToken", "syncToken", "sortKey", "q", "maxResults", "country_code",
                 "keyword", "author"):
        assert not console.is_sensitive_query(name), name


def test_two_credential_headers_that_read_alike_get_a_variable_each():
    prepared = console.PreparedRequest(method="GET", path="gmail/v1/x", connection_key=KEY, action_id=ACTION,
                                       headers={"api-key": "a", "api_key": "b"})
    assert console.export_variables(prepared) == [("HEADER_API_KEY", "api-key"), ("HEADER_API_KEY_2", "api_key")]
    curl = console.export_curl(prepared, "http://p")
    assert '"api-key: $HEADER_API_KEY"' in curl and '"api_key: $HEADER_API_KEY_2"' in curl
    tricky = console.PreparedRequest(method="GET", path="gmail/v1/x", connection_key=KEY, action_id=ACTION,
                                     query=[("api_key", "a"), ("api-key", "b"), ("api_key_2", "c")])
    variables = [v for v, _ in console.export_variables(tricky)]
    assert len(set(variables)) == 3, variables  # api_key_2's own name was taken by api-key's


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_sends_a_credential_query_parameter_whose_name_needs_encoding(sandbox, tmp_path):
    """curl encodes only the value: "client secret" made a URL it refused, and "+apikey" sent the value raw."""
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"],
                                     query=[("client secret", "a b"), ("+apikey", "v+1")]))
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY, "QUERY_CLIENT_SECRET": "a b", "QUERY_APIKEY": "v+1"}
    subprocess.run(["bash", "-c", console.export_curl(prepared, sandbox.url)], capture_output=True, env=env,
                   cwd=tmp_path, timeout=30, check=True)
    assert sorted(parse_qsl(sandbox.requests(1)[0]["query"])) == [("+apikey", "v+1"), ("client secret", "a b")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_curl_export_of_a_large_body_runs(sandbox, client, store, tmp_path):
    """Bodies up to 1 MiB are sent, but Linux refuses an argument over 128 KiB: "Argument list too long"."""
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/me/messages/send", body_kind="json",
                                     body_text=json.dumps({"raw": "é'$x" * 100_000})))
    run(client, store, prepared)
    sent = _as_sent(sandbox.requests(1)[0])
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
    (tmp_path / "export.sh").write_text(console.export_curl(prepared, sandbox.url))  # as pasted: not one argument
    subprocess.run(["bash", "export.sh"], capture_output=True, env=env, cwd=tmp_path, timeout=30, check=True)
    assert _as_sent(sandbox.requests(1)[0]) == sent
    # A multipart text field as large (--form-string passed it as an argument).
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], action_id=SEND_ACTION, method="POST",
                                     path_template="/gmail/v1/users/me/messages/send", body_kind="multipart",
                                     form=[("to", "a@b.c"), ("raw", "é'$x" * 40_000)]))
    run(client, store, prepared)
    sent = _as_sent(sandbox.requests(1)[0])
    (tmp_path / "export.sh").write_text(console.export_curl(prepared, sandbox.url))
    subprocess.run(["bash", "export.sh"], capture_output=True, env=env, cwd=tmp_path, timeout=30, check=True)
    # The sandbox logs a body's first 64 KiB, cut where the boundaries' lengths put it: compare before the cut.
    assert [part[:50_000] for part in _as_sent(sandbox.requests(1)[0])] == [part[:50_000] for part in sent]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_key_beyond_ascii_is_sent_and_exported(sandbox, client, store, tmp_path):
    """An identity with an accent (AuthKit takes any text) makes a key httpx could not put in a header: the call
    was lost to a UnicodeEncodeError, and so was the Python export."""
    conn = sandbox.state.add_connection(platform="gmail", environment="test", identity="josé ü/1",
                                        identity_type="user")
    assert not conn["key"].isascii()
    prepared = console.prepare(draft(connection_key=conn["key"], query=[("maxResults", "1")]))
    assert run(client, store, prepared).response.status == 200
    sent = _as_sent(sandbox.requests(1)[0])
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
    for command in (["bash", "-c", console.export_curl(prepared, sandbox.url)],
                    [sys.executable, "-c", console.export_httpx(prepared, sandbox.url)]):
        result = subprocess.run(command, capture_output=True, env=env, cwd=tmp_path, timeout=60, check=True)
        assert b"Connection not found" not in result.stdout
        assert _as_sent(sandbox.requests(1)[0]) == sent, command[0]


def test_the_python_export_returns_the_same_response(sandbox, client, store):
    conn = connection(sandbox)
    prepared = console.prepare(draft(connection_key=conn["key"], query=[("maxResults", "2")]))
    expected = run(client, store, prepared).response
    code = console.export_httpx(prepared, sandbox.url)
    env = {**os.environ, "PICA_SECRET_KEY": SANDBOX_TEST_KEY}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=True,
                            text=True)
    status, body = result.stdout.split("\n", 1)
    assert int(status) == expected.status and body.rstrip("\n") == expected.text


def test_the_console_refuses_before_the_client_would_send(sandbox, client):
    # What prepare() accepts, the client accepts too (the same checks), so nothing reaches Pica half-built.
    with pytest.raises(InvalidInputError):
        console.prepare(draft(connection_key=connection(sandbox)["key"], headers=[("X-A", "1\r\n2")]))
    assert sandbox.count("passthrough") == 0



def test_an_escaped_secret_is_masked_in_each_json_string_and_the_rest_stays_as_it_was():
    """The escape check parsed the whole body: a key written twice kept its first (escaped) copy, NDJSON and
    server-sent events did not parse at all, and a body it did mask came out rewritten (0.10000000000000000001
    as 0.1)."""
    key = "sk_test_0123456789abcdef"
    escaped = "\\u0073" + key[1:]
    for template, expected in (
        ('{"note": "SECRET", "note": "x"}', '{"note": "****", "note": "x"}'),
        ('{"n": 1}\n{"t": "a SECRET b"}\n', '{"n": 1}\n{"t": "a **** b"}\n'),
        ('data: {"k": "SECRET"}\n\n', 'data: {"k": "****"}\n\n'),
        ('{"n": 0.10000000000000000001, "s": "SECRET"}', '{"n": 0.10000000000000000001, "s": "****"}'),
    ):
        masked, found = console.scrub_body(template.replace("SECRET", escaped).encode(), key)
        assert found and masked.decode() == expected, template
    assert console.scrub_body(b'{"a": "\\u00e9"}', key) == (b'{"a": "\\u00e9"}', False)  # untouched


def test_the_secret_spelt_in_a_path_s_escapes_or_a_credential_s_name_is_masked(sandbox, client, store, caplog):
    """%73k_test_… in a path reached History and the audit log as typed (the platform got the key); a credential
    header named with the key named it, in capitals too, in the export's variables; a retry's log line and httpx's
    own INFO line wrote the path whole."""
    import logging

    caplog.set_level(logging.DEBUG)
    sandbox.fault("status", status=503, path="/v1/passthrough", count=1)
    escaped = "%73" + SANDBOX_TEST_KEY[1:]
    prepared = console.prepare(draft(connection_key=connection(sandbox)["key"], action_id=SEND_ACTION,
                                     method="POST", path_template=f"/gmail/v1/users/{escaped}/messages/send",
                                     body_kind="json", body_text="{}",
                                     headers=[(f"x-{SANDBOX_TEST_KEY}-key", "v")]))
    record = run(client, store, prepared).record
    [event] = store.audit_events(action="console_call")
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("uvicorn"))  # not the sandbox's
    for shown in (store.call(record.id).path, event.detail["path"], logged,
                  *(f"{v} {n}" for v, n in console.export_variables(prepared, SANDBOX_TEST_KEY)),
                  console.export_curl(prepared, sandbox.url, secret=SANDBOX_TEST_KEY),
                  console.export_httpx(prepared, sandbox.url, secret=SANDBOX_TEST_KEY)):
        assert SANDBOX_TEST_KEY not in shown and escaped not in shown
        assert SANDBOX_TEST_KEY.upper().replace("_", "") not in shown.upper().replace("_", "")
    assert "/users/****/messages" in store.call(record.id).path
    sandbox.fault("status", status=503, path="/v1/passthrough", count=1)  # a read is retried, and says so
    run(client, store, console.prepare(draft(connection_key=connection(sandbox)["key"],
                                             path_template=f"/gmail/v1/users/x{SANDBOX_TEST_KEY}x/messages")))
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("uvicorn"))
    assert "retrying GET" in logged and SANDBOX_TEST_KEY not in logged
    assert "HTTP Request:" not in logged  # httpx's own line, with the whole URL


def test_the_secret_is_masked_in_responses_and_exports():
    secret = "sk_test_0123456789abcdef"
    view = console.response_view(response(body=json.dumps({"echo": secret}).encode()), display_limit=1000,
                                 secret=secret)
    assert secret not in view.display and secret.encode() not in view.body and "masked" in view.note
    escaped = "".join(f"\\u{ord(c):04x}" for c in secret)
    view = console.response_view(response(body=f'{{"messages": [{{"echo": "{escaped}"}}]}}'.encode()),
                                 display_limit=1000, secret=secret)
    assert view.kind == "records" and view.records == [{"echo": "****"}] and "masked" in view.note
    assert secret not in view.display and secret not in json.loads(view.body)["messages"][0]["echo"]
    for encoding in ("utf-16", "utf-16-le", "utf-32"):  # json.loads reads these: the secret must not show
        body = json.dumps({"echo": secret}).encode(encoding)
        view = console.response_view(response(body=body), display_limit=1000, secret=secret)
        assert view.kind == "json" and secret not in view.display and "masked" in view.note, encoding
        assert json.loads(view.body) == {"echo": "****"}
    slashed = "sk_test_AB/CD+ef/0123456789"  # JSON may escape its slashes: \/ read back as / showed it whole
    view = console.response_view(response(body=json.dumps({"echo": slashed}).replace("/", "\\/").encode()),
                                 display_limit=1000, secret=slashed)
    assert slashed not in view.display and slashed not in view.body.decode() and "masked" in view.note
    assert json.loads(view.body) == {"echo": "****"}
    for quoted in ('sk_test_AB"CD0123456789', "sk_test_AB\\CD0123456789"):  # escaped \" and \\ in JSON
        view = console.response_view(response(body=json.dumps({"echo": [quoted], quoted: 1}).encode()),
                                     display_limit=1000, secret=quoted)
        assert quoted not in view.display and json.loads(view.body) == {"echo": ["****"], "****": 1}, quoted
    prepared = console.prepare(draft(query=[("q", secret)], headers=[("X-Echo", secret)]))
    for text in (console.export_curl(prepared, "http://p", secret=secret),
                 console.export_httpx(prepared, "http://p", secret=secret)):
        assert secret not in text and "****" in text
