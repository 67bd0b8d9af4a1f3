"""The close report (meterline.jobs.close.CloseReport): its JSON through the one
serializer keeps the field names and value spellings the command has always printed,
and the text the command prints is read from the same model."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from meterline.cli.close import render_close
from meterline.jobs.close import CloseReport, NotBilled, NotRolledUp, not_rolled_up_message
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
        "not_rolled_up": (
            NotRolledUp(subscription="sub_c", customer="c", what="invoice", period=NOV,
                        days=(date(2026, 11, 10),), command="meterline rollup --day 2026-11-10"),
            NotRolledUp(subscription="sub_d", customer="d", what="adjustment", period=OCT,
                        days=(date(2026, 10, 3), date(2026, 10, 9)),
                        command="meterline backfill --from 2026-10-03 --to 2026-10-09"),
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
        "not_rolled_up": [
            {"subscription": "sub_c", "customer": "c", "what": "invoice",
             "period": ["2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"], "days": ["2026-11-10"],
             "command": "meterline rollup --day 2026-11-10"},
            {"subscription": "sub_d", "customer": "d", "what": "adjustment",
             "period": ["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"], "days": ["2026-10-03", "2026-10-09"],
             "command": "meterline backfill --from 2026-10-03 --to 2026-10-09"},
        ],
    }
    # The billing_close DAG returns the same document.
    assert report().to_json() == json.loads(json_text(report()))
    quiet = json.loads(json_text(report(not_billed=(), not_rolled_up=(), watermark=None, rating_run_id=None,
                                        invoices_finalized=())))
    assert (quiet["ok"], quiet["watermark"], quiet["rating_run_id"], quiet["invoices_finalized"]) == (True, None, None, 0)


def test_the_text_is_read_from_the_report() -> None:
    assert render_close(report()) == [
        "as of 2026-12-04T00:00:00+00:00: closed 1,200 periods, 4,801 new lines (3 unchanged),"
        " finalized 3 invoices; 2 adjustment lines for late usage",
        "NOT closed: 2 period(s) of 2 subscription(s) hold days whose events changed since they were rolled up;"
        " nothing was posted, finalized or adjusted for them. Roll the days up, then close again:",
        "  days 2026-11-10: run `meterline rollup --day 2026-11-10`",
        "    sub_c (c): period 2026-11-01..2026-12-01 not invoiced",
        "  days 2026-10-03, 2026-10-09: run `meterline backfill --from 2026-10-03 --to 2026-10-09`",
        "    sub_d (d): period 2026-10-01..2026-11-01 late usage not adjusted",
        "NOT billed: 3 period(s) of 2 subscription(s); nothing was posted or finalized for them:",
        "  sub_a (a): 2 period(s) 2026-10-01..2026-12-01 not invoiced: plan 'x' is not in the catalog",
        "  sub_b (b): 1 period(s) 2026-10-01..2026-11-01 late usage not adjusted: its late usage cannot be"
        " adjusted: too large",
    ]
    assert render_close(report(not_billed=(), not_rolled_up=())) == render_close(report())[:1]
    # With the tax sink, what the invoices finalized wait for (docs/tax.md).
    assert render_close(report(not_billed=(), not_rolled_up=()), taxed=True)[1:] == [
        "their tax is pending: `meterline outbox deliver --sink avalara` records it; they reach"
        " Stripe after it (`meterline outbox deliver`)"
    ]
    none = report(invoices_finalized=(), not_billed=(), not_rolled_up=())
    assert len(render_close(none, taxed=True)) == 1
    # Only one of them: ok is False either way, and the command exits 1.
    assert not report(not_billed=()).ok and not report(not_rolled_up=()).ok


def test_a_long_group_of_held_periods_is_cut_in_the_text_not_in_the_json() -> None:
    many = tuple(
        NotRolledUp(subscription=f"sub_{i:03}", customer=f"c{i}", what="invoice", period=NOV,
                    days=(date(2026, 11, 10),), command="meterline rollup --day 2026-11-10")
        for i in range(25)
    )
    text = render_close(report(not_billed=(), not_rolled_up=many))
    assert text[2] == "  days 2026-11-10: run `meterline rollup --day 2026-11-10`"
    assert len(text) == 2 + 1 + 20 + 1 and text[-1] == "    ... and 5 more (--json lists all)"
    assert len(json.loads(json_text(report(not_rolled_up=many)))["not_rolled_up"]) == 25


def test_the_dag_message_names_the_days_and_the_commands() -> None:
    """billing_close fails its run with this line when close held periods back."""
    assert not_rolled_up_message(report().to_json()) == (
        "2 period(s) of 2 subscription(s) were not closed: days 2026-10-03, 2026-10-09,"
        " 2026-11-10 hold events their rollup has not read; run"
        " `meterline backfill --from 2026-10-03 --to 2026-10-09`;"
        " `meterline rollup --day 2026-11-10`, then close again"
    )
    assert not_rolled_up_message(report(not_rolled_up=()).to_json()) is None


def test_close_period_waits_for_every_timezone_end_of_month() -> None:
    """`close --period 2026-11` closes as of the moment the last local midnight of the
    month (in any zone of the tz database) is `grace` hours past: the America/Los_Angeles
    November period (ends 2026-12-01T08:00Z) was left unclosed by the UTC month end."""
    from zoneinfo import ZoneInfo, available_timezones

    from meterline.jobs.close import period_due

    due = period_due("2026-11", 72)
    ends = {
        zone: datetime(2026, 12, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC)
        for zone in available_timezones()
    }
    latest = max(ends.values())
    assert latest == datetime(2026, 12, 1, 12, tzinfo=UTC)  # Etc/GMT+12
    assert due == latest + timedelta(hours=72)
    assert ends["America/Los_Angeles"] + timedelta(hours=72) <= due
