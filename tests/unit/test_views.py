"""Pure view logic: lookups in the URL, bulk input, empty-result hints, timelines, grants, masked settings."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from pica_core.config import Secret, load_settings
from pica_core.connections_view import (
    MAX_BULK_IDENTITIES,
    Lookup,
    TriageResult,
    alternative_chosen,
    apply_filters,
    by_identity,
    connection_rows,
    connections_csv,
    in_its_letters,
    likely_meant,
    no_results_message,
    merge_tags,
    needing_attention,
    parse_bulk,
    sort_for_attention,
    triage_csv,
    triage_failures,
    triage_rows,
    triage_summary,
)
from pica_core.errors import InvalidInputError
from pica_core.health import attention_summary, describe_transition, state_counts, timeline
from pica_core.models import Connection
from pica_core.settings_view import configuration_rows
from pica_core.store import Store
from pica_core.tokens import GrantError, GrantSigner, RateLimiter, token_headers


def test_lookup_round_trips_through_the_query_string():
    lookup = Lookup(identity="ana@x.io", identity_type="user", states=("failed", "degraded"), platforms=("gmail",),
                    environments=("test",), selected="abc")
    assert Lookup.from_query(lookup.to_query()) == lookup
    assert Lookup.from_query({"identity": "a", "identityType": "robot", "state": "failed,nope"}) == Lookup(
        identity="a", states=("failed",))
    assert Lookup.from_query({"identity": "a", "state": "failed,FAILED,degraded,failed", "platforms": "slack,Slack"}) \
        == Lookup(identity="a", states=("failed", "degraded"), platforms=("slack",))  # each once: a chip each


def test_a_key_or_an_identity_typed_over_the_other_is_looked_up_alone():
    key = "test::gmail::default::" + "a" * 32 + "|u2"
    shown = Lookup(identity="u1", identity_type="user")
    assert alternative_chosen(shown, Lookup(identity="u1", identity_type="user", key=key)) == Lookup(key=key)
    by_key = Lookup(key=key)
    assert alternative_chosen(by_key, Lookup(identity="u3", key=key)) == Lookup(identity="u3")
    both = Lookup(identity="u2", identity_type="team", key=key)
    assert alternative_chosen(shown, both) == both  # both changed: both meant
    assert alternative_chosen(shown, Lookup(identity="u4")) == Lookup(identity="u4")


def test_the_same_lookup_asked_again_keeps_its_filters_and_open_connection():
    """Look up pressed to ask Pica anew dropped the state filter and closed the connection the reader had open."""
    shown = Lookup(identity="u1", identity_type="team", states=("failed",), environments=("test",), selected="c1")
    assert alternative_chosen(shown, Lookup(identity="u1", identity_type="team")) == shown
    assert alternative_chosen(shown, Lookup(identity="u1", identity_type="user")) == Lookup(identity="u1",
                                                                                           identity_type="user")


def test_a_link_s_identity_type_and_platform_are_read_in_any_letter_case():
    assert Lookup.from_query({"identity": "A", "identityType": " Team", "platform": "Gmail"}) == Lookup(
        identity="A", identity_type="team", platform="gmail")  # the identity is matched exactly: kept as written
    link = {"identity": "a", "state": "failed,DEGRADED", "environment": "Test", "platforms": "HubSpot"}
    assert Lookup.from_query(link) == Lookup(identity="a", states=("failed", "degraded"), environments=("test",),
                                             platforms=("hubspot",))
    assert Lookup.left_out(link) == []


def test_a_lookup_links_under_the_path_the_app_is_served_from():
    lookup = Lookup(identity="a&b", identity_type="team")
    assert lookup.link() == "/connections?identity=a%26b&identityType=team"
    assert lookup.link("/ops") == lookup.link("/ops/") == "/ops/connections?identity=a%26b&identityType=team"


def test_lookup_filters_validate_before_any_request():
    with pytest.raises(InvalidInputError):
        Lookup().filters()
    with pytest.raises(InvalidInputError):
        Lookup(key="not-a-key").filters()
    assert Lookup(identity=" u1 ", identity_type="team").filters() == {"identity": "u1", "identity_type": "team"}


def test_parse_bulk_numbers_lines_as_pasted():
    parsed = parse_bulk("identity,identityType\nu1,user\nu1,user\nu2\n\nbad,robot\n" + "x" * 130)
    assert parsed.identities == [("u1", "user"), ("u2", None)]
    assert [p.split(":")[0] for p in parsed.problems] == ["Line 6", "Line 7"]
    assert parsed.problems[0].endswith("It reads “bad, robot”.")  # the line, to find it in the list
    assert parsed.problems[1].endswith("x" * 58 + "…”.")
    assert parse_bulk("a\x00b,user\n").problems[0].endswith("It reads “a b, user”.")


def test_parse_bulk_reads_the_identity_column_of_a_file_and_numbers_its_own_lines():
    upload = "\ufeffemail,identityType,identity\nana@x.io,team,t-1\nbo@x.io,,u-2\nx,robot,u-3\n".encode()
    parsed = parse_bulk("", upload)  # Excel's byte order mark, the identity in the third column
    assert parsed.identities == [("t-1", "team"), ("u-2", None)]
    assert parsed.problems[0].startswith("File line 4: Identity type must be")
    both = parse_bulk("p-1\n\n", b"identity\nu-9\n\"bad\nu-10,user\n")
    assert both.identities == [("p-1", None), ("u-9", None), ("u-10", None)]  # a stray quote spoils its line only
    assert both.problems == ["File line 3: not readable as CSV (a quote opened on it is not closed); it was skipped. "
                             "It reads “\"bad”."]


def test_parse_bulk_says_when_a_header_has_no_identity_column():
    parsed = parse_bulk("", b"email,type\nu-1,user\n")
    assert parsed.identities == [("u-1", "user")]
    assert parsed.problems == ["File line 1 is a header without an “identity” column: name the column of "
                               "identities identity; the lines under it were read as identity, type."]


def test_parse_bulk_reads_a_one_column_file_s_usual_header_as_a_header():
    """A column named email was looked up as an end user called "email"."""
    parsed = parse_bulk("", b"\xef\xbb\xbfEmail\nana@acme.io\nbo@acme.io\n")
    assert parsed.identities == [("ana@acme.io", None), ("bo@acme.io", None)]
    assert parsed.problems == ["File line 1, “Email”, was read as the column's header, not looked up (a column named "
                               "identity is read as such without a word)."]
    assert parse_bulk("usr_1\nemail\n").identities == [("usr_1", None), ("email", None)]  # only a first line


def test_parse_bulk_names_twenty_problems_and_counts_the_rest():
    """A file of 3,000 lines under an unknown header drew 3,001 warnings and slowed every later run of the page."""
    parsed = parse_bulk("", ("email,name\n" + "".join(f"a{n}@x.io,Ana {n}\n" for n in range(3000))).encode())
    assert parsed.identities == [] and len(parsed.problems) == 21
    assert parsed.problems[0].endswith("If it is a header row, name the column of identities identity (and of "
                                       "their types identityType).")
    assert "If it is a header" not in parsed.problems[1]
    assert parsed.problems[-1] == ("… and 2,981 more lines skipped the same ways or others: correct the lines above, "
                                   "then Triage again.")


def test_parse_bulk_follows_excel_s_separator_line():
    parsed = parse_bulk("", b"sep=;\nidentity;identityType\nusr_1;user\nt,2;team\n")
    assert parsed.identities == [("usr_1", "user"), ("t,2", "team")] and not parsed.problems
    parsed = parse_bulk("", b"sep=\t\r\nidentity\ttype\r\nana\tuser\r\n")
    assert parsed.identities == [("ana", "user")] and not parsed.problems


def test_a_file_that_is_not_utf_8_is_said_whatever_the_lines_pasted_beside_it():
    parsed = parse_bulk("".join(f"bad{n},robot\n" for n in range(25)), "identity\nZoë\n".encode("latin-1"))
    assert parsed.problems[0] == "The file is not UTF-8 text: save it as CSV UTF-8 and upload it again."
    assert len(parsed.problems) == 22


def test_parse_bulk_reads_lines_ended_as_old_macs_end_them():
    """Excel's "CSV (Macintosh)" ends lines with a bare CR: the whole file was one unreadable line."""
    parsed = parse_bulk("", b"identity,identityType\rusr_1,user\rt-2,team\r")
    assert parsed.identities == [("usr_1", "user"), ("t-2", "team")] and not parsed.problems
    assert parsed.origins == ["file line 2", "file line 3"]
    # Other breaks str.splitlines knows stay inside their line: a control character, refused with that line alone.
    parsed = parse_bulk("u-1\x0cu-2\nu-3\n")
    assert parsed.identities == [("u-3", None)] and "Line 1" in parsed.problems[0]


