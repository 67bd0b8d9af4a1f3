"""meterline_init: create or upgrade the warehouse and ledger schemas, run by hand after
installing or upgrading meterline (the same job as `meterline init`). The other DAGs'
tasks only check the schema version, and fail saying to run this when it is behind.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from meterline.jobs.dag_defaults import DEFAULT_ARGS, WAREHOUSE_POOL

DOC = """
### meterline_init
Creates or upgrades both schemas: the warehouse's (`sql/migrations/`) and the ledger's
(Alembic), exactly as `meterline init` does. Idempotent: on current schemas it changes
nothing. Trigger it once after each install or upgrade of meterline, before unpausing the
other DAGs: their tasks never migrate, they check the schema version and fail, without
retrying, with "run `meterline init`" when it is not this code's.

By hand: `meterline init`; the compose stack's `init` service runs it on every start.
"""


@dag(
    dag_id="meterline_init",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "setup"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def meterline_init() -> None:
    @task(pool=WAREHOUSE_POOL)
    def init() -> dict[str, object]:
        """Create or upgrade the warehouse and ledger schemas (meterline init)."""
        from meterline.jobs.init import init_schemas

        report = init_schemas()
        return {
            "warehouse_applied": report.warehouse_applied,
            "ledger_before": report.ledger_before,
            "ledger_after": report.ledger_after,
        }

    init()


meterline_init()
