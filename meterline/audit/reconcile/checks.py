"""Reconcile's checks (DESIGN.md invariant 6): every link of the chain for one month's
invoices, compared from facts it is given. Pure: no database, warehouse or clock.

The links: the intake accounting of each ingest; raw events against the rollup rows;
quantities from raw events against the rollup's; every re-rated key against what was
billed for it (``meterline.audit.compare``); each invoice's total against its lines
(invariant 4); late usage since finalization; usage no subscription or price covers; a
period due without an invoice. docs/audit.md lists the checks and their severities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from billing.money import minor_text
from meterline.audit.compare import KeyDiff, compare_period
from meterline.audit.facts import (
    NO_USAGE,
    InvoiceInfo,
    PeriodFacts,
    PostedLine,
    ReconcileFacts,
    RevenueGap,
    UsageTotals,
)
from meterline.audit.findings import ERROR, WARNING, Finding, Severity
from meterline.audit.reconcile.intake import intake
from meterline.audit.reconcile.report import (
    ChargeRow,
    CustomerRow,
    DriftRow,
    InvoiceCounts,
    LateByMeter,
    MeterRow,
    ReconcileReport,
)
from meterline.audit.values import Amount, Dims, dims_label, iso, text

Totals = Mapping[tuple[str, Dims], UsageTotals]


def reconcile(facts: ReconcileFacts) -> ReconcileReport:
    """Compare every link of the chain for the period's invoices. The findings come back
    judged against errors and no acknowledgement; `ReconcileReport.judged` re-judges."""
    findings: list[Finding] = []
    intake_row = intake(facts, findings)
    tally = _Tally()
    customers: list[CustomerRow] = []
    drift: list[DriftRow] = []
    by_key: dict[str, list[PostedLine]] = defaultdict(list)
    for adj in facts.adjustments:
        by_key[adj.corrects].append(adj)
    for inv in facts.invoices:
        before = len(findings)
        lines = facts.lines.get(inv.id, ())
        _check_total(inv, lines, findings)
        if inv.status != "finalized":
            customers.append(
                _customer_row(
                    inv,
                    findings=len(findings) - before,
                    note="open draft: rated at close; its usage is checked once finalized",
                )
            )
            continue
        row, late = _finalized(inv, lines, by_key, facts, tally, findings)
        customers.append(row.model_copy(update={"findings": len(findings) - before}))
        if late is not None:
            drift.append(late)
    findings += (
        _unattributed(facts) + _missing(facts) + _credit_balances(facts) + _revenue_balances(facts)
    )
    report = ReconcileReport(
        period=facts.period,
        customer=facts.customer,
        as_of=facts.as_of,
        invoices=InvoiceCounts(
            total=len(facts.invoices),
            checked=sum(1 for i in facts.invoices if i.status == "finalized"),
            open=sum(1 for i in facts.invoices if i.status == "draft"),
            void=facts.void_invoices,
        ),
        intake=intake_row,
        meters=tally.meter_rows(),
        charges=tally.charge_rows(),
        customers=customers,
        unattributed=list(facts.unattributed),
        drift=drift,
        findings=[],
    )
    return report.model_copy(update={"findings": findings}).judged(report.fail_on, {})


def _finalized(
    inv: InvoiceInfo,
    lines: Sequence[PostedLine],
    adjustments: Mapping[str, Sequence[PostedLine]],
    facts: ReconcileFacts,
    tally: _Tally,
    findings: list[Finding],
) -> tuple[CustomerRow, DriftRow | None]:
    """The checks of one finalized invoice; its row of the customers table, and its drift
    row when events came after the run that rated it."""
    raw, rollup = facts.raw.get(inv.id), facts.rollup.get(inv.id)
    raw_totals = facts.raw_totals.get(inv.id, {})
    rollup_totals = facts.rollup_totals.get(inv.id, {})
    late = facts.late.get(inv.id, {})
    late_events = sum(t.events for t in late.values())
    _check_usage(inv, raw, rollup, raw_totals, rollup_totals, sorted(facts.dirty_days), findings)
    originals = [ln for ln in lines if ln.kind != "adjustment"]
    keys = {ln.key for ln in originals} | set(raw.charges if raw else ())
    adjs = [a for k in sorted(keys) for a in adjustments.get(k, ())]
    diffs: list[KeyDiff] = []
    if raw is not None and raw.error is not None:
        # Nothing to compare the lines with: one finding, not one per line.
        findings.append(
            Finding(
                check="cannot_rerate",
                detail=f"the period cannot be re-rated from its raw events: {raw.error}",
                customer=inv.customer,
                invoice_id=inv.id,
                values={"reason": raw.error},
            )
        )
    else:
        diffs = compare_period(originals, adjs, raw.charges if raw else {}, inv.currency)
        findings += [_line_finding(inv, d, late_events) for d in diffs]
    tally.add(inv, originals, adjs, raw, rollup, raw_totals, rollup_totals)
    billed = sum(ln.amount_minor for ln in [*originals, *adjs])
    rated = sum(c.amount_minor for c in (raw.charges.values() if raw else ()))
    row = _customer_row(
        inv,
        raw_events=sum(t.events for t in raw_totals.values()),
        rollup_events=sum(t.events for t in rollup_totals.values()),
        posted=Amount(minor=billed, currency=inv.currency),
        rerated=Amount(minor=rated, currency=inv.currency),
        difference=Amount(minor=rated - billed, currency=inv.currency),
        late_events=late_events,
    )
    return row, _drift_row(inv, late, adjs, adjusted=not diffs) if late_events else None


def _customer_row(inv: InvoiceInfo, **values: object) -> CustomerRow:
    return CustomerRow.model_validate(
        {
            "invoice_id": inv.id,
            "customer": inv.customer,
            "subscription": inv.subscription,
            "currency": inv.currency,
            "status": inv.status,
            "period": (inv.period_start, inv.period_end),
            "total": Amount(minor=inv.total_minor, currency=inv.currency),
            "findings": 0,
            **values,
        }
    )


def _drift_row(
    inv: InvoiceInfo,
    late: Mapping[str, UsageTotals],
    adjustments: Sequence[PostedLine],
    *,
    adjusted: bool,
) -> DriftRow:
    return DriftRow(
        invoice_id=inv.id,
        customer=inv.customer,
        finalized_at=inv.finalized_at,
        late_events=sum(t.events for t in late.values()),
        by_meter={
            m: LateByMeter(events=t.events, last_ingested_at=t.max_ingested_at)
            for m, t in sorted(late.items())
        },
        adjustments=Amount(minor=sum(a.amount_minor for a in adjustments), currency=inv.currency),
        adjusted=adjusted,
    )


def _line_finding(inv: InvoiceInfo, diff: KeyDiff, late_events: int) -> Finding:
    late = (
        f" ({late_events} event(s) the rating run did not see: run"
        " `meterline audit rerate --apply` or the next close)"
        if late_events
        else ""
    )
    return Finding(
        check="unadjusted_drift" if late_events else f"line_{diff.what}",
        detail=f"{diff.price_id} {diff.kind}{' ' + diff.group if diff.group else ''}:"
        f" billed {text(diff.billed.quantity)} / {diff.billed.amount},"
        f" re-rated from raw events {text(diff.rerated.quantity)} / {diff.rerated.amount}" + late,
        customer=inv.customer,
        invoice_id=inv.id,
        key=diff.key,
        data=diff,
        values={
            "billed": [diff.billed.quantity, diff.billed.amount_minor],
            "rerated": [diff.rerated.quantity, diff.rerated.amount_minor],
        },
    )


def _check_total(inv: InvoiceInfo, lines: Sequence[PostedLine], out: list[Finding]) -> None:
    """Invariant 4: an invoice's total is the sum of its rounded lines."""
    lines_total = sum(ln.amount_minor for ln in lines)
    if lines_total != inv.total_minor or len(lines) != inv.line_count:
        out.append(
            Finding(
                check="invoice_total",
                detail=f"invoice {inv.id} says {_minor(inv.total_minor, inv)} over"
                f" {inv.line_count} line(s); its lines add up to"
                f" {_minor(lines_total, inv)} over {len(lines)}",
                customer=inv.customer,
                invoice_id=inv.id,
                values={
                    "invoice": [inv.total_minor, inv.line_count],
                    "lines": [lines_total, len(lines)],
                },
            )
        )