def test_parse_bulk_reads_semicolons_and_tabs_as_spreadsheets_write_them():
    assert parse_bulk("", b"Identity;Type\r\nusr_1;user\r\nt-2;team\r\n").identities == [("usr_1", "user"), ("t-2", "team")]
    assert parse_bulk("usr_1\tuser\nusr_2\n").identities == [("usr_1", "user"), ("usr_2", None)]
    assert parse_bulk("a;b@x.io,user\n").identities == [("a;b@x.io", "user")]  # a comma: commas separate
    # A spreadsheet row pasted under comma lines keeps its tab as the separator (it was read as one identity).
    assert parse_bulk("u-1,team\nvik@x.io\tuser\n").identities == [("u-1", "team"), ("vik@x.io", "user")]


def test_parse_bulk_says_where_the_identities_left_out_begin():
    parsed = parse_bulk("\n".join(f"u-{n}" for n in range(MAX_BULK_IDENTITIES + 1)) + "\n",
                        b"identity\nfrom-file\n")
    assert len(parsed.identities) == MAX_BULK_IDENTITIES and not parsed.problems
    assert parsed.later == [(f"u-{MAX_BULK_IDENTITIES}", None), ("from-file", None)]
    assert parsed.later_note == (f"2 more identities, from line {MAX_BULK_IDENTITIES + 1} on, are not looked up yet: "
                                 f"a triage looks up {MAX_BULK_IDENTITIES} at a time.")
    following = parsed.next_batch()
    assert following.identities == parsed.later and following.origins == ["line 501", "file line 2"]
    assert not following.later and following.later_note == ""


