"""Reconcile's first link: the accounting of the ingests received in the intake window.
Pure.

Business rules (DESIGN.md invariants 1 and 2): every ingest balances, received =
accepted + duplicates + rejected; and (for the whole warehouse, not one customer: the
log is not per customer) what each ingest logged matches the rows it stored, accepted
events in usage_events and rejected rows in usage_events_rejected.
"""

from __future__ import annotations

from collections import defaultdict

from meterline.audit.facts import IngestFacts, ReconcileFacts
from meterline.audit.findings import Finding
from meterline.audit.reconcile.report import Intake, IntakeRow

_COUNTS = ("received", "accepted", "duplicates", "rejected")


def intake(facts: ReconcileFacts, out: list[Finding]) -> Intake:
    """The intake table; its findings are appended to `out`."""
    totals = dict.fromkeys(_COUNTS, 0)
    reasons: dict[str, int] = defaultdict(int)
    for ing in facts.ingests:
        for name in _COUNTS:
            totals[name] += getattr(ing, name)
        for reason, n in ing.rejected_by_reason.items():
            reasons[reason] += n
        if ing.received != ing.accepted + ing.duplicates + ing.rejected:
            out.append(_unbalanced(ing))
    stored: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_meter: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_reason: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in facts.stored:
        stored[row.ingest_id][row.outcome] += row.n
        key = (row.meter or "?", row.currency or "?")
        by_meter[key][row.outcome] += row.n
        if row.outcome == "rejected":
            by_reason[key][row.reason] += row.n
    if facts.customer is None:
        for ing in facts.ingests:
            got = stored.get(ing.ingest_id, {})
            accepted, rejected = got.get("accepted", 0), got.get("rejected", 0)
            if (accepted, rejected) != (ing.accepted, ing.rejected):
                out.append(_log_vs_stored(ing, accepted, rejected))
    return Intake(
        window=facts.intake_window,
        scope="ingests received in the window"
        + (f"; rows of customer {facts.customer} only" if facts.customer else ""),
        ingests=len(facts.ingests),
        **totals,
        rejected_by_reason=dict(sorted(reasons.items())),
        by_meter_currency=[
            IntakeRow(
                meter=meter,
                currency=currency,
                accepted=counts["accepted"],
                rejected=counts["rejected"],
                rejected_by_reason=dict(sorted(by_reason[(meter, currency)].items())),
            )
            for (meter, currency), counts in sorted(by_meter.items())
        ],
    )


def _unbalanced(ing: IngestFacts) -> Finding:
    return Finding(
        check="ingest_unbalanced",
        detail=f"ingest {ing.ingest_id} ({', '.join(ing.sources)}): received"
        f" {ing.received} != accepted {ing.accepted} + duplicates"
        f" {ing.duplicates} + rejected {ing.rejected}",
        subject={"ingest_id": ing.ingest_id},
        values={name: getattr(ing, name) for name in _COUNTS},
    )


def _log_vs_stored(ing: IngestFacts, accepted: int, rejected: int) -> Finding:
    return Finding(
        check="ingest_log_vs_stored",
        detail=f"ingest {ing.ingest_id} ({', '.join(ing.sources)}) logged"
        f" {ing.accepted} accepted / {ing.rejected} rejected; the warehouse"
        f" holds {accepted} events / {rejected} rejected rows from it",
        subject={"ingest_id": ing.ingest_id},
        values={"logged": [ing.accepted, ing.rejected], "stored": [accepted, rejected]},
    )
