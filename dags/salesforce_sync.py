"""salesforce_sync: customers, subscriptions and discounts from Salesforce into the
ledger, every night at 23:30 UTC, before usage_ingest (00:00 UTC) starts the chain that
ends in billing_close. Incremental (the records modified since the last sync) and
idempotent; skipped when Salesforce is not configured. docs/salesforce.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from meterline.jobs.dag_defaults import DEFAULT_ARGS, schema_checked

DOC = """
### salesforce_sync
Reads the Salesforce accounts and subscription records modified since the last sync
(the ledger keeps a high-water mark per object) through the field mapping at
`METERLINE_SALESFORCE_MAPPING`, and stores them as `meterline customers load` stores a
customers file: all or nothing, through the same checks. It runs at 23:30 UTC, half an
hour before `usage_ingest` starts the nightly chain, so the deals closed that day are
subscriptions when `billing_close` runs.

Skipped when `METERLINE_SALESFORCE_MAPPING` or the credentials
(`METERLINE_SALESFORCE_USERNAME`/`_PASSWORD`/`_SECURITY_TOKEN`, or `_INSTANCE_URL` and
`_SESSION_ID`) are not set. Fails without retrying when a record or the mapping is refused
(the log lists each problem by Salesforce record and field; fix them and clear the task);
retries when Salesforce cannot be reached. The sync's time is Salesforce's stamps, not
the run's interval: any run syncs what changed since the last one that stored.

By hand: `meterline customers sync-salesforce [--dry-run]`.
"""


@dag(
    dag_id="salesforce_sync",
    schedule=CronTriggerTimetable("30 23 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "billing", "salesforce"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def salesforce_sync() -> None:
    @task
    def sync() -> dict[str, object]:
        """Sync from Salesforce; skip when not configured, fail at once when refused."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from meterline.jobs.salesforce import configured, sync_salesforce
        from meterline.sources.salesforce import SalesforceRefused

        if not configured():
            raise AirflowSkipException(
                "Salesforce is not configured (METERLINE_SALESFORCE_MAPPING and credentials)"
            )
        try:
            with schema_checked():
                return sync_salesforce().to_json()
        except SalesforceRefused as exc:
            # The same records and mapping are refused again: a person must act.
            raise AirflowFailException(str(exc)) from exc

    sync()


salesforce_sync()