def test_parse_bulk_says_what_it_could_not_read():
    huge = parse_bulk("u-1\n\"" + "z" * 200_000 + "\"\nu-2\n")  # over csv's field size limit
    assert huge.identities == [("u-1", None), ("u-2", None)]
    assert huge.problems[0].startswith("Line 2: not readable as CSV (field larger than field limit")
    assert "it was skipped" in huge.problems[0]
    latin1 = parse_bulk("", "identity\nJos\xe9\n".encode("latin-1"))
    assert latin1.identities == [] and latin1.problems == [
        "The file is not UTF-8 text: save it as CSV UTF-8 and upload it again."]


def test_an_identity_type_narrows_a_platform_lookup_too():
    lookup = Lookup.from_query({"platform": "gmail", "identityType": "team"})
    assert lookup.filters() == {"identity_type": "team", "platform": "gmail"}
    assert lookup.describe() == "identities of type team, platform gmail"
    assert no_results_message(lookup, environment="test")[0] == (
        "No connections on platform gmail for identities of type team.")
    assert Lookup(identity_type="team").empty  # alone it would list most of the account: the page asks for more


def test_a_key_looked_up_with_an_identity_says_the_identity_narrowed_it():
    key = "test::jira::default::" + "d" * 32 + "|team-data-wayne-9"
    lookup = Lookup(identity="vik@umbrella.io", key=key)
    assert lookup.describe() == f"key {key}, vik@umbrella.io (type any)"
    message, hint = no_results_message(lookup, environment="test")
    assert message == f"No connection with key {key} among vik@umbrella.io (type any)."
    assert hint.startswith("The other fields narrow a key's lookup: look the key up alone.")
    assert "does not list it" not in hint  # it said "deleted" of a key listed all along, under another identity
    assert likely_meant(lookup) == Lookup(key=key)  # the page's "Look up key …" link
    message, hint = no_results_message(Lookup(key=key), environment="test")
    assert message == f"No connection with key {key}." and "narrow" not in hint and "does not list it" in hint
    assert likely_meant(Lookup(key=key)) is None