def _minor(minor: int, inv: InvoiceInfo) -> str:
    return minor_text(minor, inv.currency)


def _stale_hint(dirty: Sequence[date], start: datetime, end: datetime) -> str:
    days = [d for d in dirty if start.date() <= d <= end.date()]
    if days:
        listed = ", ".join(d.isoformat() for d in days[:5]) + (" ..." if len(days) > 5 else "")
        run = (
            f"meterline rollup --day {days[0].isoformat()}"
            if len(days) == 1
            else f"meterline backfill --from {days[0].isoformat()} --to {days[-1].isoformat()}"
        )
        return (
            f" (rollup stale: days {listed} received events since they were rolled up; run `{run}`)"
        )
    return " (no day is dirty: the rollup rows do not match the events they were built from)"


def _check_usage(
    inv: InvoiceInfo,
    raw: PeriodFacts | None,
    rollup: PeriodFacts | None,
    raw_totals: Totals,
    rollup_totals: Totals,
    dirty: Sequence[date],
    out: list[Finding],
) -> None:
    """Raw events against rollup rows, raw quantities against the rollup's, and usage no
    price of the plan counts. A period that cannot be re-rated read no quantities."""
    hint = _stale_hint(dirty, inv.period_start, inv.period_end)
    for meter, dims in sorted(set(raw_totals) | set(rollup_totals)):
        r = raw_totals.get((meter, dims), NO_USAGE)
        u = rollup_totals.get((meter, dims), NO_USAGE)
        if r.events != u.events or r.value_sum != u.value_sum:
            out.append(
                _usage_finding(
                    inv,
                    "rollup_vs_raw",
                    meter,
                    dims,
                    f"raw events {r.events} (sum {text(r.value_sum)}), rollup {u.events}"
                    f" (sum {text(u.value_sum)}){hint}",
                    {"raw": [r.events, r.value_sum], "rollup": [u.events, u.value_sum]},
                )
            )
    if raw is None or rollup is None or raw.error or rollup.error:
        return
    for meter, dims in sorted(set(raw.quantities) | set(rollup.quantities)):
        q_raw = raw.quantities.get((meter, dims), Decimal(0))
        q_rollup = rollup.quantities.get((meter, dims), Decimal(0))
        if q_raw != q_rollup:
            out.append(
                _usage_finding(
                    inv,
                    "quantity_rollup_vs_raw",
                    meter,
                    dims,
                    f"quantity from raw events {text(q_raw)}, from the rollup"
                    f" {text(q_rollup)}{hint}",
                    {"raw": q_raw, "rollup": q_rollup},
                )
            )
    for meter, dims, quantity in raw.unpriced:
        out.append(
            _usage_finding(
                inv,
                "unpriced_usage",
                meter,
                dims,
                f"{text(quantity)} used, but no price of plan {inv.plan} covers this group:"
                " billed to no one",
                {"quantity": quantity},
                severity=WARNING,
            )
        )


