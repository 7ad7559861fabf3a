"""The console page through the real entry script, against the test sandbox.

Every refusal is proven by the sandbox's passthrough counter: a refused request never reaches Pica.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import pytest
from sqlmodel import select

from pica_core import console
from pica_core.config import SANDBOX_TEST_KEY
from pica_core.store import AuditEvent, PassthroughCallRecord, Store
from tests.app.conftest import assert_clean, open_page

LIST_MESSAGES = "conn_mod_def::GJ3odOE-fdw::ijLww5s-SCSplLQtLpxkrw"  # GET /gmail/v1/users/{{userId}}/messages
SEND_MESSAGE = "conn_mod_def::GJ3odhCpd3I::gujvYoneSk6NFWltse9bGg"  # POST …/messages/send
GET_EMAILS = "conn_mod_def::GGSNOTZxFUU::ZWXBuJboTpS3Q_U06pF8gA"  # POST /gmail/get-emails (custom)


def gmail(sandbox, state="operational", environment="test") -> dict:
    return next(c for c in sandbox.state.connections.values()
                if c["platform"] == "gmail" and c["environment"] == environment and c["state"] == state)


def store() -> Store:
    from pica_core.config import load_settings

    return Store.from_url(load_settings().database_url)


def records() -> list[PassthroughCallRecord]:
    return list(reversed(store().search_calls()))


def passthrough_calls(sandbox) -> int:
    return sandbox.count("passthrough")


def console_on(sandbox, action_id: str = LIST_MESSAGES, *, state="operational", user_id: str | None = "me",
               query: dict | None = None):
    """The console with a Gmail connection chosen by key (deep link) and an action picked in Browse all."""
    conn = gmail(sandbox, state)
    at = open_page("console", query={"key": conn["key"], **(query or {})})
    at.segmented_control(key="con_action_mode").set_value("Browse all").run()
    at.selectbox(key="con_action_pick").set_value(action_id).run()
    if user_id is not None and "con_var_userId" in at.session_state:
        at.text_input(key="con_var_userId").set_value(user_id).run()
    assert_clean(at)
    return at, conn


def send_button(at):
    """The Send button (its key changes after every call: a click queued during a call sends nothing again)."""
    return next(b for b in at.button if b.key.startswith("con_send_"))


def send(at):
    send_button(at).click().run()
    assert_clean(at)
    return at


def shown(markdown: str) -> str:
    """Markdown as the reader sees it: escapes (pica_core.text.plain) removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def messages(at) -> str:
    return "\n".join(shown(e.value) for kind in (at.error, at.warning, at.info, at.success) for e in kind)


def open_history(at):
    """Show the History tab (its content renders only when open, as in the browser)."""
    at.session_state["con_tab"] = "History"
    at.run()
    assert_clean(at)
    return at


def send_then_click_in_history(at, button: str) -> PassthroughCallRecord:
    """Send the built request, then click `button` (replay | load) on its row in History; the call's record."""
    send(at)
    [record] = records()
    at = open_history(at)
    next(b for b in at.button if b.key.startswith(f"con_{button}_{record.id}")).click().run()
    assert_clean(at)
    return record


def history_labels(at) -> list[str]:
    return [label for label in (shown(e.label) for e in at.expander) if label.startswith("#")]


def markdown(at) -> str:
    return "\n".join(shown(m.value) for m in at.markdown)


def codes(at) -> list[str]:
    return [c.value for c in at.code]


def set_rows(at, table: str, rows: list[dict]) -> None:
    """What typing rows into a data editor gives (AppTest cannot edit a data editor directly)."""
    at.session_state[f"{table}_saved"] = rows
    version = at.session_state[f"{table}_ver"] if f"{table}_ver" in at.session_state else 0  # noqa: SIM401 (no .get)
    at.session_state[f"{table}_ver"] = version + 1


# --- round trips --------------------------------------------------------------------------------------------
def test_a_get_round_trips_and_lands_in_history(app_env):
    at, conn = console_on(app_env)
    assert "Fill the path variable" not in messages(at)
    set_rows(at, "con_params", [{"name": "maxResults", "value": "3"}])
    at.run()
    send(at)
    assert passthrough_calls(app_env) == 1
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "200 OK" and metrics["Size"].endswith("B")
    assert app_env.requests(1)[0]["query"] == "maxResults=3"
    [record] = records()
    assert (record.method, record.path, record.status, record.platform) == (
        "GET", "/gmail/v1/users/me/messages", 200, "gmail")
    assert record.connection_key == conn["key"] and record.action_title.startswith("List a User")
    assert any("x-request-id" in str(df.value.to_dict()) for df in at.dataframe)  # passthrough headers
    open_history(at)
    assert any(label.startswith(f"#{record.id} · 200 · GET") for label in history_labels(at))
    assert st_query(at) == {"key": conn["key"], "action": LIST_MESSAGES}


def st_query(at) -> dict:
    return {k: at.query_params[k] for k in at.query_params}


