"""The close report (meterline.jobs.close.CloseReport): its JSON through the one
serializer keeps the field names and value spellings the command has always printed,
and the text the command prints is read from the same model."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from meterline.cli.close import render_close
from meterline.jobs.close import CloseReport, NotBilled
from meterline.jobs.watermarks import EPOCH, Watermark
from meterline.output import json_text

AS_OF = datetime(2026, 12, 4, tzinfo=UTC)
OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def report(**over: object) -> CloseReport:
    fields: dict[str, object] = {
        "as_of": AS_OF,
        "periods_closed": 1200,
        "lines_created": 4801,
        "lines_unchanged": 3,
        "invoices_finalized": (11, 12, 13),
        "periods_checked_for_late_usage": 40,
        "adjustment_lines": 2,
        "rating_run_id": 9,
        "watermark": Watermark(datetime(2026, 12, 3, 0, 30, tzinfo=UTC), {date(2026, 11, 10): EPOCH}),
        "not_billed": (
            NotBilled(subscription="sub_a", customer="a", what="invoice", reason="plan 'x' is not in the catalog",
                      periods=(OCT, NOV)),
            NotBilled(subscription="sub_b", customer="b", what="adjustment",
                      reason="its late usage cannot be adjusted: too large", periods=(OCT,)),
        ),
    }
    fields.update(over)
    return CloseReport(**fields)  # type: ignore[arg-type]


def test_the_json_keeps_its_field_names_and_spellings() -> None:
    assert json.loads(json_text(report())) == {
        "as_of": "2026-12-04T00:00:00+00:00",
        "ok": False,
        "periods_closed": 1200,
        "lines_created": 4801,
        "lines_unchanged": 3,
        "invoices_finalized": 3,
        "periods_checked_for_late_usage": 40,
        "adjustment_lines": 2,
        "rating_run_id": 9,
        "watermark": {"events_ingested_up_to": "2026-12-03T00:30:00Z", "stale_days": {"2026-11-10": "1970-01-01T00:00:00Z"}},
        "not_billed": [
            {"subscription": "sub_a", "customer": "a", "what": "invoice", "reason": "plan 'x' is not in the catalog",
             "periods": [["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"], ["2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"]]},
            {"subscription": "sub_b", "customer": "b", "what": "adjustment",
             "reason": "its late usage cannot be adjusted: too large", "periods": [["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"]]},
        ],
    }
    # The billing_close DAG returns the same document.
    assert report().to_json() == json.loads(json_text(report()))
    quiet = json.loads(json_text(report(not_billed=(), watermark=None, rating_run_id=None, invoices_finalized=())))
    assert (quiet["ok"], quiet["watermark"], quiet["rating_run_id"], quiet["invoices_finalized"]) == (True, None, None, 0)


def test_the_text_is_read_from_the_report() -> None:
    assert render_close(report()) == [
        "as of 2026-12-04T00:00:00+00:00: closed 1,200 periods, 4,801 new lines (3 unchanged),"
        " finalized 3 invoices; 2 adjustment lines for late usage",
        "NOT billed: 3 period(s) of 2 subscription(s); nothing was posted or finalized for them:",
        "  sub_a (a): 2 period(s) 2026-10-01..2026-12-01 not invoiced: plan 'x' is not in the catalog",
        "  sub_b (b): 1 period(s) 2026-10-01..2026-11-01 late usage not adjusted: its late usage cannot be"
        " adjusted: too large",
    ]
    assert render_close(report(not_billed=())) == render_close(report())[:1]
