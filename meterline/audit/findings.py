"""Reconcile findings: what they are, their severities and stable ids, and the
acknowledgements that let a known one pass.

Business rules:
- Every finding has a severity: an error when money differs (or may: a line, a total, a
  quantity, the intake accounting, a period due without an invoice), a warning when
  usage is billed to no one (usage no subscription covers; dimension groups no price of
  the plan counts). Usage is never dropped silently: both are listed.
- A finding has a stable id: a hash of its check, its subject and the values that
  define it. A person can acknowledge a finding by its id; a finding whose values change
  is a new one, which no earlier acknowledgement covers.
- A report fails on the unacknowledged findings at or above the severity the caller
  fails on (METERLINE_RECONCILE_FAIL_ON: errors by default).

`acknowledge` and `acknowledgements` read and write the ledger's
``finding_acknowledgements``; the rest is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, computed_field
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.charges import canonical_json, sha256_hex
from billing.models import FindingAcknowledgement
from billing.money import canonical
from meterline.audit.compare import KeyDiff
from meterline.audit.values import Instant, Report, iso
from meterline.connections import ledger_session
from meterline.jobs.watermarks import as_utc
from meterline.settings import Settings, settings

Severity = Literal["warning", "error"]
ERROR: Severity = "error"
WARNING: Severity = "warning"
#: Severities, least severe first: failing on one fails on those after it too.
SEVERITIES: tuple[Severity, ...] = (WARNING, ERROR)
FINDING_ID = re.compile(r"^f-[0-9a-f]{12}$")


def _plain(value: Any) -> Any:
    """A value as plain JSON with one spelling per number and instant (for hashing)."""
    if isinstance(value, Decimal):
        return canonical(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def finding_id(check: str, subject: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """`f-` and 12 hex digits of the sha256 of (check, subject, values): the same finding
    has the same id in every run; a change of any defining value makes a new id."""
    doc = canonical_json(_plain({"check": check, "subject": subject, "values": values}))
    return "f-" + sha256_hex(doc)[:12]


class Acknowledgement(Report):
    """A person's note that a finding is known and need not fail the run."""

    finding_id: str = Field(exclude=True)
    reason: str
    by: str
    at: Instant


class Finding(Report):
    """One thing reconcile found. `subject` names what it is about (with the customer,
    invoice and key), `values` the numbers that define it: together with the check they
    make its id. `detail` says it in words (and may change wording without a new id);
    `data` is the key's comparison for the line checks."""

    check: str
    severity: Severity = ERROR
    customer: str | None = None
    invoice_id: int | None = None
    key: str | None = None
    detail: str
    data: KeyDiff | None = None
    subject: Mapping[str, Any] = Field(default_factory=dict, exclude=True)
    values: Mapping[str, Any] = Field(default_factory=dict, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        subject = {
            "customer": self.customer,
            "invoice_id": self.invoice_id,
            "key": self.key,
            **self.subject,
        }
        return finding_id(self.check, subject, self.values)


class JudgedFinding(Finding):
    """A finding in a report: whether it fails the run, and who acknowledged it."""

    fails: bool
    acknowledged: Acknowledgement | None


def judge(
    findings: Sequence[Finding],
    fail_on: Severity,
    acknowledgements: Mapping[str, Acknowledgement],
) -> list[JudgedFinding]:
    """Each finding with its judgement: it fails when it is at or above `fail_on` and
    nobody acknowledged it."""
    out = []
    for f in findings:
        ack = acknowledgements.get(f.id)
        severe = SEVERITIES.index(f.severity) >= SEVERITIES.index(fail_on)
        out.append(
            JudgedFinding(
                **{name: getattr(f, name) for name in Finding.model_fields},
                fails=severe and ack is None,
                acknowledged=ack,
            )
        )
    return out


def acknowledgements(session: Session, finding_ids: Sequence[str]) -> dict[str, Acknowledgement]:
    """The latest acknowledgement of each of these findings that has one."""
    out: dict[str, Acknowledgement] = {}
    for part in bulk.chunks(sorted(set(finding_ids))):
        for row in session.scalars(
            select(FindingAcknowledgement)
            .where(FindingAcknowledgement.finding_id.in_(part))
            .order_by(FindingAcknowledgement.id)
        ):
            out[row.finding_id] = Acknowledgement(
                finding_id=row.finding_id,
                reason=row.reason,
                by=row.acknowledged_by,
                at=as_utc(row.acknowledged_at),
            )
    return out


def check_finding_id(finding_id: str) -> str:
    """The id as stored (trimmed, lower case). ValueError for one that is not a finding
    id."""
    wanted = finding_id.strip().lower()
    if not FINDING_ID.match(wanted):
        raise ValueError(
            f"{finding_id!r} is not a finding id (f- and 12 hex digits, as"
            " `meterline audit reconcile` lists them)"
        )
    return wanted


#: Characters of an acknowledgement's reason: a sentence or a short paragraph.
REASON_MAX = 2_000


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` (stripped) cannot be an acknowledgement's reason (None when it can):
    empty; over REASON_MAX characters; or holding a control character other than a line
    break or a tab (a NUL is refused by PostgreSQL; an escape sequence would reach the
    terminal of whoever runs `meterline audit reconcile`)."""
    text = reason.strip()
    if not text:
        return "give the reason the finding is acknowledged"
    if len(text) > REASON_MAX:
        return f"the reason has {len(text):,} characters: at most {REASON_MAX:,}"
    for char in text:
        if not char.isprintable() and char not in "\n\r\t":
            return (
                f"the reason holds the character U+{ord(char):04X}, which is not text:"
                " write it as plain text"
            )
    return None


def acknowledge(
    finding_id: str,
    *,
    reason: str,
    by: str,
    at: datetime,
    config: Settings | None = None,
) -> Acknowledgement:
    """Record that `by` acknowledged reconcile finding `finding_id` at `at`, because
    `reason`: from then on it is listed as acknowledged and no longer fails a run. Only
    that exact finding: one whose values change gets a new id. ValueError for an id that
    is not a finding id, a reason ``reason_problem`` refuses, or an empty name."""
    wanted = check_finding_id(finding_id)
    problem = reason_problem(reason)
    if problem is not None:
        raise ValueError(problem)
    if not by.strip():
        raise ValueError("give who acknowledges it")
    ack = Acknowledgement(finding_id=wanted, reason=reason.strip(), by=by.strip(), at=at)
    with ledger_session(config or settings(), write=True) as session:
        session.add(
            FindingAcknowledgement(
                finding_id=ack.finding_id,
                reason=ack.reason,
                acknowledged_by=ack.by,
                acknowledged_at=ack.at,
            )
        )
    return ack