def test_no_results_message_says_a_word_after_a_comma_is_not_a_type():
    """`usr_1,robot` was looked up whole, with no word why (usr_1,team is split into identity and type)."""
    _, hint = no_results_message(Lookup(identity="usr_1,robot"), environment="test")
    assert hint.startswith("“robot” after the comma is not an identity type (user, team, organization, project)")
    for identity in ("Acme, Inc", "plain", "usr_1,user"):  # a link's usr_1,user: its word is a type
        assert "after the comma" not in no_results_message(Lookup(identity=identity), environment="test")[1]
    # A link's usr_1,user is looked up whole (Look up splits what is typed, links not): the hint says how to split it.
    _, hint = no_results_message(Lookup(identity="usr_1,User"), environment="test")
    assert hint.startswith("The whole text was looked up as the identity: for usr_1 of type user, choose the type")
    for identity, kind in (("Acme, Inc", ""), ("plain", ""), ("usr_1,user", "team"),
                           ("tenant-7,eu-west-billing-department", "")):  # not a type: never called one
        assert "whole text" not in no_results_message(Lookup(identity=identity, identity_type=kind),
                                                      environment="test")[1]


def test_no_results_message_hints_other_types_and_environment():
    team = [Connection(id=f"t{n}", key=f"test::slack::default::{n:032x}|u1", platform="slack", identity="u1",
                       identity_type="team") for n in range(2)]
    message, hint = no_results_message(Lookup(identity="u1", identity_type="user"), others=team, environment="test")
    assert message == "No connections for u1 (type user)."
    assert "2 as type team" in hint and "test key" in hint and "live environment" in hint
    _, hint = no_results_message(Lookup(key="live::gmail::default::" + "a" * 32), environment="test")
    assert hint.startswith("That key belongs to the live environment.")
    _, hint = no_results_message(Lookup(key="test::gmail::default::" + "a" * 32), environment="test")
    assert "live" not in hint and "deleted" in hint  # its own environment's key: that is not why


def test_no_results_on_a_platform_names_it_and_what_the_identity_has_elsewhere():
    others = [Connection(id=f"c{n}", key=f"test::{p}::default::{n:032x}|u1", platform=p, identity="u1", state=state)
              for n, (p, state) in enumerate([("slack", "failed"), ("notion", "operational"), ("slack", "degraded"),
                                              ("asana", "operational"), ("jira", "operational"), ("zoom", "failed")])]
    message, hint = no_results_message(Lookup(identity="u1", platform="gmail"), environment="test", others=others,
                                       names={"gmail": "Gmail", "slack": "Slack", "notion": "Notion"})
    assert message == "No connections for u1 (type any) on Gmail."
    assert "It has 6 connections on other platforms (3 need attention): asana, jira, Notion, Slack and 1 more." in hint


def test_no_results_for_an_identity_in_other_letter_case_says_pica_matches_exactly():
    found = [Connection(id=f"s{n}", key=f"test::{p}::default::{n:032x}|sven@x.io", platform=p, identity="sven@x.io",
                        identity_type=kind) for n, (p, kind) in enumerate([("gmail", "team"), ("slack", "team"),
                                                                          ("slack", "user")])]
    _, hint = no_results_message(Lookup(identity="Sven@x.io"), environment="test", same_letters=("sven@x.io", found))
    assert hint.startswith("Pica matches identities exactly, letter case included: sven@x.io has 3 connections.")
    # Wrong in case and in type: the hint names its types, and its lookup keeps only what finds something.
    wrong_type = Lookup(identity="Sven@x.io", identity_type="project", platform="slack")
    _, hint = no_results_message(wrong_type, environment="test", same_letters=("sven@x.io", found))
    assert hint.startswith("Pica matches identities exactly, letter case included: sven@x.io has 3 connections (2 as "
                           "type team, 1 as type user).")
    assert in_its_letters(wrong_type, "sven@x.io", found) == Lookup(identity="sven@x.io", platform="slack")
    assert in_its_letters(replace(wrong_type, identity_type="user", platform="zoom"), "sven@x.io", found) == Lookup(
        identity="sven@x.io", identity_type="user")
    # The type and the platform kept only as a pair that finds something: user on gmail finds nothing here.
    assert in_its_letters(replace(wrong_type, identity_type="user", platform="gmail"), "sven@x.io", found) == Lookup(
        identity="sven@x.io", identity_type="user")


