"""Every CSV the dashboard offers is safe to open in a spreadsheet, and bulk triage reads its own exports back."""

import csv
import io
from datetime import UTC, datetime

import pandas as pd
import pytest

from pica_core.connections_view import connection_rows, connections_csv, fleet_csv, parse_bulk
from pica_core.exports import audit_csv, csv_file, frame_csv, rows_csv, safe_cell, unguard
from pica_core.models import Connection
from pica_core.store import Store


@pytest.mark.parametrize("text", ["=1+1", "+4412345", "-2", "@SUM(A1)", "\tx", "\rx", "'=x", "'quoted'"])
def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe_and_comes_back(text):
    assert safe_cell(text) == "'" + text
    assert unguard(safe_cell(text)) == text


@pytest.mark.parametrize("value", ["user-1", "a=b", "", 42, -3, None, ["=x"]])
def test_other_cells_are_left_as_they_are(value):
    assert safe_cell(value) == value
    if isinstance(value, str):
        assert unguard(value) == value


def test_frame_and_rows_csv_guard_text_cells_only():
    frame = pd.DataFrame({"identity": ["=HYPERLINK(\"http://x\")", "ok"], "count": [-1, 2]})
    assert frame_csv(frame).splitlines() == ["identity,count", "\"'=HYPERLINK(\"\"http://x\"\")\",-1", "ok,2"]
    when = datetime(2026, 11, 29, tzinfo=UTC)
    assert rows_csv(["identity", "n", "at"], [("@me", -1, when)]).splitlines() == [
        "identity,n,at", f"'@me,-1,{when}"]


def _vault_connection(identity: str) -> Connection:
    return Connection(id="a", key=f"test::gmail::default::{'a' * 32}|{identity}", platform="gmail",
                      identity=identity, identity_type="user", state="failed", tags=["=cmd", "eu"])


def test_the_vault_and_fleet_exports_are_guarded_and_triage_reads_them_back():
    connection = _vault_connection("+4412345")
    table = connection_rows([connection], {}, {"gmail": "Gmail"}, {})
    vault = connections_csv(table, [connection])
    row = next(csv.DictReader(io.StringIO(vault)))
    assert row["identity"] == "'+4412345" and row["tags"] == "'=cmd,eu"
    assert parse_bulk("", vault.encode()).identities == [("+4412345", "user")]
    assert parse_bulk("", csv_file(vault)).identities == [("+4412345", "user")]  # the file downloaded

    tags = Store.EXPORT_COLUMNS.index("tags")
    fleet_row = ["-x"] * len(Store.EXPORT_COLUMNS)
    fleet_row[tags] = ["@a"]
    exported = next(csv.DictReader(io.StringIO(fleet_csv([fleet_row]))))
    assert set(exported.values()) == {"'-x", "'@a"}


def test_a_downloaded_csv_starts_with_the_byte_order_mark_excel_needs_to_read_utf_8():
    """Without it Excel opened the file in the system's code page: Zoë became ZoÃ«."""
    data = csv_file("identity\nZoë\n")
    assert data.startswith(b"\xef\xbb\xbf") and data.decode("utf-8-sig") == "identity\nZoë\n"
    assert pd.read_csv(io.BytesIO(data))["identity"].tolist() == ["Zoë"]  # readers of CSV skip it


def test_the_audit_csv_writes_letters_as_they_are_and_times_as_the_page_shows_them(tmp_path):
    """The detail said "Zo\\u00eb" and `when` had microseconds and an offset the page does not show."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    store.audit(actor="ops@acme.io", action="connect", target="=key", outcome="ok", identity="Zoë 東京")
    [row] = list(csv.DictReader(io.StringIO(audit_csv(store.audit_events()))))
    assert list(row) == ["when", "who", "action", "target", "outcome", "detail"]
    assert row["detail"] == '{"identity": "Zoë 東京"}' and row["target"] == "'=key"
    assert datetime.strptime(row["when"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC) <= datetime.now(UTC)
    store.engine.dispose()
