"""The catalog's pure logic: the URL spec, rows, search/filters/sorting, coverage, CSV, escaping."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from pica_core import catalog_view as cv
from pica_core.models import ActionHit, Connector

CONNECTORS = [
    Connector(name="Gmail", platform="gmail", category="Email", status="generally_available", oauth=True, tools=20,
              description="Google's web-based email service", image="https://assets/gmail.svg"),
    Connector(name="Slack", platform="slack", category="Communication", status="beta", oauth=True, tools=12,
              description="Team chat"),
    Connector(name="Resend", platform="resend", category="Email", status="generally_available", tools=3,
              description="Email API for developers"),
    Connector(name="attio", platform="attio", category=None, status="alpha", tools=0, description=None),
    Connector(name="Old CRM", platform="old-crm", category="CRM", status="not_available", tools=1,
              description="Retired; mail merge only"),
]
ENABLED = {"gmail", "attio"}
USAGE = {"gmail": 7, "slack": 2, "attio": 2, "ghost": 4}


@pytest.fixture
def frame() -> pd.DataFrame:
    return cv.connector_frame(CONNECTORS, ENABLED, USAGE, image_url=lambda url: url and url.replace("https://", "/x/"))


def platforms(frame: pd.DataFrame) -> list[str]:
    return list(frame["platform"])


# --- the spec in the URL -----------------------------------------------------------------------------------
def test_an_empty_url_is_the_default_view_and_it_writes_no_parameters():
    spec = cv.FilterSpec.from_params({})
    assert spec == cv.FilterSpec() and not spec.filtered
    assert spec.to_params() == {}


def test_spec_round_trips_through_query_parameters():
    spec = cv.FilterSpec(query="google mail", categories=("Data & Reference", "CRM"), statuses=("beta",),
                         authkit=True, oauth=False, sort="-connections", selected="gmail")
    params = spec.to_params()
    assert params == {"q": "google mail", "category": ["Data & Reference", "CRM"], "status": ["beta"],
                      "authkit": "yes", "oauth": "no", "sort": "-connections", "selected": "gmail"}
    assert cv.FilterSpec.from_params(params) == spec
    # and through a real query string (repeated keys for lists)
    from urllib.parse import parse_qs, urlencode

    assert cv.FilterSpec.from_params(parse_qs(urlencode(params, doseq=True))) == spec


def test_malformed_parameters_fall_back_to_no_filter():
    spec = cv.FilterSpec.from_params({"authkit": "maybe", "oauth": "", "sort": "price", "q": "  a   b ",
                                      "category": ["CRM", "", "CRM", " AI "]})
    assert spec.authkit is None and spec.oauth is None and spec.sort == cv.DEFAULT_SORT
    assert spec.query == "a b" and spec.categories == ("CRM", "AI")


@pytest.mark.parametrize("raw, expected", [("yes", True), ("true", True), ("1", True), ("No", False),
                                           ("false", False), ("0", False)])
def test_yes_no_spellings(raw, expected):
    assert cv.FilterSpec.from_params({"authkit": raw}).authkit is expected


def test_a_repeated_single_parameter_takes_the_last_value():
    assert cv.FilterSpec.from_params({"q": ["first", "second"]}).query == "second"


def test_unknown_categories_and_statuses_from_a_link_are_dropped_and_reported():
    spec = cv.FilterSpec(categories=("Email", "Nope"), statuses=("beta", "retired"))
    clean, dropped = spec.restricted_to(["Email", "CRM"], cv.CONNECTOR_STATUSES)
    assert clean.categories == ("Email",) and clean.statuses == ("beta",)
    assert dropped == ["category=Nope", "status=retired"]


def test_a_hand_typed_link_is_read_in_any_letter_case_and_by_the_status_s_label():
    """?category=crm, ?status=GA (the label the pill shows) and ?selected=Gmail were refused as unknown."""
    spec = cv.FilterSpec.from_params({"category": ["crm", "EMAIL"], "status": ["GA", "Beta", "beta"],
                                      "selected": "Gmail"})
    clean, dropped = spec.restricted_to(["Email", "CRM"], cv.CONNECTOR_STATUSES)
    assert clean.categories == ("CRM", "Email") and clean.statuses == ("generally_available", "beta")
    assert dropped == [] and clean.selected == "gmail"
    # Pica's catalog has both CRM and crm: each spelt exactly is itself
    both, _ = cv.FilterSpec(categories=("CRM", "crm")).restricted_to(["CRM", "crm", "Email"], ())
    assert both.categories == ("CRM", "crm")


# --- rows --------------------------------------------------------------------------------------------------
def test_rows_carry_every_column_with_usage_authkit_and_the_browser_logo_url(frame):
    assert tuple(frame.columns) == cv.COLUMNS
    gmail = frame.set_index("platform").loc["gmail"]
    assert gmail["logo"] == "/x/assets/gmail.svg" and gmail["name"] == "Gmail" and gmail["category"] == "Email"
    assert bool(gmail["authkit"]) and bool(gmail["oauth"]) and gmail["actions"] == 20 and gmail["connections"] == 7
    attio = frame.set_index("platform").loc["attio"]
    assert attio["category"] == cv.UNCATEGORIZED and attio["description"] == "" and attio["connections"] == 2
    assert frame.set_index("platform").loc["resend", "connections"] == 0


def test_search_matches_every_word_in_name_platform_or_description(frame):
    assert platforms(cv.apply(frame, cv.FilterSpec(query="mail"))) == ["gmail", "old-crm", "resend"]
    assert platforms(cv.apply(frame, cv.FilterSpec(query="EMAIL developers"))) == ["resend"]
    assert platforms(cv.apply(frame, cv.FilterSpec(query="old-crm"))) == ["old-crm"]
    assert platforms(cv.apply(frame, cv.FilterSpec(query="google's"))) == ["gmail"]
    assert platforms(cv.apply(frame, cv.FilterSpec(query="(.*"))) == []  # literal text, not a pattern


@pytest.mark.parametrize("spec, expected", [
    (cv.FilterSpec(categories=("Email",)), ["gmail", "resend"]),
    (cv.FilterSpec(categories=("Email", cv.UNCATEGORIZED)), ["attio", "gmail", "resend"]),
    (cv.FilterSpec(statuses=("beta", "alpha")), ["attio", "slack"]),
    (cv.FilterSpec(authkit=True), ["attio", "gmail"]),
    (cv.FilterSpec(authkit=False), ["old-crm", "resend", "slack"]),
    (cv.FilterSpec(oauth=True), ["gmail", "slack"]),
    (cv.FilterSpec(oauth=False, authkit=False), ["old-crm", "resend"]),
    (cv.FilterSpec(query="mail", categories=("Email",), oauth=False), ["resend"]),
])
def test_filters_combine(frame, spec, expected):
    assert platforms(cv.apply(frame, spec)) == expected


@pytest.mark.parametrize("sort, expected", [
    ("name", ["attio", "gmail", "old-crm", "resend", "slack"]),  # case-insensitive
    ("platform", ["attio", "gmail", "old-crm", "resend", "slack"]),
    ("category", ["slack", "old-crm", "gmail", "resend", "attio"]),  # "Uncategorized" last
    ("status", ["gmail", "resend", "slack", "attio", "old-crm"]),
    ("-actions", ["gmail", "slack", "resend", "old-crm", "attio"]),
    ("-connections", ["gmail", "attio", "slack", "old-crm", "resend"]),  # ties by name
    ("connections", ["old-crm", "resend", "attio", "slack", "gmail"]),
])
def test_sorting(frame, sort, expected):
    assert platforms(cv.apply(frame, cv.FilterSpec(sort=sort))) == expected


def test_applied_rows_are_positions_from_zero(frame):
    shown = cv.apply(frame, cv.FilterSpec(sort="-actions", authkit=False))
    assert list(shown.index) == list(range(len(shown)))


def test_filter_options(frame):
    assert cv.categories(frame) == ["Communication", "CRM", "Email", cv.UNCATEGORIZED]
    odd = cv.connector_frame([Connector(name="X", platform="x", status="deprecated")], set(), {})
    assert cv.statuses(odd) == [*cv.CONNECTOR_STATUSES, "deprecated"]


def test_an_empty_catalog_is_an_empty_table():
    empty = cv.connector_frame([], set(), {})
    assert tuple(empty.columns) == cv.COLUMNS and cv.apply(empty, cv.FilterSpec(query="x", sort="-actions")).empty
    assert cv.coverage(empty).connectors == 0 and cv.coverage(empty).authkit_share == 0.0


# --- coverage ----------------------------------------------------------------------------------------------
def test_coverage_counts_categories_authkit_and_usage(frame):
    cov = cv.coverage(frame, top=2)
    assert (cov.connectors, cov.authkit_enabled, cov.used, cov.connections) == (5, 2, 3, 11)
    assert cov.authkit_share == pytest.approx(0.4) and cov.unused_count == 2
    by_category = cov.by_category.set_index("category")
    assert list(cov.by_category["category"]) == ["Email", "Communication", "CRM", cv.UNCATEGORIZED]
    assert by_category.loc["Email"].tolist() == [1, 1, 2]  # AuthKit-enabled, not enabled, total
    assert by_category.loc[cv.UNCATEGORIZED].tolist() == [1, 0, 1]
    assert cov.most_used.to_dict("records") == [
        {"name": "Gmail", "platform": "gmail", "connections": 7, "share": pytest.approx(7 / 11)},
        {"name": "attio", "platform": "attio", "connections": 2, "share": pytest.approx(2 / 11)}]
    assert list(cov.unused["platform"]) == ["old-crm", "resend"]


def test_coverage_follows_the_filtered_rows(frame):
    cov = cv.coverage(cv.apply(frame, cv.FilterSpec(authkit=True)))
    assert (cov.connectors, cov.authkit_enabled, cov.used, cov.unused_count) == (2, 2, 2, 0)


def test_connections_on_platforms_missing_from_the_catalog_are_reported(frame):
    assert cv.unknown_platforms(USAGE, frame) == {"ghost": 4}


# --- CSV ---------------------------------------------------------------------------------------------------
def test_csv_is_the_table_as_shown(frame):
    shown = cv.apply(frame, cv.FilterSpec(query="mail", sort="-connections"))
    parsed = pd.read_csv(io.BytesIO(cv.to_csv(shown)), keep_default_na=False)
    assert list(parsed.columns) == [c for c in cv.COLUMNS if c != "logo"]  # the dashboard's own image addresses
    assert parsed["platform"].tolist() == shown["platform"].tolist()
    assert parsed["connections"].tolist() == shown["connections"].tolist()
    assert parsed["authkit"].tolist() == shown["authkit"].tolist()
    assert parsed["description"].tolist() == shown["description"].tolist()


def test_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas():
    hostile = cv.connector_frame([Connector(name="=HYPERLINK(\"http://x\")", platform="x", description="+1 -2 @3")],
                                 set(), {})
    text = cv.to_csv(hostile).decode()
    assert "'=HYPERLINK" in text and ",'+1 -2 @3" in text


# --- actions -----------------------------------------------------------------------------------------------
def test_actions_filter_by_title_method_or_path():
    frame = cv.action_frame([
        ActionHit(system_id="a1", title="Send a message", method="post", path="/gmail/v1/users/{{userId}}/messages/send"),
        ActionHit(system_id="a2", title="List labels", method="GET", path="/gmail/v1/users/{{userId}}/labels"),
    ])
    assert frame["method"].tolist() == ["POST", "GET"]
    assert cv.filter_actions(frame, "labels")["id"].tolist() == ["a2"]
    assert cv.filter_actions(frame, "post messages")["id"].tolist() == ["a1"]
    assert cv.filter_actions(frame, "")["id"].tolist() == ["a1", "a2"]
    assert cv.filter_actions(cv.action_frame([]), "x").empty


# --- API text stays text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "**bold** _it_ `code`", "[link](javascript:x)",
    ":red[red] :material/warning:", "$x^2$", "# heading", "a\nb  c",
])
def test_plain_escapes_markdown_html_and_directives(text):
    escaped = cv.plain(text)
    assert "\n" not in escaped
    # every special character is preceded by a backslash, so Markdown renders it as itself
    for i, ch in enumerate(escaped):
        if ch in "<>*_`[]():$#" and (i == 0 or escaped[i - 1] != "\\"):
            pytest.fail(f"unescaped {ch!r} at {i} in {escaped!r}")
    assert escaped.replace("\\", "").replace("\u2060", "") == " ".join(text.split())


def test_plain_drops_direction_overrides_that_would_turn_the_sentence_around():
    assert cv.plain("\u202eCRM\u2066x\u2069 عربي") == "CRMx عربي"


def test_plain_breaks_icon_codes_that_streamlit_draws_despite_escaped_colons():
    assert cv.plain(":material/warning: x") == "\\:\u2060material/warning\\: x"
    assert cv.plain("api::gmail::v1") == "api\\:\\:gmail\\:\\:v1"  # keys stay copyable: no joiner

