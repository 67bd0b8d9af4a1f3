"""usage_rollup: rebuilds a UTC day's hourly usage rollup atomically, then every earlier
day that received late events since it was last rolled up. Nightly it follows the
USAGE_EVENTS asset and rolls up the day each usage_ingest event names; a backfill or a
manual run rolls up its data interval's day. Re-running a day changes nothing. Publishes
the USAGE_ROLLUP asset that billing_close follows. Then evaluates the spend and usage
alerts as of the rollup's end (fired and retracted once each: re-running announces
nothing new).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task

from meterline.jobs.dag_defaults import (
    DEFAULT_ARGS,
    USAGE_EVENTS,
    USAGE_ROLLUP,
    WAREHOUSE_POOL,
    schema_checked,
)

DOC = """
### usage_rollup
For a UTC day: rebuild the hourly rollup from `usage_events` (staging table +
`REPLACE PARTITION`), then rebuild each earlier day whose events changed since its last
rollup (late events, watermark on `ingested_at`). Which day:

- after `usage_ingest` (the nightly path): the day its `meterline://warehouse/usage_events`
  event names (several events folded into one run: each day, in order);
- a backfill or `airflow dags test usage_rollup DATE`: the data interval's day (daily,
  UTC; the run of 2026-11-02 rolls up 2026-11-01);
- `airflow dags trigger usage_rollup --conf '{"day": "YYYY-MM-DD"}'`: that day.

The daily timetable is only for backfills and manual runs: the scheduler never starts a
run by the clock (`allowed_run_types`), so no day is rolled up before its delivery is
stored. Publishes `meterline://warehouse/usage_rollup` with the day's end as `as_of`.

Then the `alerts` task evaluates every spend and usage alert as of that `as_of`
(docs/alerts.md): each threshold reached fires once, through the outbox, to the webhook
sink; one no longer reached is retracted once. Without any alert it reads the alerts
table and nothing else. It fails, without retrying, when a watched subscription's period
cannot be rated (the others are evaluated); the rollup and its asset event stand.

By hand: `meterline rollup --day YYYY-MM-DD`; a range: `meterline backfill --from D1 --to D2`
or `airflow backfill create --dag-id usage_rollup --from-date D1 --to-date D2`;
`meterline alerts evaluate --as-of TIME`.
"""


@dag(
    dag_id="usage_rollup",
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), assets=[USAGE_EVENTS]
    ),
    allowed_run_types=["asset_triggered", "backfill", "manual"],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "warehouse"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def usage_rollup() -> None:
    @task(pool=WAREHOUSE_POOL, outlets=[USAGE_ROLLUP])
    def rollup(**context: object) -> list[dict[str, object]]:
        """Rebuild the run's day(s), each then the earlier days that got late events."""
        from meterline.jobs.rollup import days_to_roll_up, rollup_day  # heavy imports stay out

        conf = getattr(context.get("dag_run"), "conf", None) or {}
        events = context.get("triggering_asset_events") or {}
        days, as_of = days_to_roll_up(
            conf_day=conf.get("day"),
            ingest_events=[
                dict(event.extra or {})
                for asset_events in events.values()  # type: ignore[attr-defined]
                for event in asset_events
            ],
            interval=(context["data_interval_start"], context["data_interval_end"]),  # type: ignore[arg-type]
        )
        with schema_checked():
            reports = [rollup_day(day).to_json() for day in days]
        # billing_close reads the rollup's "as of" time: the end of the last day rolled up.
        context["outlet_events"][USAGE_ROLLUP].extra = {  # type: ignore[index]
            "day": days[-1].isoformat(),
            "days": [day.isoformat() for day in days],
            "as_of": as_of.isoformat(),
            "late_days": sorted({d for report in reports for d in report["late_days"]}),
        }
        return reports

    @task(pool=WAREHOUSE_POOL)
    def alerts(reports: list[dict[str, object]]) -> dict[str, object]:
        """Evaluate spend and usage alerts as of the rollup's "as of" (docs/alerts.md)."""
        from airflow.sdk.exceptions import AirflowFailException

        from meterline.jobs.alerts import evaluate_after_rollup

        with schema_checked():
            report = evaluate_after_rollup(reports)
        if not report.ok:
            # Retrying reads the same prices: a person must act (the CLI's exit code 1).
            raise AirflowFailException("; ".join([report.summary(), *report.errors[:5]]))
        return report.to_json()

    alerts(rollup())


usage_rollup()