def test_triage_rows_list_each_connection_once():
    now = datetime.now(UTC)
    mine = [Connection(id=str(n), key=f"k{n}", platform="gmail", state=s, identity="u1", identity_type="user",
                       created_at=now) for n, s in enumerate(["failed", "operational"])]
    other = Connection(id="9", key="k9", platform="slack", state="degraded", identity="u1", identity_type="team",
                       created_at=now)
    frame = triage_rows([TriageResult("u1", "user", mine), TriageResult("u1", None, [*mine, other]),
                         TriageResult("u1", "user", mine), TriageResult("nobody", None),
                         TriageResult("bad", None, error="401 — check the key")], {"gmail": "Gmail"})
    assert [k for k in frame["key"] if k] == ["k0", "k1", "k9"]  # the untyped lookup adds only what is new
    assert list(frame["state"]) == ["failed", "operational", "degraded", "listed above", "no connections", "error"]
    assert frame["platform"].iloc[0] == "Gmail" and frame["platform"].iloc[2] == "slack"
    exported = list(csv.DictReader(io.StringIO(triage_csv(frame))))  # platform columns as in the vault CSV
    assert [(r["platform"], r["platform name"]) for r in exported[:3]] == [("gmail", "Gmail"), ("gmail", "Gmail"),
                                                                           ("slack", "slack")]
    assert list(exported[0])[:2] == ["platform", "identity"] and exported[3]["platform"] == ""


def test_those_needing_attention_are_who_could_not_be_looked_up_then_failed_then_degraded():
    """The toggle kept failed and degraded only, in the order asked: an identity Pica did not answer for was left
    out of the view and its CSV, and a degraded row came before failed ones."""
    now = datetime.now(UTC)
    rows = [Connection(id=str(n), key=f"k{n}", platform="gmail", state=s, identity=f"u{n}", created_at=now)
            for n, s in enumerate(["degraded", "operational", "failed", "unknown", "failed"])]
    frame = triage_rows([TriageResult(c.identity, None, [c]) for c in rows]
                        + [TriageResult("bad", None, error="503 — try again"), TriageResult("nobody", None)])
    shown = needing_attention(frame)
    assert list(zip(shown["identity"], shown["state"])) == [("bad", "error"), ("u2", "failed"), ("u4", "failed"),
                                                            ("u0", "degraded")]
    assert triage_csv(shown).count("\n") == 5  # the header and the four


def test_the_triage_summary_lists_those_not_looked_up_first_with_no_counts():
    """They read "0 connections, 0 need attention", last: as if healthy, where nothing is known of them."""
    now = datetime.now(UTC)
    broken = Connection(id="1", key="k1", platform="gmail", state="failed", identity="u1", created_at=now)
    summary = triage_summary(by_identity([TriageResult("u1", None, [broken]), TriageResult("nobody", None),
                                          TriageResult("lost", None, error="500 Internal error")]), {"gmail": "Gmail"})
    assert list(summary["identity"]) == ["lost", "u1", "nobody"]
    lost = summary.iloc[0]
    assert (lost["connections"], lost["need attention"]) == ("—", "—")
    assert (lost["broken on"], lost["note"]) == ("not looked up: see note", "500 Internal error")
    assert list(summary["connections"][1:]) == ["1", "0"] and summary.iloc[1]["broken on"] == "Gmail"
    import pyarrow

    pyarrow.Table.from_pandas(summary)  # as Streamlit draws it: a dash among ints failed, logged on every run


def test_sort_for_attention():
    now = datetime.now(UTC)
    rows = [Connection(id=str(n), key=f"k{n}", platform="p", state=s, created_at=now - timedelta(days=n))
            for n, s in enumerate(["operational", "failed", "unknown", "failed", "degraded"])]
    assert [c.id for c in sort_for_attention(rows)] == ["1", "3", "4", "2", "0"]