def _usage_finding(
    inv: InvoiceInfo,
    check: str,
    meter: str,
    dims: Dims,
    detail: str,
    values: Mapping[str, object],
    *,
    severity: Severity = ERROR,
) -> Finding:
    return Finding(
        check=check,
        detail=f"{meter} {dims_label(dims)}: {detail}",
        severity=severity,
        customer=inv.customer,
        invoice_id=inv.id,
        subject={"meter": meter, "group": dims_label(dims)},
        values=values,
    )


def _unattributed(facts: ReconcileFacts) -> list[Finding]:
    out = []
    for item in facts.unattributed:
        what = "unknown to the ledger" if not item.known_customer else "outside its subscriptions"
        out.append(
            Finding(
                check="unattributed_usage",
                detail=f"{item.customer} ({what}): {item.events} {item.meter} event(s)"
                f" {iso(item.first)}..{iso(item.last)}, e.g. {item.example_event_id};"
                " this usage is billed to nobody",
                severity=WARNING,
                customer=item.customer,
                subject={"meter": item.meter, "month": facts.period},
                values={
                    "events": item.events,
                    "value_sum": item.value_sum,
                    "first": item.first,
                    "last": item.last,
                    "known_customer": item.known_customer,
                },
            )
        )
    return out


def _credit_balances(facts: ReconcileFacts) -> list[Finding]:
    """Invariant 9 for credit grants: granted = consumed + expired + voided + rolled_over
    + remaining, no account below zero at any entry, each stored balance the replayed
    one. One error per grant whose ledger breaks it, naming every problem
    (docs/credits.md)."""
    out = []
    for grant in facts.grants:
        if not grant.problems:
            continue
        out.append(
            Finding(
                check="credit_balance",
                detail=f"credit grant {grant.grant_id} ({grant.unit}) does not balance: "
                + "; ".join(grant.problems),
                customer=grant.customer,
                subject={"grant": grant.grant_id},
                values={
                    "granted": grant.granted,
                    "consumed": grant.consumed,
                    "expired": grant.expired,
                    "voided": grant.voided,
                    # Only when some rolled over: a finding's id follows its values, and
                    # those of grants that never roll over keep theirs.
                    **({"rolled_over": grant.rolled_over} if grant.rolled_over else {}),
                    "remaining": grant.remaining,
                    "problems": list(grant.problems),
                },
            )
        )
    return out