def test_a_post_round_trips_is_audited_and_lands_in_history(app_env):
    at, conn = console_on(app_env, SEND_MESSAGE)
    assert at.segmented_control(key="con_body_kind").value == "json"
    at.text_area(key="con_body_json").set_value('{\n  "raw": "SGVsbG8="\n}').run()
    assert "valid JSON" in " ".join(c.value for c in at.caption)
    send(at)
    assert passthrough_calls(app_env) == 1
    assert json.loads(app_env.requests(1)[0]["body"]) == {"raw": "SGVsbG8="}
    assert {m.label: m.value for m in at.metric}["Status"] == "200 OK"
    [record] = records()
    assert (record.method, record.body_kind, record.request_body) == ("POST", "json", '{"raw":"SGVsbG8="}')
    with store().session() as session:
        [event] = session.exec(select(AuditEvent)).all()
    assert (event.action, event.target, event.outcome, event.actor) == ("console_call", conn["key"], "ok", "local-admin")
    assert event.detail["method"] == "POST" and event.detail["status"] == 200


def test_a_custom_action_gets_the_connection_key_in_its_body(app_env):
    at, conn = console_on(app_env, GET_EMAILS, user_id=None)
    assert any("custom action" in i.value for i in at.info)
    at.text_area(key="con_body_json").set_value('{"query": "is:unread"}').run()
    send(at)
    assert json.loads(app_env.requests(1)[0]["body"]) == {"query": "is:unread", "connectionKey": conn["key"]}


