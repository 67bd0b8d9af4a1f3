"""billing_close: after each usage rollup, close every subscription period that ended
(in its timezone) at least the grace period before the rollup's interval end: rate it
per price version window, apply discounts and minimums, post the lines to its draft
invoice and finalize it. Late usage of finalized periods becomes adjustment lines on
the next open invoice. Re-running posts nothing new. Last, reconcile the months the close
could touch: the run fails on unacknowledged findings of the severity it fails on
(METERLINE_RECONCILE_FAIL_ON, errors by default), which includes a period close could
not bill; and it fails when close held back a period holding a day whose events changed
since that day was rolled up (the message names the days and the command to run). Then
the outbox is delivered to Stripe and every month reconciled against Stripe
(docs/stripe.md); both are skipped when Stripe is not configured. Beside them, every
closed month the reconcile covered is exported to the data lake (METERLINE_EXPORT_URL,
docs/export.md; skipped when it is not set).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from meterline.jobs.dag_defaults import DEFAULT_ARGS, USAGE_ROLLUP, WAREHOUSE_POOL, schema_checked

DOC = """
### billing_close
Triggered by the `usage_rollup` asset. "As of" time: the rollup's data interval end
(carried in the asset event), or `as_of` in the run's conf for a manual run; never the
clock. Closes due periods and posts adjustments for late usage (a period that cannot be
billed, e.g. its plan has no price in its currency, is left unbilled and reported; the
others are billed; a period with a day whose events changed since it was rolled up is
neither posted nor finalized, and fails the run after reconcile, naming the days and the
`meterline rollup --day D` / `meterline backfill` to run), then reconciles every month
whose invoices the close could still change (raw events, rollup, re-rated and posted
lines, invoice totals, unattributed usage, periods due without an invoice). The run
fails, without retrying, on findings of severity error (money differs) that nobody
acknowledged; warnings (usage billed to no one) pass unless
METERLINE_RECONCILE_FAIL_ON=warning.

