"""The month's reconcile findings as rows of the export (meterline.audit.reconcile:
`meterline audit reconcile --period M --as-of T`, T the latest close the ledger records).

A finding's id is stable while its values stay the same; a finding that changes is a
new id, and the old one, gone from the month, becomes a tombstone in the next export.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from meterline.audit.findings import JudgedFinding
from meterline.output import json_text
from meterline.sinks.lake.tables import RECONCILE_FINDINGS


def finding_rows(findings: Sequence[JudgedFinding]) -> pa.Table:
    """One row per finding id (a report never lists one id twice; if it did, the first).
    The close time the month was reconciled as of is the manifest's (``reconciled_as_of``),
    not a column: it moves with every close, and the rows would change with it."""
    cols: dict[str, list[object]] = {c.name: [] for c in RECONCILE_FINDINGS.columns}
    seen: set[str] = set()
    for f in findings:
        if f.id in seen:
            continue
        seen.add(f.id)
        ack = f.acknowledged
        cols["finding_id"].append(f.id)
        cols["check_name"].append(f.check)
        cols["severity"].append(f.severity)
        cols["customer_id"].append(f.customer)
        cols["invoice_id"].append(f.invoice_id)
        cols["line_key"].append(f.key)
        cols["detail"].append(f.detail)
        cols["fails"].append(f.fails)
        cols["acknowledged_by"].append(ack.by if ack else None)
        cols["acknowledged_at"].append(ack.at if ack else None)
        cols["acknowledged_reason"].append(ack.reason if ack else None)
        cols["data"].append(json_text(f.data) if f.data is not None else None)
    types = {c.name: c.type for c in RECONCILE_FINDINGS.columns}
    return pa.table({name: pa.array(values, types[name]) for name, values in cols.items()})