def test_health_summary_and_timeline():
    counts = state_counts(["failed", "operational", "bogus"])
    assert counts == {"operational": 1, "degraded": 0, "failed": 1, "unknown": 1}
    assert attention_summary(counts) == "3 connections (1 needs attention)"
    assert attention_summary({"failed": 2}) == "2 connections (2 need attention)"
    assert attention_summary({"operational": 48_000, "failed": 1_500, "degraded": 500}) == (
        "50,000 connections (2,000 need attention)")
    assert attention_summary({"operational": 1}) == "1 connection (0 need attention)"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [SimpleNamespace(to_state="operational", at=t0), SimpleNamespace(to_state="failed", at=t0 + timedelta(hours=1))]
    periods = timeline(rows)
    assert [(p.state, p.end) for p in periods] == [("operational", t0 + timedelta(hours=1)), ("failed", None)]
    assert describe_transition("failed", "operational") == "recovered (failed → operational)"
    first_seen_failed = timeline([SimpleNamespace(from_state=None, to_state="failed", at=t0),
                                  SimpleNamespace(from_state="failed", to_state="operational", at=t0 + timedelta(hours=2))])
    assert [p.label for p in first_seen_failed] == [
        "failed from 2026-01-01 00:00 or earlier to 2026-01-01 02:00 UTC",  # broken before the dashboard looked
        "operational since 2026-01-01 02:00 UTC"]
    made_here = timeline([SimpleNamespace(from_state=None, to_state="operational", at=t0, source="connect")])
    assert made_here[0].label == "operational since 2026-01-01 00:00 UTC"  # the dashboard made it: no "or earlier"


def test_grants_bind_identity_and_expire():
    signer = GrantSigner(Secret("k"), ttl_seconds=60)
    grant = signer.issue("ünï:code", "team")
    assert signer.verify(grant).identity == "ünï:code" and signer.verify(grant).identity_type == "team"
    with pytest.raises(GrantError, match="expired"):
        signer.verify(grant, now=time.time() + 61)
    with pytest.raises(GrantError, match="signature"):
        GrantSigner(Secret("other")).verify(grant)
    with pytest.raises(GrantError):
        signer.verify("not.a.grant.at.all")
    with pytest.raises(InvalidInputError):
        signer.issue("x" * 129, "user")


def test_token_headers_keep_non_latin_identities_out_of_headers():
    assert token_headers("g", "ana") == {"x-authkit-grant": "g", "x-user-id": "ana"}
    assert token_headers("g", "東京") == {"x-authkit-grant": "g"}


def test_rate_limiter_windows():
    limiter = RateLimiter(2)
    assert [limiter.take("a"), limiter.take("a")] == [None, None]
    assert limiter.take("a") > 0 and limiter.take("b") is None
    assert RateLimiter(0).take("a") is None


def test_configuration_rows_mask_secrets():
    settings = load_settings({"PICA_SECRET_KEY": "sk_live_abcdefghijklmnop",
                              "DATABASE_URL": "postgresql://u:hunter2@db/x"}, secrets={})
    rows = {r["setting"]: r for r in configuration_rows(settings, {"PICA_SECRET_KEY": "x", "DATABASE_URL": "y"}, {})}
    assert rows["PICA_SECRET_KEY"]["value"] == "sk_live_…op (set)" and rows["PICA_SECRET_KEY"]["source"] == "environment"
    assert "hunter2" not in rows["DATABASE_URL"]["value"] and "***" in rows["DATABASE_URL"]["value"]
    assert rows["PICA_TIMEOUT_SECONDS"]["source"] == "default"


def test_the_vault_csv_is_written_like_the_fleet_csv():
    connections = [Connection(id="a", key="test::gmail::default::" + "a" * 32 + "|u", platform="gmail", identity="u",
                              state="failed", tags=["vip", "eu"]),
                   Connection(id="b", key="test::slack::default::" + "b" * 32 + "|u", platform="slack", identity="u")]
    table = connection_rows(connections, {}, {"gmail": "Gmail"}, {"gmail": "https://logo"})
    rows = list(csv.DictReader(io.StringIO(connections_csv(table, connections))))
    assert [(r["platform"], r["platform name"], r["state"], r["tags"]) for r in rows] == [
        ("gmail", "Gmail", "failed", "vip,eu"), ("slack", "slack", "unknown", "")]  # Connection's default
    assert "logo" not in rows[0]
    assert [c for c in rows[0] if c != "platform name"] == list(Store.EXPORT_COLUMNS[:-1])  # as the fleet's, bar
    # its "not seen in last sync"
    # "state since" as the Fleet CSV writes it: a time, not the table's "… or earlier" text.
    store = Store.from_url("sqlite://")
    store.create_schema()
    store.upsert_connections(connections, source="lookup")
    stored = {u.connection_key: u for u in store.stored_connections([c.key for c in connections])}
    table = connection_rows(connections, stored, {}, {})
    assert table["state since"].iloc[0].endswith(" or earlier")
    vault = next(csv.DictReader(io.StringIO(connections_csv(table, connections, stored))))
    fleet = dict(zip(Store.EXPORT_COLUMNS, store.fleet_export()[0]))
    assert vault["state since"] == str(fleet["state since"])
    assert vault["since or earlier"] == str(fleet["since or earlier"]) == "True"


