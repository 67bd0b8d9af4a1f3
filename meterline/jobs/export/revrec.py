"""The month's revenue recognition schedule as rows of the export: the rows revenue
recognition (meterline.jobs.revrec, docs/revrec.md) recognizes on the days of the month,
each with its stable key. A month of recognition is local days in each customer's
timezone, so the partition holds what was recognized in the month, whichever month's
invoice billed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from billing.money import exponent
from billing.revrec import ScheduleRow
from meterline.sinks.lake.tables import REVREC_SCHEDULE


def schedule_rows(rows: Sequence[ScheduleRow]) -> pa.Table:
    """One export row per schedule row (its `key` is the primary key)."""
    given = {
        "schedule_key": [r.key for r in rows],
        "customer_id": [r.customer for r in rows],
        "currency_exponent": [exponent(r.currency) for r in rows],
    }
    types = {c.name: c.type for c in REVREC_SCHEDULE.columns}
    return pa.table(
        {
            c.name: pa.array(
                given[c.name] if c.name in given else [getattr(r, c.name) for r in rows],
                types[c.name],
            )
            for c in REVREC_SCHEDULE.columns
        }
    )
