"""CSV and HAR export of the Remote Technician Log."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from ewsgate.portal.sessions.log_export import CSV_COLUMNS, to_csv, to_har


@dataclass
class Row:
    seq: int
    at: datetime
    user_email: str | None
    method: str
    url: str
    status: int | None
    bytes_in: int
    bytes_out: int
    duration_ms: int
    outcome: str
    detail: str | None
    client: str | None = None


AT = datetime(2026, 11, 28, 13, 0, 0, 250000, tzinfo=UTC)
ROWS = [
    Row(1, AT, "t@example.com", "GET", "/index.html", 200, 0, 5120, 12, "ok", None),
    Row(2, AT, "t@example.com", "POST", "/=cmd|' /C calc'!A0", 403, 10, 99, 1, "refused",
        "cross-site request refused"),
    Row(3, AT, "t@example.com", "GET", "/slow", None, 0, 0, 30000, "error", "device timeout"),
]


def test_csv_has_header_and_rows_in_order() -> None:
    parsed = list(csv.reader(io.StringIO(to_csv(ROWS))))
    assert tuple(parsed[0]) == CSV_COLUMNS
    assert [r[0] for r in parsed[1:]] == ["1", "2", "3"]
    assert parsed[1][1] == "2026-11-28T13:00:00.250Z"
    assert parsed[1][5] == "200" and parsed[3][5] == ""
    assert parsed[2][10] == "cross-site request refused"


def test_csv_defuses_spreadsheet_formulas() -> None:
    rows = [Row(1, AT, "=evil@example.com", "GET", "=HYPERLINK(\"x\")", 200, 0, 0, 0, "ok",
                "+1")]
    parsed = list(csv.reader(io.StringIO(to_csv(rows))))
    assert parsed[1][2] == "'=evil@example.com"
    assert parsed[1][4].startswith("'=")
    assert parsed[1][10] == "'+1"


def test_har_is_valid_1_2_with_absolute_urls() -> None:
    har = to_har(ROWS, base_url="https://s-x.rt.localhost:8443/", creator_version="0.1.0",
                 page_title="job 4")
    text = json.dumps(har)
    doc = json.loads(text)["log"]
    assert doc["version"] == "1.2" and doc["creator"]["name"] == "ewsgate"
    first, _, third = doc["entries"]
    assert first["request"]["url"] == "https://s-x.rt.localhost:8443/index.html"
    assert first["response"]["status"] == 200 and first["response"]["statusText"] == "OK"
    assert first["response"]["bodySize"] == 5120 and first["time"] == 12
    assert first["startedDateTime"] == "2026-11-28T13:00:00.250Z"
    assert third["response"]["status"] == 0 and "device timeout" in third["comment"]
    for entry in doc["entries"]:
        assert set(entry) >= {"startedDateTime", "time", "request", "response", "cache",
                              "timings"}


def test_both_exports_carry_the_client_address() -> None:
    rows = [Row(1, AT, "t@example.com", "GET", "/a_b", 400, 0, 0, 0, "refused",
                "header_name_underscore", "2001:db8::7"),
            Row(2, AT, None, "GET", "/", 200, 0, 1, 1, "ok", None, None)]
    parsed = list(csv.reader(io.StringIO(to_csv(rows))))
    assert parsed[0][-1] == "client"
    assert parsed[1][CSV_COLUMNS.index("client")] == "2001:db8::7" and parsed[2][-1] == ""
    entries = to_har(rows, base_url="https://s-x.rt.localhost/", creator_version="0",
                     page_title="job")["log"]["entries"]
    assert entries[0]["_clientAddress"] == "2001:db8::7"
    assert entries[0]["comment"].endswith("(client 2001:db8::7)")
    assert entries[1]["_clientAddress"] == "" and "client" not in entries[1]["comment"]