def test_state_since_says_or_earlier_only_when_the_state_may_be_older_than_its_first_sighting():
    from pica_core.store import UserConnection

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    conns = [Connection(id=str(n), key=f"k{n}", platform="gmail", identity="u", state="failed") for n in range(3)]
    stored = {c.key: UserConnection(connection_key=c.key, platform="gmail", environment="test", state="failed",
                                    created_at=t0, first_seen_at=t0, first_seen_by=by, last_seen_at=t0,
                                    state_since=t0 + timedelta(hours=hours))
              for c, by, hours in zip(conns, ["sync", "connect", "sync"], [0, 0, 2])}
    since = list(connection_rows(conns, stored, {}, {})["state since"])
    assert since == ["2026-01-01 00:00 or earlier", "2026-01-01 00:00", "2026-01-01 02:00"]  # made by Connect: exact


def test_the_vault_csv_is_named_after_the_lookup():
    from pica_core.connections_view import Lookup

    assert Lookup(identity="ava@acme.io", identity_type="user").file_name == "connections-ava@acme.io-user.csv"
    assert Lookup(platform="gmail").file_name == "connections-gmail.csv"
    assert Lookup(key="test::gmail::default::" + "a" * 32 + "|u").file_name == "connections-gmail-key.csv"
    assert Lookup(identity="a/b\\c: d").file_name == "connections-a_b_c_d.csv"  # no path, no separator
    assert Lookup(identity="../..").file_name == "connections.csv"
    assert Lookup(identity="Ünïcode").file_name == "connections-Ünïcode.csv"


def test_a_pasted_spreadsheet_row_splits_only_into_an_identity_and_a_known_type():
    from pica_core.connections_view import pasted_identity

    assert pasted_identity(" ava@acme.io\tUser \n") == ("ava@acme.io", "user")
    assert pasted_identity("ava@acme.io") == ("ava@acme.io", "")
    for text in ("ava\tcustomer", "ava\tteam\tx", "\tteam"):  # left as typed: validation names the tab
        assert pasted_identity(text) == (text, "")
    # As Bulk triage asks for them: identity,type (a comma before anything else is the identity's own).
    assert pasted_identity("usr_e6,User") == ("usr_e6", "user")
    assert pasted_identity("acme, inc,team") == ("acme, inc", "team")
    for text in ("acme, inc", ",team", "ava,customer", "Acme, Team"):
        assert pasted_identity(text) == (text, "")


def test_identities_in_written_languages_and_emoji_keep_their_joiners_and_marks():
    from pica_core import validation

    for identity in ("team-👩\u200d💻", "می\u200cخواهم", "flag-🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
                     "שלום\u200e-2", "مرحبا", "שלום"):
        assert validation.identity(identity) == identity
    assert validation.tags(["👩\u200d💻 devs"]) == ["👩\u200d💻 devs"]
    with pytest.raises(InvalidInputError) as every:  # each problem at once, not one a save
        validation.tags(["a,b", "x" * 70])
    assert "holds a comma" in every.value.message and "70 characters long" in every.value.message
    for pasted in ("usr\u200b1", "\ufeffusr", "ava\u00adsmith", "x\u2060y", "\u202eusr", "ava@acme.io\u200e",
                   "\u200fusr_1"):  # a direction mark at either end: a chat app's or a sheet's, not the identity's
        with pytest.raises(InvalidInputError, match="invisible character"):
            validation.identity(pasted)
    for broken in ("usr_1\u2028usr_2", "usr_1\u2029x", "usr\x85_1", "usr\x9b1"):  # Unicode's and C1's line breaks
        with pytest.raises(InvalidInputError, match="control characters"):
            validation.identity(broken)
    assert parse_bulk("usr_1\u2028usr_2\n").identities == []