def _revenue_balances(facts: ReconcileFacts) -> list[Finding]:
    """Invariant 9 for revenue (docs/revrec.md): at the end of every day of the month,
    per customer and currency, billed = recognized + deferred - unbilled to the minor
    unit. One error per customer and currency whose balances break it (its first such
    day and how many), and one per problem of the schedule (a line whose rows do not add
    up to it, a paid commitment that does not tie to its credit ledger)."""
    if facts.revenue is None:
        return []
    out = []
    firsts: dict[tuple[str, str], list[RevenueGap]] = defaultdict(list)
    for gap in facts.revenue.gaps:
        firsts[(gap.customer, gap.currency)].append(gap)
    for (customer, currency), gaps in sorted(firsts.items()):
        g = min(gaps, key=lambda x: x.day)
        out.append(
            Finding(
                check="revenue_balance",
                detail=f"{customer} {currency}: billed {minor_text(g.billed, currency)} is not"
                f" recognized {minor_text(g.recognized, currency)} + deferred"
                f" {minor_text(g.deferred, currency)} - unbilled"
                f" {minor_text(g.unbilled, currency)} at the end of {g.day.isoformat()}"
                f" ({len(gaps)} day(s) of {facts.period})",
                customer=customer,
                subject={"currency": currency, "month": facts.period},
                values={
                    "day": g.day.isoformat(),
                    "billed": g.billed,
                    "recognized": g.recognized,
                    "deferred": g.deferred,
                    "unbilled": g.unbilled,
                    "days": len(gaps),
                },
            )
        )
    for problem in facts.revenue.problems:
        out.append(
            Finding(
                check="revenue_balance",
                detail=f"revenue schedule: {problem}",
                subject={"problem": problem, "month": facts.period},
            )
        )
    return out