def test_replay_reproduces_the_request_exactly(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    set_rows(at, "con_params", [{"name": "b", "value": "2"}, {"name": "a", "value": "x y"}])
    set_rows(at, "con_headers", [{"name": "X-Trace", "value": "t-1"}])
    at.text_area(key="con_body_json").set_value('{"raw": "SGk=", "é": [1, 2]}').run()
    send_then_click_in_history(at, "replay")
    assert passthrough_calls(app_env) == 2
    original, replayed = app_env.requests(2)
    assert replayed == original  # method, path, query, every header, body
    first, second = records()
    assert (second.method, second.path, second.query, second.request_headers, second.request_body) == (
        first.method, first.path, first.query, first.request_headers, first.request_body)
    assert any(m.value.startswith(f"##### :material/replay: Replay of #{first.id}") for m in at.markdown)


def test_load_into_builder_when_the_database_fails_gets_the_safety_net_s_message(app_env):
    """Its callback runs before the page, outside the shell's handler: a failing store showed Streamlit's own
    error box instead of the page."""
    at, _ = console_on(app_env)
    send(at)
    [record] = records()
    at = open_history(at)
    load = next(b for b in at.button if b.key.startswith(f"con_load_{record.id}"))
    with store().engine.begin() as db:  # the calls' table gone a moment (a migration, a restored backup)
        db.exec_driver_sql("ALTER TABLE passthrough_calls RENAME TO passthrough_calls_away")
    load.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("This page hit an unexpected error (OperationalError)" in e.value for e in at.error)


def test_load_into_builder_then_send_repeats_the_call(app_env):
    at, conn = console_on(app_env, SEND_MESSAGE)
    set_rows(at, "con_params", [{"name": "q", "value": "1"}])
    at.text_area(key="con_body_json").set_value('{"raw": "QQ=="}').run()
    record = send_then_click_in_history(at, "load")
    assert at.session_state["con_tab"] == "Builder"
    assert at.segmented_control(key="con_action_mode").value == "Raw"
    assert at.text_input(key="con_raw_path").value == "/gmail/v1/users/me/messages/send"
    assert at.text_input(key="con_key").value == conn["key"]
    assert any(f"Loaded call #{record.id}" in i.value for i in at.info)
    send(at)
    assert passthrough_calls(app_env) == 2
    original, again = app_env.requests(2)
    assert again == original


# --- refusals: nothing is sent ------------------------------------------------------------------------------------
def test_invalid_json_is_refused_with_line_and_column(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value('{\n  "raw": "SGk="\n  "to": 1\n}').run()
    assert "line 3, column 3" in messages(at)  # shown live under the editor
    send(at)
    assert "Not sent: The JSON body is not valid: Expecting ',' delimiter at line 3, column 3." in messages(at)
    excerpt = '  "to": 1\n  ^'  # the caret under the fault, its spacing kept (a caption would fold it)
    assert codes(at).count(excerpt) == 2 and not [c for c in at.caption if "^" in c.value]  # editor, Not sent
    assert passthrough_calls(app_env) == 0 and records() == []


@pytest.mark.parametrize("body", ['{"raw": "SGk=", "n": NaN}', '{"n": -Infinity}'])
def test_nan_or_infinity_in_the_json_body_is_refused_and_kept(app_env, body):
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value(body).run()
    assert_clean(at)
    assert "NaN/Infinity are not valid JSON" in messages(at)  # shown live under the editor
    send(at)
    assert "Not sent: The JSON body is not valid: NaN/Infinity are not valid JSON" in messages(at)
    assert passthrough_calls(app_env) == 0 and records() == []
    assert at.text_area(key="con_body_json").value == body  # nothing the user typed is lost


def test_a_link_that_finds_no_connection_stays_in_the_address(app_env):
    """A platform without connections, an unknown identity: the URL kept what was asked (it was emptied)."""
    for query in ({"platform": "1-password"}, {"identity": "nobody-here", "identityType": "team"}):
        at = open_page("console", query=query)
        assert_clean(at)
        assert {k: at.query_params[k] for k in query} == query


def test_a_platform_without_actions_says_what_to_do_instead(app_env):
    conn = next(c for c in app_env.state.connections.values() if c["environment"] == "test"
                and not app_env.state.catalog.actions_by_platform.get(c["platform"]))
    at = open_page("console", query={"key": conn["key"]})
    assert_clean(at)
    assert any(f"Pica lists no actions for {conn['platform']}: choose another connection" in shown(c.value)
               for c in at.caption)


def test_a_lone_surrogate_escape_in_the_json_body_is_refused_and_kept(app_env):
    """JSON reads "\\ud800", but UTF-8 cannot carry half a pair: refused, not a crash when it is encoded."""
    at, _ = console_on(app_env, SEND_MESSAGE)
    body = '{"raw": "\\ud800"}'
    at.text_area(key="con_body_json").set_value(body).run()
    assert_clean(at)
    assert "is half of a surrogate pair" in messages(at)  # shown live under the editor
    send(at)
    assert "Not sent: The JSON body is not valid: \\ud800 is half of a surrogate pair" in messages(at)
    assert passthrough_calls(app_env) == 0 and at.text_area(key="con_body_json").value == body


def test_a_missing_path_variable_is_refused(app_env):
    at, _ = console_on(app_env, user_id=None)
    assert at.text_input(key="con_var_userId").value == ""
    send(at)
    assert "Not sent: Fill the path variable {{userId}} before sending." in messages(at)
    assert passthrough_calls(app_env) == 0


def test_a_header_with_cr_lf_is_refused(app_env):
    at, _ = console_on(app_env)
    set_rows(at, "con_headers", [{"name": "X-Test", "value": "ok\r\nX-Injected: 1"}])
    at.run()
    send(at)
    assert "Not sent: Header X-Test contains a line break or control character." in messages(at)
    assert passthrough_calls(app_env) == 0


def test_a_header_that_is_not_ascii_is_refused_and_kept(app_env):
    at, _ = console_on(app_env)
    set_rows(at, "con_headers", [{"name": "X-Note", "value": "café"}])
    at.run()
    send(at)
    assert "Not sent: Header X-Note contains non-ASCII characters: HTTP header values must be ASCII." in messages(at)
    at.text_input(key="con_authorization").set_value("Bearer tökén").run()
    set_rows(at, "con_headers", [])
    at.run()
    send(at)
    assert "Not sent: Header Authorization contains non-ASCII characters" in messages(at)
    assert "tökén" not in messages(at) and at.text_input(key="con_authorization").value == "Bearer tökén"
    assert passthrough_calls(app_env) == 0 and records() == []


@pytest.mark.parametrize("how", ["raw path", "path variable"])
def test_a_path_with_dot_dot_is_refused(app_env, how):
    if how == "path variable":
        at, _ = console_on(app_env, user_id="..")
    else:
        at, _ = console_on(app_env)
        at.segmented_control(key="con_action_mode").set_value("Raw").run()
        at.text_input(key="con_raw_path").set_value("/gmail/v1/users/me/../../admin").run()
        at.text_input(key="con_raw_action_id").set_value(LIST_MESSAGES).run()
    send(at)
    assert "'..'" in messages(at) and "Not sent" in messages(at)
    assert passthrough_calls(app_env) == 0


def test_an_oversized_body_is_refused(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value(json.dumps({"raw": "x" * console.MAX_REQUEST_BODY_BYTES})).run()
    send(at)
    assert f"the console sends at most {console.MAX_REQUEST_BODY_BYTES:,} bytes (1 MiB)" in messages(at)
    assert passthrough_calls(app_env) == 0


# --- connections: state, deep links, live writes ------------------------------------------------------------------
def test_a_failed_connection_warns_and_its_401_says_reconnect(app_env):
    at, conn = console_on(app_env, state="failed")
    assert "This connection is failed." in messages(at)
    [reconnect] = [link for link in at.get("page_link") if link.proto.label == "Reconnect"]
    assert parse_qs(reconnect.proto.query_string)["reconnect"] == [conn["key"]]
    send(at)
    assert {m.label: m.value for m in at.metric}["Status"] == "401 Unauthorized"
    assert "the connection needs reconnecting" in messages(at)
    assert len([link for link in at.get("page_link") if link.proto.label == "Reconnect"]) == 2  # beside the 401 too
    assert any("invalid authentication credentials" in c for c in codes(at))  # the body as the platform sent it


def test_a_degraded_connection_shows_retry_after(app_env):
    at, _ = console_on(app_env, state="degraded")
    assert "This connection is degraded." in messages(at)
    send(at)
    send(at)  # the sandbox fails every other call of a degraded connection
    assert {m.label: m.value for m in at.metric}["Status"] == "429 Too Many Requests"
    assert "retry after 30 s" in messages(at)


def test_history_keeps_pica_s_rate_limit_as_a_clock_time(app_env):
    """History kept "retry in 40 s", which misleads whoever reads it later."""
    at, _ = console_on(app_env)
    app_env.fault("rate_limit", seconds=40, path="/v1/passthrough", count=10)
    send(at)
    [record] = records()
    assert record.status == 429
    assert re.search(r"— Pica's rate limit was reached: retry after \d\d:\d\d:\d\d UTC\.$", record.error)
    assert "retry in" not in record.error
    # Its table tells Pica's 429 from a platform's (the 5xx and 4xx filters hold both).
    send(at)  # the limit still holds… then an answer
    app_env.control("DELETE", "faults")
    send(at)
    open_history(at)
    table = next(df.value for df in at.dataframe if "#" in df.value.columns)
    assert list(table["status"])[:3] == ["200", "429 (Pica)", "429 (Pica)"]


def test_a_write_with_no_answer_is_not_said_to_be_unsent(app_env):
    """"Pica did not forward the call … retry" for a POST whose connection was cut after it went out: the e-mail
    may be sent, and a retry sends it twice."""
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value('{"raw": "QQ=="}').run()
    app_env.fault("drop", path="/v1/passthrough", count=1)
    send(at)
    said = messages(at)
    assert "Whether this POST was carried out is unknown" in said and "No answer to the call" in said
    assert "did not forward" not in said
    assert not [c for c in at.caption if "retry" in c.value]  # the error's own hint said to, beside the warning
    [record] = records()  # History said "retry" to whoever read it later
    assert record.error.endswith("a second send may do it twice.") and "retry" not in record.error
    open_history(at)
    assert [w.value for w in at.warning if "whether it was carried out is unknown" in w.value]
    at, _ = console_on(app_env, SEND_MESSAGE)  # a gateway's timeout: it may have passed the call on
    at.text_area(key="con_body_json").set_value('{"raw": "QQ=="}').run()
    app_env.fault("status", status=504, path="/v1/passthrough", count=1)
    send(at)
    assert "Whether this POST was carried out is unknown" in messages(at)
    assert "did not forward" not in messages(at)
    at, _ = console_on(app_env)  # a read: nothing to fear from sending it again
    app_env.fault("drop", path="/v1/passthrough", count=5)
    send(at)
    assert "No answer to the call" in messages(at) and "carried out is unknown" not in messages(at)


def test_replaying_a_write_with_an_unknown_outcome_waits_for_the_reader_to_say_so(app_env):
    """Replay re-sent it at once: the e-mail may have gone out the first time. (A second press of Replay was one
    double-click away: a box to tick is not.)"""
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value('{"raw": "QQ=="}').run()
    app_env.fault("drop", path="/v1/passthrough", count=1)
    send(at)
    [record] = records()
    open_history(at)
    before = passthrough_calls(app_env)
    replay = next(b for b in at.button if b.key.startswith(f"con_replay_{record.id}"))
    assert replay.disabled and "may have been carried out already" in replay.help
    at.checkbox(key=f"con_again_{record.id}").check().run()
    next(b for b in at.button if b.key.startswith(f"con_replay_{record.id}")).click().run()
    assert_clean(at)
    assert passthrough_calls(app_env) == before + 1
    # The tick served that replay alone: the box is clear again and Replay waits for it.
    assert not at.checkbox(key=f"con_again_{record.id}").value
    assert next(b for b in at.button if b.key.startswith(f"con_replay_{record.id}")).disabled


def test_any_call_in_history_opens_from_its_table(app_env):
    """Only the latest 25 could be opened, replayed or loaded: an older row of the table could not be opened."""
    from pica_core.store import utcnow

    conn = gmail(app_env)
    calls = store()
    for n in range(27):
        calls.record_call(PassthroughCallRecord(
            at=utcnow(), actor="a@x.io", environment="test", connection_key=conn["key"], platform="gmail",
            action_id=LIST_MESSAGES, action_title=f"Call {n}", method="GET", path="/gmail/v1/users/me/messages",
            status=200, response_body=json.dumps({"n": n})))
    calls.engine.dispose()
    at = open_history(open_page("console"))
    assert not [label for label in history_labels(at) if "Call 0" in label]  # the oldest: not among the latest 25
    table = next(d for d in at.dataframe if (d.key or "").startswith("con_h_table."))
    at.session_state[table.key] = {"selection": {"rows": [26], "columns": []}}
    at.run()
    assert_clean(at)
    [opened] = [e for e in at.expander if "Call 0" in shown(e.label)]
    assert opened.proto.expanded and any('"n": 0' in c.value for c in opened.code)
    oldest = min(r.id for r in records())
    assert any(b.key == f"con_load_{oldest}" for b in opened.button)  # Replay and Load as for the latest


def test_a_refused_send_says_the_response_shown_is_the_last_call_s(app_env):
    at, _ = console_on(app_env)
    send(at)
    at.text_input(key="con_var_userId").set_value("").run()
    send(at)
    assert any("Not sent" in e.value for e in at.error)
    assert any("The answer to the last call sent, not to the request above" in c.value for c in at.caption)
    # With no action chosen, the response stays (the page failed: `refused` was set only with an action)
    at.segmented_control(key="con_action_mode").set_value("Raw").run()
    assert_clean(at)
    at.text_input(key="con_key").set_value("").run()
    assert_clean(at)


def test_a_read_retried_after_pica_s_rate_limit_says_so(app_env):
    """"200 OK · 3005 ms" read as a slow platform: the console had waited out Pica's 429 and asked again."""
    at, _ = console_on(app_env)
    app_env.fault("rate_limit", seconds=1, path="/v1/passthrough", count=1)
    send(at)
    assert {m.label: m.value for m in at.metric}["Status"] == "200 OK"
    said = [shown(c.value) for c in at.caption if c.value.startswith("Asked ")]
    assert said and said[0].startswith("Asked 2 times (the first: 429 ") and "waited 1.0 s in all" in said[0]
    # The secret typed into a path stays masked there too, and in the error of a call that got no answer.
    at, _ = console_on(app_env, user_id=f"x{SANDBOX_TEST_KEY}x")
    app_env.fault("rate_limit", seconds=1, path="/v1/passthrough", count=1)
    send(at)
    app_env.fault("drop", path="/v1/passthrough", count=5)
    send(at)
    said = "\n".join([*(shown(c.value) for c in at.caption), messages(at)])
    assert SANDBOX_TEST_KEY not in said and "x****x" in said


def test_a_connection_that_failed_since_the_sync_warns(app_env):
    conn = gmail(app_env)
    app_env.set_state(conn["id"], "failed")
    at = open_page("console", query={"key": conn["key"]})
    assert "This connection is failed." in messages(at)


def test_deep_link_by_identity_picks_one_of_its_connections(app_env):
    conn = gmail(app_env)
    at = open_page("console", query={"identity": conn["identity"], "identityType": conn["identityType"]})
    assert_clean(at)
    assert at.segmented_control(key="con_conn_mode").value == "Identity"
    assert at.text_input(key="con_identity").value == conn["identity"]
    picker = at.selectbox(key="con_identity_pick")
    assert conn["key"] in picker.options or conn["key"] == picker.value
    picker.set_value(conn["key"]).run()
    assert st_query(at)["key"] == conn["key"] and st_query(at)["identity"] == conn["identity"]


def test_deep_link_by_platform_lists_its_connections(app_env):
    at = open_page("console", query={"platform": "slack"})
    assert_clean(at)
    assert at.segmented_control(key="con_conn_mode").value == "Platform"
    assert at.selectbox(key="con_platform_pick").value.startswith("test::slack::")
    assert "Action on Slack" in markdown(at)
    # Platforms are chosen from the catalog by name (an id had to be typed), and the headings name them.
    picker = at.selectbox(key="con_platform")
    assert picker.value == "slack" and len(picker.options) > 200 and "Gmail" in picker.options
    picker.select("gmail").run()
    assert_clean(at)
    assert at.selectbox(key="con_platform_pick").value.startswith("test::gmail::")
    assert "**Platform**  \nGmail" in markdown(at) and "Action on Gmail" in markdown(at)
    assert st_query(at)["platform"] == "gmail"


def test_a_link_to_a_platform_the_catalog_lacks_keeps_it(app_env):
    at = open_page("console", query={"platform": "Acme-Widgets"})
    assert_clean(at)
    assert at.selectbox(key="con_platform").value == "acme-widgets"
    assert "No active acme-widgets connections in this test environment." in messages(at)
    assert st_query(at)["platform"] == "acme-widgets"


def test_search_fills_method_path_and_knowledge(app_env):
    at = open_page("console", query={"key": gmail(app_env)["key"]})
    at.text_input(key="con_action_query").set_value("send message").run()
    at.selectbox(key="con_action_pick").set_value(SEND_MESSAGE).run()
    assert_clean(at)
    assert ":blue-badge[POST] **/gmail/v1/users/{{userId}}/messages/send**" in markdown(at)
    assert any(e.label == "Knowledge" for e in at.expander)
    assert "con_var_userId" in at.session_state
    assert st_query(at)["action"] == SEND_MESSAGE


def test_an_unknown_key_is_refused_before_any_lookup(app_env):
    at = open_page("console", query={"key": "test::gmail::nope"})
    assert_clean(at)
    assert "does not look like a Pica connection key" in messages(at)


def console_while_pica_fails(sandbox, path: str):
    """The console opened on a Gmail connection's key while Pica answers 503 to everything under `path`."""
    conn = gmail(sandbox)
    sandbox.fault("status", status=503, count=100, path=path)
    at = open_page("console", query={"key": conn["key"]})
    assert_clean(at)
    return at


def test_a_key_pica_could_not_be_asked_about_is_not_said_to_be_unknown(app_env):
    at = console_while_pica_fails(app_env, "/v1/vault")
    assert "Could not read the connection with this key" in messages(at)
    assert "does not list an active connection" not in messages(at)  # not known either way


@pytest.fixture
def live_env(app_env, monkeypatch):
    monkeypatch.setenv("PICA_SECRET_KEY", "sk_live_sandbox")
    return app_env


def test_a_live_write_needs_an_explicit_confirmation(live_env, monkeypatch):
    monkeypatch.setenv("ALLOW_LIVE_WRITES", "true")
    conn = gmail(live_env, environment="live")
    at = open_page("console", query={"key": conn["key"], "action": SEND_MESSAGE})
    at.text_input(key="con_var_userId").set_value("me").run()
    at.text_area(key="con_body_json").set_value('{"raw": "SGk="}').run()
    button = send_button(at)
    assert button.disabled and "tick the confirmation box" in button.help  # (the send path re-checks it too)
    assert passthrough_calls(live_env) == 0
    at.checkbox(key="con_confirm_live").check().run()
    assert not send_button(at).disabled
    send(at)
    assert passthrough_calls(live_env) == 1
    assert {m.label: m.value for m in at.metric}["Status"] == "200 OK"
    [record] = records()
    assert record.environment == "live"


def test_live_without_sign_in_is_read_only_but_gets_work(live_env):
    conn = gmail(live_env, environment="live")
    at = open_page("console", query={"key": conn["key"], "action": SEND_MESSAGE})
    at.text_input(key="con_var_userId").set_value("me").run()
    assert send_button(at).disabled
    assert "read-only" in send_button(at).help
    at = open_page("console", query={"key": conn["key"], "action": LIST_MESSAGES})
    at.text_input(key="con_var_userId").set_value("me").run()
    assert not send_button(at).disabled
    send(at)
    assert passthrough_calls(live_env) == 1


# --- history ----------------------------------------------------------------------------------------------------
def test_history_filters_and_compare(app_env):
    at, _ = console_on(app_env)
    send(at)
    failed = gmail(app_env, "failed")
    at.segmented_control(key="con_conn_mode").set_value("Connection key").run()
    at.text_input(key="con_key").set_value(failed["key"]).run()
    at.segmented_control(key="con_action_mode").set_value("Browse all").run()
    at.selectbox(key="con_action_pick").set_value(LIST_MESSAGES).run()
    at.text_input(key="con_var_userId").set_value("me").run()
    send(at)
    assert passthrough_calls(app_env) == 2
    ok, unauthorized = records()
    open_history(at).text_input(key="con_h_status").set_value("401").run()
    labels = history_labels(at)
    assert len(labels) == 1 and labels[0].startswith(f"#{unauthorized.id} · 401")
    assert f"· {failed['key'].partition('|')[2]} ·" in labels[0]  # whose connection it was
    at.text_input(key="con_h_status").set_value("").run()
    at.text_input(key="con_h_text").set_value("invalid authentication").run()
    assert [label.split(" ")[0] for label in history_labels(at)] == [f"#{unauthorized.id}"]
    at.text_input(key="con_h_text").set_value("").run()
    at.selectbox(key="con_h_platform").set_value("gmail").run()
    at.text_input(key="con_h_action").set_value("list a user").run()
    assert len(history_labels(at)) == 2
    assert any(line.startswith("-") or line.startswith("+") for c in codes(at) for line in c.splitlines()
               if c.startswith("---"))  # the diff of the 200 and the 401 bodies
    assert_clean(at)


@pytest.mark.parametrize("status", ["²", "99999999999999999999", "4290"])
def test_a_status_filter_that_is_not_a_status_is_ignored_with_a_message(app_env, status):
    at, _ = console_on(app_env)
    send(at)
    [record] = records()
    open_history(at).text_input(key="con_h_status").set_value(status).run()
    assert_clean(at)
    assert any("Status must be a three-digit HTTP status such as 200 or 429" in shown(c.value) for c in at.caption)
    assert [label.split(" ")[0] for label in history_labels(at)] == [f"#{record.id}"]  # the other filters still apply
    assert at.text_input(key="con_h_status").value == status


def test_exports_and_stored_history_never_contain_the_secret(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    set_rows(at, "con_headers", [{"name": "X-Echo", "value": SANDBOX_TEST_KEY}])
    at.text_input(key="con_authorization").set_value("Bearer upstream-token").run()
    at.text_area(key="con_body_json").set_value(json.dumps({"raw": SANDBOX_TEST_KEY})).run()
    send(at)
    assert passthrough_calls(app_env) == 1
    assert app_env.requests(1)[0]["headers"]["authorization"] == "Bearer upstream-token"
    curl = next(c for c in codes(at) if "curl -sS" in c)
    assert "$PICA_SECRET_KEY" in curl and "$HEADER_AUTHORIZATION" in curl
    # Every variable an export reads is named (the credential's went unsaid, and curl sent the call without it).
    assert any("Set `PICA_SECRET_KEY` and `HEADER_AUTHORIZATION` (Authorization's value) in your shell first" in
               shown(c.value) for c in at.caption)
    page = "\n".join([*codes(at), messages(at), markdown(at), *(shown(c.value) for c in at.caption)])
    assert SANDBOX_TEST_KEY not in page and "upstream-token" not in page
    [record] = records()
    assert SANDBOX_TEST_KEY not in record.model_dump_json() and "upstream-token" not in record.model_dump_json()
    assert record.request_headers["Authorization"] == console.REDACTED


def test_a_list_s_paging_fields_show_beside_its_records(app_env):
    at, _ = console_on(app_env)
    send(at)
    assert any(c.startswith("resultSizeEstimate: ") and "\nnextPageToken: " in c for c in codes(at)), codes(at)


def test_the_request_preview_shows_the_headers_and_body_send_will_send(app_env):
    """It showed the method and URL alone: an Authorization its field had not taken (Tab to the field's eye icon
    leaves it unsaved) went unsent with nothing on the page to tell."""
    at, _ = console_on(app_env, SEND_MESSAGE)
    set_rows(at, "con_headers", [{"name": "X-Trace", "value": "t-1"}])
    at.text_area(key="con_body_json").set_value('{"raw": "SGk="}').run()
    preview = next(c for c in codes(at) if c.startswith("POST /v1/passthrough/"))
    assert preview.splitlines()[1:] == ["X-Trace: t-1", "", "(JSON body, 14 B)"]
    at.text_input(key="con_authorization").set_value("Bearer upstream-token").run()
    preview = next(c for c in codes(at) if c.startswith("POST /v1/passthrough/"))
    assert "Authorization: ••••••" in preview.splitlines() and "upstream-token" not in preview


def test_a_refused_request_s_message_masks_the_secret_it_quotes(app_env):
    """"Not ready: Header name 'sk_test_… x' is not valid" quoted it, beside a preview that masked it."""
    at, _ = console_on(app_env)
    set_rows(at, "con_headers", [{"name": f"{SANDBOX_TEST_KEY} x", "value": "1"}])
    send(at)
    said = "\n".join([*(shown(c.value) for c in at.caption), messages(at)])
    assert "Not ready" in said and "Not sent" in said and SANDBOX_TEST_KEY not in said


def test_the_secret_typed_into_a_path_is_masked_above_the_answer_too(app_env):
    """History and the body masked it, but the line above the answer (and the sending spinner) showed it."""
    at, _ = console_on(app_env, user_id=f"x{SANDBOX_TEST_KEY}x")
    send(at)
    said = "\n".join([*(shown(c.value) for c in at.caption), markdown(at), messages(at)])
    assert SANDBOX_TEST_KEY not in said and "/gmail/v1/users/x****x/messages" in said


def test_the_console_does_not_wait_on_a_failing_catalog_for_names(app_env):
    """It read the catalog three times a run for platform names, and a failed read is not cached: with Pica's
    catalog endpoint hanging, every click waited out three timeouts. Names come from a catalog read before."""
    import streamlit as st

    from pica_core.caching import last_good

    conn = gmail(app_env)
    st.cache_data.clear()
    last_good.clear()
    app_env.fault("status", status=503, count=1000, path="/v1/available-connectors")
    at = open_page("console", query={"key": conn["key"]})  # its first run is the Overview's, which asks
    before = app_env.count("available-connectors")
    at.run()
    at.run()
    assert_clean(at)
    assert app_env.count("available-connectors") == before  # not asked: ids shown instead
    assert "**Platform**  \ngmail" in markdown(at)


def test_an_identity_refused_here_is_not_said_to_be_pica_s_failure(app_env):
    at = open_page("console", query={"identity": "ana\x00"})
    assert_clean(at)
    said = messages(at)
    assert "control characters" in said and "from Pica" not in said


def test_history_shows_header_values_as_sent(app_env):
    """A caption's markdown showed "hello  world" as "hello world": not what was sent."""
    at, _ = console_on(app_env)
    set_rows(at, "con_headers", [{"name": "X-Trace", "value": "hello  world"}])
    send(at)
    at = open_history(at)
    assert any("X-Trace: hello  world" in c for c in codes(at))


def test_picas_own_error_is_a_message_and_still_recorded(app_env):
    at, _ = console_on(app_env)
    at.segmented_control(key="con_action_mode").set_value("Raw").run()
    at.selectbox(key="con_raw_method").set_value("GET").run()
    at.text_input(key="con_raw_path").set_value("/gmail/v1/users/me/labels").run()
    at.text_input(key="con_raw_action_id").set_value("conn_mod_def::unknown::action").run()
    send(at)
    assert passthrough_calls(app_env) == 1
    assert "Pica did not forward the call: 404 Action not found for platform gmail" in messages(at)
    [record] = records()
    assert record.status == 404 and record.response_body is None and "Action not found" in record.error


def test_a_form_body_round_trips(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.segmented_control(key="con_body_kind").set_value("form").run()
    set_rows(at, "con_form", [{"name": "raw", "value": "a b&c"}])
    at.run()
    send(at)
    sent = app_env.requests(1)[0]
    assert sent["body"] == "raw=a+b%26c" and sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    [record] = records()
    assert (record.body_kind, record.request_body) == ("form", "raw=a+b%26c")


def test_a_warm_rerun_makes_no_upstream_call(app_env):
    at, _ = console_on(app_env)
    send(at)
    calls = app_env.count()
    at.run()
    open_history(at).text_input(key="con_h_text").set_value("INBOX").run()
    assert_clean(at)
    assert app_env.count() == calls


def test_a_deep_link_to_an_action_picks_it_or_says_it_is_not_one_of_the_platform_s(app_env):
    conn = gmail(app_env)
    at = open_page("console", query={"key": conn["key"], "action": LIST_MESSAGES})
    assert_clean(at)
    assert at.selectbox(key="con_action_pick").value == LIST_MESSAGES and "not one of" not in messages(at)
    at = open_page("console", query={"key": conn["key"], "action": "conn_mod_def::NOPE::nope"})
    assert_clean(at)
    assert "The link's action conn_mod_def::NOPE::nope is not one of gmail's actions: choose one below." in messages(at)
    assert at.selectbox(key="con_action_pick").value is None


def test_actions_pica_could_not_list_are_not_reported_as_no_match(app_env):
    at = console_while_pica_fails(app_env, "/v1/available-actions")
    assert "Actions of gmail: 503" in messages(at)
    assert not [c.value for c in at.caption if "No actions" in c.value]


def test_raw_mode_sends_when_pica_cannot_list_the_actions(app_env):
    """Raw mode asks for the action only for its title: a failed search must not stop it (Load into builder
    opens every stored call in raw mode)."""
    conn = gmail(app_env)
    at = open_page("console", query={"key": conn["key"]})
    at.segmented_control(key="con_action_mode").set_value("Raw").run()
    at.text_input(key="con_raw_path").set_value("/gmail/v1/users/me/messages").run()
    app_env.fault("status", status=503, count=100, path="/v1/available-actions")
    import streamlit as st

    st.cache_data.clear()
    at.text_input(key="con_raw_action_id").set_value(LIST_MESSAGES).run()
    assert_clean(at)
    send(at)
    assert records()[0].status == 200


def test_a_list_shown_from_before_a_pica_failure_says_when_it_was_fetched(app_env):
    import streamlit as st

    conn = gmail(app_env)
    at = open_page("console", query={"identity": conn["identity"]})
    assert not [w for w in at.warning if "Pica could not give" in w.value]
    st.cache_data.clear()  # the cache expired: the next view asks Pica again
    app_env.fault("status", status=503, count=100, path="/v1/vault")
    at.run()
    assert_clean(at)
    assert "Pica could not give the connections of this identity just now, so this is what it answered" in messages(at)
    assert any(c.value.startswith("503 ") for c in at.caption)
    assert any(o.startswith(f"Gmail · {conn['identity']}") for o in at.selectbox(key="con_identity_pick").options)


def test_a_link_with_an_unknown_identity_type_says_so(app_env):
    conn = gmail(app_env)
    at = open_page("console", query={"identity": conn["identity"], "identityType": "bogus"})
    assert_clean(at)
    assert "The link's identity type bogus is not one of user, team, organization, project: showing every type." in (
        messages(at))
    assert at.selectbox(key="con_identity_type").value == "any"
    at = open_page("connect", query={"identity": "ava", "identityType": "bogus"})
    assert_clean(at)
    assert "The link's identity type bogus is not one of user, team, organization, project: choose the right one" in (
        messages(at))


def test_coming_back_by_the_sidebar_finds_the_connection_action_and_what_was_typed(app_env):
    at, conn = console_on(app_env, LIST_MESSAGES, user_id="me-again")
    at.text_input(key="con_var_userId").set_value("me-again").run()
    for page in ("fleet", "console"):  # the sidebar's links carry no query
        at.switch_page(f"pages/{page}.py")
        at.query_params.clear()
        at.run()
    assert_clean(at)
    assert at.query_params["key"] == conn["key"] and at.query_params["action"] == LIST_MESSAGES
    assert at.text_input(key="con_var_userId").value == "me-again"
    assert any("/gmail/v1/users/me-again/messages" in c.value for c in at.code)  # ready to send again


def test_coming_back_by_the_sidebar_sends_the_body_that_was_typed(app_env):
    at, _ = console_on(app_env, SEND_MESSAGE)
    at.text_area(key="con_body_json").set_value('{"raw": "SGk="}').run()
    for page in ("fleet", "console"):
        at.switch_page(f"pages/{page}.py")
        at.query_params.clear()
        at.run()
    assert at.segmented_control(key="con_body_kind").value == "json"
    send(at)
    [record] = records()
    assert (record.method, record.body_kind, record.request_body) == ("POST", "json", '{"raw":"SGk="}')


@pytest.mark.parametrize("body", ['{"raw":\n', '{"raw":\r\n', '{"a": 1,\u2028"b" 2}'])
def test_a_json_body_cut_short_or_with_odd_line_breaks_is_a_message(body):
    error = console.json_error(body)
    assert error is not None and "is not valid" in error.message and "^" in error.hint