@pytest.mark.parametrize("shown, edited, current, saved", [
    (["vip", "eu"], ["eu", "vip"], ["vip", "eu"], ["eu", "vip"]),  # nobody else: the reader's list, in their order
    (["vip", "eu"], ["vip", "eu", "beta"], ["vip", "eu", "escalated"], ["vip", "eu", "beta", "escalated"]),
    (["beta"], ["beta", "escalated"], ["beta", "from-api"], ["beta", "escalated", "from-api"]),
    (["vip", "eu"], ["eu"], ["vip", "eu", "x"], ["eu", "x"]),  # the reader removed vip while another added x
    (["vip", "eu"], ["vip", "eu", "beta"], ["vip"], ["vip", "beta"]),  # another removed eu: it stays removed
    (["vip"], ["vip", "eu"], ["vip", "eu"], ["vip", "eu"]),  # both added the same tag: once
])
def test_merge_tags_applies_the_reader_s_edit_to_pica_s_current_tags(shown, edited, current, saved):
    assert merge_tags(shown, edited, current) == saved


def test_an_identity_that_found_nothing_offers_the_lookup_it_was_likely_written_for():
    """`ana@acme.io, user` looked up that whole text under the type the form held; quotes from a spreadsheet too."""
    assert likely_meant(Lookup(identity="ana@acme.io, user", identity_type="team")) == Lookup(
        identity="ana@acme.io", identity_type="user")
    assert likely_meant(Lookup(identity='"usr_1"', platform="gmail")) == Lookup(identity="usr_1", platform="gmail")
    assert likely_meant(Lookup(identity='"ana@acme.io", user')).identity == "ana@acme.io"  # both at once
    assert likely_meant(Lookup(identity="Acme, Inc")) is None and likely_meant(Lookup(identity="usr_1")) is None
    for quoted in ("“usr_1”", "‘usr_1’", "«usr_1»"):  # as Slack, Word or a French keyboard write them
        assert likely_meant(Lookup(identity=quoted)) == Lookup(identity="usr_1"), quoted
    assert likely_meant(Lookup(identity="“usr_1“")) is None  # not a pair


def test_a_link_s_platform_may_be_its_catalog_name_and_is_described_by_it():
    """?platform=Google Calendar was refused as "not a platform id"; the heading said "platform google-calendar"."""
    names = {"google-calendar": "Google Calendar", "slack": "Slack"}
    lookup = Lookup.from_query({"platform": "Google Calendar"}).platform_by_name(names)
    assert lookup.platform == "google-calendar" and lookup.describe(names) == "platform Google Calendar"
    assert Lookup(platform="nope").platform_by_name(names).platform == "nope"  # refused later, as it was
    by_key = Lookup(key="test::google-calendar::default::" + "a" * 32, platform="google-calendar")
    assert "among platform Google Calendar." in no_results_message(by_key, environment="test", names=names)[0]


def test_the_unknown_filter_shows_what_the_unknown_count_counts():
    """A state Pica added after the contract (paused) was counted as unknown, and the unknown filter hid it."""
    paused, failed = (Connection(id=s, key=f"test::gmail::default::{'0' * 32}|{s}", platform="gmail", state=s)
                      for s in ("paused", "failed"))
    assert state_counts([paused.state, failed.state])["unknown"] == 1
    assert apply_filters([paused, failed], Lookup(identity="u", states=("unknown",))) == [paused]
    assert apply_filters([paused, failed], Lookup(identity="u", states=("failed",))) == [failed]


def test_triage_failures_say_each_cause_once_what_stopped_the_asking_first():
    """Only the first error was quoted: a 500 met first hid the rate limit that decides when to ask again."""
    later = datetime.now(UTC) + timedelta(minutes=2)
    failed = [TriageResult("a", None, error="500 Internal error — retry in a moment"),
              TriageResult("b", None, error="429 Rate limit exceeded — retry after 10:02:00 UTC", retry_at=later,
                           stopped_asking=True),  # as triage marks the error that stopped it
              TriageResult("c", None, error="500 Internal error — retry in a moment"),
              TriageResult("d", None, error="not looked up — Pica's rate limit was reached", retry_at=later)]
    assert triage_failures(failed) == (
        "4 identities could not be looked up. Pica said: 429 Rate limit exceeded — retry after 10:02:00 UTC "
        "(1 identity); 500 Internal error — retry in a moment (2 identities); 1 was not asked after that.")
    assert triage_failures(failed[:1]) == ("1 identity could not be looked up. Pica said: 500 Internal error — retry "
                                           "in a moment (1 identity).")