By hand: `meterline close --as-of 2026-11-04T00:00:00Z` (or `--period 2026-10`), then
`meterline audit reconcile --as-of 2026-11-04T00:00:00Z` and, for a closed month,
`meterline export --period 2026-10 --to URL`; a known finding:
`meterline audit acknowledge FINDING_ID --as-of 2026-11-04T00:00:00Z --reason TEXT`.
"""


@dag(
    dag_id="billing_close",
    schedule=[USAGE_ROLLUP],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["meterline", "billing"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
)
def billing_close() -> None:
    @task
    def resolve_as_of(**context: object) -> str:
        """The logical time of this close: from the run's conf or the triggering rollup."""
        from datetime import datetime

        conf = getattr(context.get("dag_run"), "conf", None) or {}
        if conf.get("as_of"):
            given = str(conf["as_of"])
            # The command line's rule (meterline.cli.options): a time names its offset.
            if datetime.fromisoformat(given.replace("Z", "+00:00")).utcoffset() is None:
                raise ValueError(f"conf as_of {given!r} has no UTC offset: add Z or +HH:MM")
            return given
        events = context.get("triggering_asset_events") or {}
        times = [
            str(event.extra["as_of"])
            for asset_events in events.values()  # type: ignore[attr-defined]
            for event in asset_events
            if event.extra and event.extra.get("as_of")
        ]
        if not times:
            raise ValueError("no as_of: trigger with conf {'as_of': ISO time} or from usage_rollup")
        return max(times)

    @task(pool=WAREHOUSE_POOL)
    def close(as_of: str) -> dict[str, object]:
        """Rate, post and finalize due periods; post adjustments for late usage."""
        from datetime import datetime

        from meterline.jobs.close import close_periods

        with schema_checked():
            return close_periods(datetime.fromisoformat(as_of)).to_json()

    @task(pool=WAREHOUSE_POOL)
    def reconcile(as_of: str, closed: dict[str, object]) -> dict[str, object]:
        """Fail the run on unacknowledged findings at the severity it fails on: every
        month this close could touch, from raw events to rollup to rated and posted lines
        (meterline audit reconcile)."""
        from datetime import datetime

        from airflow.sdk.exceptions import AirflowFailException

        from meterline.audit.reconcile import failure_message, reconcile_after_close
        from meterline.jobs.close import not_rolled_up_message

        moment = datetime.fromisoformat(as_of)
        with schema_checked():
            reports = reconcile_after_close(moment)
        summary: dict[str, object] = {
            "as_of": as_of,
            "closed": closed,
            "months": {r.period: r.summary() for r in reports},
        }
        if not all(r.ok for r in reports):
            # Not a transient failure: retrying cannot make the books balance.
            raise AirflowFailException(failure_message(reports, moment))
        held = not_rolled_up_message(closed)
        if held:
            # A rollup must run first: retrying this run alone reads the same stale days.
            raise AirflowFailException(held)
        return summary

    @task
    def deliver(summary: dict[str, Any]) -> dict[str, Any]:
        """Deliver the outbox to Stripe (finalized and voided invoices, adjustment
        lines), exactly once in effect; skipped when Stripe is not configured (the
        events wait in the outbox). Fails when an event is parked or a delivery failed
        (retried: a failed delivery backs off and is sent again)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from meterline.jobs.deliver import deliver_or_skip

        report = deliver_or_skip()
        if report is None:
            raise AirflowSkipException(
                "Stripe is not configured (METERLINE_STRIPE_API_KEY or the stripe_default"
                " Connection): the outbox keeps the events"
            )
        message = "; ".join([report.summary(), *report.errors[:5]])
        if report.parked or report.parked_total:
            # A parked event waits for a person: retrying this task cannot help.
            raise AirflowFailException(message)
        if not report.ok:
            raise RuntimeError(message)  # retried: the failed deliveries back off
        return {"months": sorted(summary.get("months") or {}), **report.to_json()}

    @task
    def stripe_reconcile(delivered: dict[str, Any]) -> dict[str, Any]:
        """Compare every month the close touched with Stripe, line by line; fail on any
        difference (meterline stripe reconcile)."""
        from airflow.sdk.exceptions import AirflowFailException

        from meterline.audit.stripe import reconcile_stripe_months

        months = [str(m) for m in delivered.get("months") or []]
        reports = reconcile_stripe_months(months)
        bad = [r for r in reports if not r.ok]
        if bad:
            raise AirflowFailException(
                "; ".join(
                    f"{r.summary()}: "
                    + ", ".join(f"invoice {d.invoice_id} {d.what}" for d in r.differences[:5])
                    for r in bad
                )
            )
        return {r.period: r.to_json() for r in reports}

    @task(pool=WAREHOUSE_POOL)
    def export(summary: dict[str, Any]) -> dict[str, Any]:
        """Export every closed month the reconcile covered to the data lake, as Parquet
        (METERLINE_EXPORT_URL; meterline export). A month not closed yet is listed, not
        an error; an unchanged month writes nothing. Skipped when the URL is not set."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from meterline.jobs.export import export_after_close
        from meterline.sinks import PermanentSinkError

        months = sorted(summary.get("months") or {})
        try:
            with schema_checked():
                reports = export_after_close(months)
        except PermanentSinkError as exc:
            # A destination that cannot be written: retrying cannot help.
            raise AirflowFailException(str(exc)) from exc
        if reports is None:
            raise AirflowSkipException("METERLINE_EXPORT_URL is not set: nothing is exported")
        return {
            "months": months,
            "exports": [r if isinstance(r, str) else r.to_json() for r in reports],
        }

    as_of = resolve_as_of()
    reconciled = reconcile(as_of, close(as_of))
    stripe_reconcile(deliver(reconciled))
    export(reconciled)


billing_close()
