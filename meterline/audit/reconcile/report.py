"""The reconcile report: typed rows for each table `meterline audit reconcile` prints,
the judged findings, and the verdict. Written as JSON by ``meterline.output.json_text``
(docs/audit.md lists the keys)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import computed_field

from meterline.audit.facts import Unattributed
from meterline.audit.findings import (
    ERROR,
    SEVERITIES,
    WARNING,
    Acknowledgement,
    JudgedFinding,
    Severity,
    judge,
)
from meterline.audit.values import Amount, Exact, Instant, Report, iso


class InvoiceCounts(Report):
    total: int
    checked: int
    open: int
    void: int


class IntakeRow(Report):
    """Events stored and rows rejected, per meter and currency (`?` when unknown)."""

    meter: str
    currency: str
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]


class Intake(Report):
    """The accounting of the ingests received in the window (UTC month)."""

    window: tuple[Instant, Instant]
    scope: str
    ingests: int
    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    by_meter_currency: list[IntakeRow]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def balanced(self) -> bool:
        return self.received == self.accepted + self.duplicates + self.rejected


class MeterRow(Report):
    """One meter and currency down the chain: raw events -> rollup -> rated -> posted."""

    meter: str
    currency: str
    invoices: int
    raw_events: int
    rollup_events: int
    raw_quantity: Exact
    rollup_quantity: Exact
    rated_quantity: Exact
    posted_quantity: Exact
    rated_amount: Amount
    posted_amount: Amount

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> Amount:
        return self.rated_amount - self.posted_amount


class ChargeRow(Report):
    """Re-rated against posted amounts of one currency and line kind."""

    currency: str
    kind: str
    rerated: Amount
    posted: Amount

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> Amount:
        return self.rerated - self.posted


class CustomerRow(Report):
    """One invoice of the month. A draft has a note and no usage columns (its usage is
    checked once it is finalized)."""

    invoice_id: int
    customer: str
    subscription: str
    currency: str
    status: str
    period: tuple[Instant, Instant]
    total: Amount
    note: str | None = None
    raw_events: int | None = None
    rollup_events: int | None = None
    posted: Amount | None = None
    rerated: Amount | None = None
    difference: Amount | None = None
    late_events: int | None = None
    findings: int


class LateByMeter(Report):
    events: int
    last_ingested_at: Instant | None


class DriftRow(Report):
    """A finalized invoice with events the run that rated it did not see."""

    invoice_id: int
    customer: str
    finalized_at: Instant | None
    late_events: int
    by_meter: dict[str, LateByMeter]
    adjustments: Amount
    adjusted: bool


class ReconcileReport(Report):
    """One month reconciled. `findings` are judged (`fails`, `acknowledged`) against
    `fail_on` and the acknowledgements the ledger holds."""

    period: str
    customer: str | None
    as_of: Instant | None = None
    fail_on: Severity = ERROR
    invoices: InvoiceCounts
    intake: Intake
    meters: list[MeterRow]
    charges: list[ChargeRow]
    customers: list[CustomerRow]
    unattributed: list[Unattributed]
    drift: list[DriftRow]
    findings: list[JudgedFinding]

    def judged(
        self, fail_on: Severity, acknowledgements: Mapping[str, Acknowledgement]
    ) -> ReconcileReport:
        """The same report, its findings judged against `fail_on` and these
        acknowledgements (by finding id)."""
        return self.model_copy(
            update={
                "fail_on": fail_on,
                "findings": judge(self.findings, fail_on, acknowledgements),
            }
        )

    @property
    def failures(self) -> list[JudgedFinding]:
        return [f for f in self.findings if f.fails]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.failures

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Unacknowledged findings per severity, and the acknowledged ones."""
        out = {ERROR: 0, WARNING: 0, "acknowledged": 0}
        for f in self.findings:
            out["acknowledged" if f.acknowledged else f.severity] += 1
        return out

    def summary(self) -> str:
        """One line: reconciled or not, the failing checks, the counts."""
        return self.summary_text

    @computed_field(alias="summary")  # type: ignore[prop-decorator]
    @property
    def summary_text(self) -> str:
        scope = self.period + (f" customer {self.customer}" if self.customer else "")
        counts = self.counts
        extra = ", ".join(
            f"{counts[k]} {label}"
            for k, label in (
                (ERROR, "error(s)"),
                (WARNING, "warning(s)"),
                ("acknowledged", "acknowledged"),
            )
            if counts[k]
        )
        if self.ok:
            return (
                f"{scope}: reconciled ({self.invoices.checked} invoices"
                + (f"; {extra}" if extra else "")
                + ")"
            )
        checks: dict[str, int] = defaultdict(int)
        for f in self.failures:
            checks[f.check] += 1
        what = ", ".join(f"{check} x{n}" for check, n in sorted(checks.items()))
        return f"{scope}: NOT reconciled: {what} ({extra})"


def failure_message(reports: Sequence[ReconcileReport], as_of: datetime, shown: int = 5) -> str:
    """A short text for a failed run (the billing_close DAG's reconcile task): the failing
    findings counted by severity, the first few ids, and the command that lists them."""
    failing = [(r, f) for r in reports for f in r.failures]
    counts: dict[str, int] = defaultdict(int)
    for _, f in failing:
        counts[f.severity] += 1
    acknowledged = sum(r.counts["acknowledged"] for r in reports)
    severities = ", ".join(
        f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in reversed(SEVERITIES) if counts[s]
    )
    first = ", ".join(f"{f.id} ({f.check}, {r.period})" for r, f in failing[:shown])
    more = f" and {len(failing) - shown} more" if len(failing) > shown else ""
    return (
        f"reconcile as of {iso(as_of)}: {len(failing)} failing finding(s): {severities}"
        + (f"; {acknowledged} acknowledged" if acknowledged else "")
        + f". First: {first}{more}."
        f" List them: meterline audit reconcile --as-of {iso(as_of)}; acknowledge one:"
        f" meterline audit acknowledge FINDING_ID --as-of {iso(as_of)} --reason TEXT"
    )
