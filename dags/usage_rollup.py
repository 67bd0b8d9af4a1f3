"""usage_rollup: one run per UTC day (its data interval) rebuilds that day's hourly
usage rollup atomically, then every earlier day that received late events since it
was last rolled up. Re-running a day changes nothing. Publishes the USAGE_ROLLUP asset
that billing_close follows.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from meterline.jobs.dag_defaults import DEFAULT_ARGS, USAGE_ROLLUP, WAREHOUSE_POOL

DOC = """
### usage_rollup
For the data interval's UTC day: rebuild the hourly rollup from `usage_events`
(staging table + `REPLACE PARTITION`), then rebuild each earlier day whose events
changed since its last rollup (late events, watermark on `ingested_at`).

By hand: `meterline rollup --day YYYY-MM-DD`; a range: `meterline backfill --from D1 --to D2`
or `airflow backfill create --dag-id usage_rollup --from-date D1 --to-date D2`.
"""


@dag(
    dag_id="usage_rollup",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "warehouse"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def usage_rollup() -> None:
    @task(pool=WAREHOUSE_POOL, outlets=[USAGE_ROLLUP])
    def rollup(**context: object) -> dict[str, object]:
        """Rebuild the interval's day, then the earlier days that got late events."""
        from meterline.jobs.rollup import rollup_day  # heavy imports stay out of parsing

        start = context["data_interval_start"]
        end = context["data_interval_end"]
        day = start.date()  # type: ignore[attr-defined]
        report = rollup_day(day).to_json()
        # billing_close reads the rollup's interval end as its "as of" time.
        context["outlet_events"][USAGE_ROLLUP].extra = {  # type: ignore[index]
            "day": day.isoformat(),
            "as_of": end.isoformat(),  # type: ignore[attr-defined]
            "late_days": report["late_days"],
        }
        return report

    rollup()


usage_rollup()
