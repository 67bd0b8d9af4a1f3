"""The audit's pure functions on hand-made facts: seat levels, verdicts, the per-key
comparison behind reconcile and rerate, and the reconcile checks that need no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from billing.charges import ChargeLine
from meterline.audit.compare import ADJUSTED, AGREES, DRIFT, MISMATCH, compare_period, verdict
from meterline.audit.facts import (
    IngestFacts,
    InvoiceInfo,
    PeriodFacts,
    PostedLine,
    ReconcileFacts,
    Span,
    StoredCount,
    UsageTotals,
)
from meterline.audit.findings import WARNING, Acknowledgement, Finding
from meterline.audit.levels import HeldLevel, levels, time_weighted_quantities
from meterline.audit.reconcile.checks import reconcile
from meterline.audit.reconcile.report import failure_message
from meterline.audit.values import Billed
from meterline.output import jsonable

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
DAY_MS = 86_400_000
SEATS = (("seat_type", "advanced"),)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def span(event: str, value: int, start: datetime, end: datetime) -> Span:
    return Span(SEATS, event, start, Decimal(value), ms(start), ms(end))


def test_levels_merge_repeated_reports_and_weigh_by_the_cycle() -> None:
    # 2 seats from the 1st (reported again daily), 3 from the 21st of a 30-day month.
    spans = [
        span(f"e{d}", 2, NOV + timedelta(days=d), NOV + timedelta(days=d + 1)) for d in range(20)
    ]
    spans.append(span("e20", 3, NOV + timedelta(days=20), DEC))
    found = levels(spans)
    cycle = 30 * DAY_MS
    held = [HeldLevel.of(lv, cycle) for lv in found]
    assert [(h.value, h.hours, len(h.events)) for h in held] == [
        (Decimal(2), Decimal(480), 20),
        (Decimal(3), Decimal(240), 1),
    ]
    assert time_weighted_quantities(found, cycle) == {SEATS: Decimal("2.333333333")}
    # 2 seats x 480 h / 720 h; in JSON under its own names, "from" and "to" included.
    assert jsonable(held[0]) == {
        "group": "seat_type=advanced",
        "value": "2",
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-21T00:00:00Z",
        "hours": "480",
        "held_ms": 480 * 3_600_000,
        "share_of_cycle": "1.333333333",
        "events": [f"e{d}" for d in range(20)],
    }


def test_levels_skip_empty_spans_and_keep_groups_apart() -> None:
    other = (("seat_type", "expert"),)
    found = levels(
        [
            span("a", 5, NOV, NOV),  # a level replaced in the same millisecond holds nothing
            span("b", 1, NOV, DEC),
            Span(other, "c", NOV, Decimal(1), ms(NOV), ms(DEC)),
        ]
    )
    assert [(lv.dims, lv.event_ids) for lv in found] == [(SEATS, ("b",)), (other, ("c",))]


def b(quantity: str, minor: int, precise: str | None = None) -> Billed:
    return Billed(
        quantity=Decimal(quantity),
        amount_minor=minor,
        amount_precise=Decimal(precise if precise is not None else minor) / 100,
        currency="USD",
    )


def test_verdicts() -> None:
    line = b("10", 990)
    assert verdict(line, line, line, 0) == AGREES
    assert verdict(line, b("11", 1089), b("11", 1089), 1) == ADJUSTED
    assert verdict(line, line, b("11", 1089), 1) == DRIFT
    assert verdict(line, line, b("11", 1089), 0) == MISMATCH
    # An adjustment line has no own amount to compare: only the net counts.
    assert verdict(None, b("11", 1089), b("11", 1089), 1) == AGREES


def posted(
    line_id: int,
    key: str,
    quantity: str,
    minor: int,
    kind: str = "usage",
    adjusts: str | None = None,
) -> PostedLine:
    return PostedLine(
        id=line_id,
        invoice_id=1,
        invoice_status="finalized",
        kind=kind,
        key=key,
        price_id="fin_resolution",
        price_version="v1",
        meter="fin_resolution",
        group=None,
        quantity=Decimal(quantity),
        unit_amount=None,
        amount_minor=minor,
        amount_precise=Decimal(minor) / 100,
        currency="USD",
        description="",
        breakdown={},
        service_start=NOV,
        service_end=DEC,
        adjusts_key=adjusts,
    )


def charge(quantity: str, amount: str, kind: str = "usage") -> ChargeLine:
    return ChargeLine(
        price_id="fin_resolution",
        price_version="v1",
        kind=kind,  # type: ignore[arg-type]
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        amount_precise=Decimal(amount),
        currency="USD",
        meter="fin_resolution",
    )


def test_compare_period_by_key() -> None:
    k1, k2, k3 = "s|p|fin|v1|usage", "s|p|fin|v1|discount", "s|p|fee|v1|flat"
    originals = [posted(1, k1, "10", 990), posted(2, k2, "1", -99, kind="discount")]
    adjustment = posted(9, "s|p|fin|v1|usage|adj>x", "1", 99, kind="adjustment", adjusts=k1)
    rerated = {k1: charge("11", "10.89"), k3: charge("1", "250", kind="flat")}
    diffs = {d.key: d for d in compare_period(originals, [adjustment], rerated, "USD")}
    # k1: line + adjustment = re-rated; k2: no longer charged; k3: never posted.
    assert set(diffs) == {k2, k3}
    assert diffs[k2].what == "no_longer_charged" and diffs[k2].difference.amount_minor == 99
    assert diffs[k3].what == "missing" and diffs[k3].difference.amount_minor == 25000
    # In JSON: each amount with its text in the currency's minor unit.
    assert jsonable(diffs[k3])["difference"] == {
        "quantity": "1",
        "amount_minor": 25000,
        "amount_precise": "250",
        "amount": "250.00",
    }
    assert compare_period(originals[:1], [], {k1: charge("10", "9.90")}, "USD") == []


def info(invoice_id: int = 1, total: int = 990, lines: int = 1) -> InvoiceInfo:
    return InvoiceInfo(
        id=invoice_id,
        status="finalized",
        customer="cus_1",
        customer_name="C",
        subscription="sub_1",
        plan="standard",
        currency="USD",
        timezone="UTC",
        period_start=NOV,
        period_end=DEC,
        period_start_local=NOV.date(),
        cycle_start=NOV,
        cycle_end=DEC,
        finalized_at=DEC + timedelta(days=3),
        total_minor=total,
        line_count=lines,
    )


def facts(**overrides: object) -> ReconcileFacts:
    key = "s|p|fin|v1|usage"
    values: dict[str, object] = dict(
        period="2026-11",
        customer=None,
        invoices=[info()],
        lines={1: [posted(1, key, "10", 990)]},
        adjustments=[],
        raw={1: PeriodFacts({key: charge("10", "9.90")}, {("fin_resolution", ()): Decimal(10)})},
        rollup={1: PeriodFacts({key: charge("10", "9.90")}, {("fin_resolution", ()): Decimal(10)})},
        raw_totals={1: {("fin_resolution", ()): UsageTotals(10, Decimal(10))}},
        rollup_totals={1: {("fin_resolution", ()): UsageTotals(10, Decimal(10), None, 7)}},
        late={},
        ingests=[IngestFacts("i1", NOV, ["day.parquet"], 12, 10, 1, 1, {"bad_timestamp": 1})],
        stored=[
            StoredCount("i1", "fin_resolution", "USD", "accepted", "", 10),
            StoredCount("i1", "fin_resolution", "USD", "rejected", "bad_timestamp", 1),
        ],
        intake_window=(NOV, DEC),
        unattributed=[],
    )
    values.update(overrides)
    return ReconcileFacts(**values)  # type: ignore[arg-type]


def test_reconcile_clean_facts() -> None:
    report = reconcile(facts())
    assert report.ok and report.findings == []
    (row,) = report.meters
    assert (row.raw_events, row.rollup_events, row.rated_quantity, row.posted_quantity) == (
        10,
        10,
        Decimal(10),
        Decimal(10),
    )
    assert row.rated_amount.minor == row.posted_amount.minor == 990 and row.difference.minor == 0
    assert report.intake.balanced
    assert report.intake.by_meter_currency[0].rejected_by_reason == {"bad_timestamp": 1}


def test_reconcile_ingest_accounting_and_totals() -> None:
    unbalanced = IngestFacts("i1", NOV, ["day.parquet"], 13, 10, 1, 1, {"bad_timestamp": 1})
    report = reconcile(facts(ingests=[unbalanced], stored=[], invoices=[info(total=1000)]))
    assert {f.check for f in report.failures} == {
        "ingest_unbalanced",
        "ingest_log_vs_stored",
        "invoice_total",
    }


def test_unpriced_usage_is_reported_but_does_not_fail() -> None:
    key = "s|p|fin|v1|usage"
    raw = PeriodFacts(
        {key: charge("10", "9.90")},
        {("fin_resolution", ()): Decimal(10)},
        unpriced=[("seats", (("seat_type", "essential"),), Decimal(2))],
    )
    report = reconcile(facts(raw={1: raw}))
    assert report.ok and [f.check for f in report.findings] == ["unpriced_usage"]


def test_stale_rollup_is_named_as_such() -> None:
    stale = {1: {("fin_resolution", ()): UsageTotals(9, Decimal(9), None, 7)}}
    report = reconcile(facts(rollup_totals=stale, dirty_days=[date(2026, 11, 7)]))
    (finding,) = report.failures
    assert finding.check == "rollup_vs_raw" and "rollup stale: days 2026-11-07" in finding.detail


def test_finding_ids_are_stable_and_change_with_their_values() -> None:
    def unattributed(events: int, value: str, detail: str = "billed to nobody") -> Finding:
        return Finding(
            check="unattributed_usage",
            detail=detail,
            severity=WARNING,
            customer="cus_stray",
            subject={"meter": "fin_resolution", "month": "2026-11"},
            values={"events": events, "value_sum": Decimal(value)},
        )

    first = unattributed(3, "3")
    assert first.id == unattributed(3, "3").id  # the same in every run
    assert first.id == unattributed(3, "3.000", "worded otherwise").id  # spelling, wording
    assert first.id.startswith("f-") and len(first.id) == 14
    assert unattributed(4, "4").id != first.id  # a value changed: a new finding
    other = Finding(
        check="unattributed_usage",
        detail="billed to nobody",
        severity=WARNING,
        customer="cus_other",
        subject={"meter": "fin_resolution", "month": "2026-11"},
        values={"events": 3, "value_sum": Decimal(3)},
    )
    assert other.id != first.id  # another subject


def test_a_report_fails_on_unacknowledged_findings_of_its_severity() -> None:
    warning = Finding(check="unattributed_usage", detail="w", severity=WARNING, customer="c")
    error = Finding(check="line_differs", detail="e", customer="c", invoice_id=1, key="k")
    report = reconcile(facts()).model_copy(update={"findings": [warning, error]})
    report = report.judged("error", {})
    assert [f.check for f in report.failures] == ["line_differs"]  # fail_on error
    assert report.counts == {"error": 1, "warning": 1, "acknowledged": 0}
    report = report.judged(WARNING, {})
    assert [f.check for f in report.failures] == ["unattributed_usage", "line_differs"]
    ack = Acknowledgement(finding_id=error.id, reason="known", by="ops", at=NOV)
    report = report.judged(WARNING, {error.id: ack})
    assert [f.check for f in report.failures] == ["unattributed_usage"]
    assert report.counts == {"error": 0, "warning": 1, "acknowledged": 1}
    doc = jsonable(report)
    assert [(f["check"], f["fails"], f["acknowledged"]) for f in doc["findings"]] == [
        ("unattributed_usage", True, None),
        ("line_differs", False, {"by": "ops", "at": "2026-11-01T00:00:00Z", "reason": "known"}),
    ]
    assert doc["findings"][1]["id"] == error.id and "subject" not in doc["findings"][1]
    assert failure_message([report], DEC) == (
        "reconcile as of 2026-12-01T00:00:00Z: 1 failing finding(s): 1 warning; 1"
        f" acknowledged. First: {warning.id} (unattributed_usage, 2026-11). List them:"
        " meterline audit reconcile --as-of 2026-12-01T00:00:00Z; acknowledge one:"
        " meterline audit acknowledge FINDING_ID --as-of 2026-12-01T00:00:00Z --reason TEXT"
    )


def test_a_period_that_cannot_be_rerated_is_one_finding() -> None:
    raw = PeriodFacts({}, {}, error="plan 'basci' is not in the catalog (its plans: basic)")
    report = reconcile(facts(raw={1: raw}))
    (finding,) = report.failures
    assert (finding.check, finding.severity, finding.invoice_id) == ("cannot_rerate", "error", 1)
    assert finding.detail == (
        "the period cannot be re-rated from its raw events: plan 'basci' is not in the"
        " catalog (its plans: basic)"
    )
