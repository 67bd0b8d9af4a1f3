"""usage_ingest: one run per UTC day (its data interval) ingests that day's delivery, the
usage files at METERLINE_DELIVERY_PATH for the day, as one ingest run; then publishes the
USAGE_EVENTS asset, naming the day, which usage_rollup follows. Re-running a day stores
nothing twice (every re-sent event is a duplicate).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from meterline.jobs.dag_defaults import (
    DEFAULT_ARGS,
    USAGE_EVENTS,
    WAREHOUSE_POOL,
    schema_checked,
)

DOC = """
### usage_ingest
For the data interval's UTC day: read the delivery at `METERLINE_DELIVERY_PATH` with the
day filled in (default `deliveries/{date}`: a folder read recursively, a file or a glob,
local or any fsspec URL), validate and store every row (accepted, duplicate, or rejected
with a reason), judging event ages against the interval's end. Then publish the
`meterline://warehouse/usage_events` asset with the day in its event: `usage_rollup`
rolls that day up.

The task fails without retrying, as `meterline ingest` exits non-zero, when a file
cannot be read or more rows were rejected than `METERLINE_INGEST_MAX_REJECTED_SHARE`
allows (`meterline rejected --ingest ID` shows them); the rows it accepted are stored.
A delivery that is not there yet fails and retries. Once a person has dealt with it:
`airflow dags trigger usage_rollup --conf '{"day": "YYYY-MM-DD"}'`.

By hand: `meterline ingest --delivery YYYY-MM-DD`; a range:
`airflow backfill create --dag-id usage_ingest --from-date D1 --to-date D2`.
"""


@dag(
    dag_id="usage_ingest",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "warehouse"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def usage_ingest() -> None:
    @task(pool=WAREHOUSE_POOL, outlets=[USAGE_EVENTS])
    def ingest(**context: object) -> dict[str, object]:
        """Ingest the interval's delivery; fail as `meterline ingest` exits non-zero."""
        from airflow.sdk.exceptions import AirflowFailException

        from meterline.jobs.ingest import ingest_delivery  # heavy imports stay out of parsing

        day = context["data_interval_start"].date()  # type: ignore[attr-defined]
        end = context["data_interval_end"]
        with schema_checked():
            report = ingest_delivery(day, as_of=end)  # type: ignore[arg-type]
        failure = report.failure()
        if failure:
            # Not transient: the same files give the same verdict.
            raise AirflowFailException(f"ingest of {report.location}: {failure}")
        # usage_rollup rolls up the day this event names.
        context["outlet_events"][USAGE_EVENTS].extra = {  # type: ignore[index]
            "day": day.isoformat(),
            "as_of": end.isoformat(),  # type: ignore[attr-defined]
            "ingest_id": report.ingest_id,
        }
        return report.to_json()

    ingest()


usage_ingest()