def _missing(facts: ReconcileFacts) -> list[Finding]:
    return [
        Finding(
            check="missing_invoice",
            detail=f"{gap.subscription} period {iso(gap.start)}..{iso(gap.end)} ended and is"
            " due but has no invoice"
            + (f": close cannot bill it: {gap.reason}" if gap.reason else ""),
            customer=gap.customer,
            subject={"subscription": gap.subscription, "period_start": gap.start},
            values={"period_end": gap.end, "reason": gap.reason},
        )
        for gap in facts.missing
    ]


@dataclass
class _MeterTally:
    invoices: set[int] = field(default_factory=set)
    raw_events: int = 0
    rollup_events: int = 0
    raw_quantity: Decimal = Decimal(0)
    rollup_quantity: Decimal = Decimal(0)
    rated_quantity: Decimal = Decimal(0)
    posted_quantity: Decimal = Decimal(0)
    rated_minor: int = 0
    posted_minor: int = 0


@dataclass
class _Tally:
    """The month's numbers per (meter, currency) and per (currency, line kind)."""

    meters: dict[tuple[str, str], _MeterTally] = field(default_factory=dict)
    charges: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def meter(self, meter: str, currency: str) -> _MeterTally:
        return self.meters.setdefault((meter, currency), _MeterTally())

    def charge(self, currency: str, kind: str) -> list[int]:
        """[re-rated, posted] minor units."""
        return self.charges.setdefault((currency, kind), [0, 0])

    def add(
        self,
        inv: InvoiceInfo,
        originals: Sequence[PostedLine],
        adjustments: Sequence[PostedLine],
        raw: PeriodFacts | None,
        rollup: PeriodFacts | None,
        raw_totals: Totals,
        rollup_totals: Totals,
    ) -> None:
        """One finalized invoice's numbers (its lines and the adjustments of its keys)."""
        cur = inv.currency
        for (meter, _dims), t in raw_totals.items():
            row = self.meter(meter, cur)
            row.raw_events += t.events
            row.invoices.add(inv.id)
        for (meter, _dims), t in rollup_totals.items():
            self.meter(meter, cur).rollup_events += t.events
        for (meter, _dims), q in raw.quantities.items() if raw else ():
            self.meter(meter, cur).raw_quantity += q
        for (meter, _dims), q in rollup.quantities.items() if rollup else ():
            self.meter(meter, cur).rollup_quantity += q
        for charge in raw.charges.values() if raw else ():
            self.charge(cur, charge.kind)[0] += charge.amount_minor
            if charge.kind == "usage" and charge.meter:
                row = self.meter(charge.meter, cur)
                row.rated_quantity += charge.quantity
                row.rated_minor += charge.amount_minor
        kind_of = {ln.key: ln.kind for ln in originals}
        for ln in [*originals, *adjustments]:
            kind = kind_of.get(ln.corrects, ln.kind) if ln.kind == "adjustment" else ln.kind
            self.charge(cur, kind)[1] += ln.amount_minor
            if kind == "usage" and ln.meter:
                row = self.meter(ln.meter, cur)
                row.posted_quantity += ln.quantity
                row.posted_minor += ln.amount_minor

    def meter_rows(self) -> list[MeterRow]:
        return [
            MeterRow(
                meter=meter,
                currency=cur,
                invoices=len(t.invoices),
                raw_events=t.raw_events,
                rollup_events=t.rollup_events,
                raw_quantity=t.raw_quantity,
                rollup_quantity=t.rollup_quantity,
                rated_quantity=t.rated_quantity,
                posted_quantity=t.posted_quantity,
                rated_amount=Amount(minor=t.rated_minor, currency=cur),
                posted_amount=Amount(minor=t.posted_minor, currency=cur),
            )
            for (meter, cur), t in sorted(self.meters.items())
        ]

    def charge_rows(self) -> list[ChargeRow]:
        return [
            ChargeRow(
                currency=cur,
                kind=kind,
                rerated=Amount(minor=rerated, currency=cur),
                posted=Amount(minor=posted, currency=cur),
            )
            for (cur, kind), (rerated, posted) in sorted(self.charges.items())
        ]
