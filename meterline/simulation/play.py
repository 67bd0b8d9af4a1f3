"""Play a world through the real pipeline with the faults of its seed.

The simulated clock (DESIGN.md invariant 7: time comes from the data):
1. `meterline init`, the catalog and the customers files loaded;
2. each UTC day D of the month (and a day either side, for the timezones): at D+1
   01:00 the deliveries due by then are ingested (each file as its own ingest, with
   its delivery time as `ingested_at`), then D is rolled up (the nightly run, which
   also rebuilds earlier days that late events made dirty);
3. the close, two days after the month (every period of the month is due and every
   day rolled up); the outbox delivered to the Stripe stand-in;
4. the late file (events that arrive after their invoices were finalized), the next
   nightly run, a second close six hours later, and delivery again.

Faults (faults.PipelinePlan): one step killed with SIGKILL in a subprocess at a crash
point and retried; a close run twice at once; a step re-run; a backfill over the
rolled-up month; Stripe faults through the fault proxy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from meterline.simulation.catalog import catalog_data
from meterline.simulation.faults import PipelinePlan
from meterline.simulation.steps import run_killable, run_step
from meterline.simulation.world import Delivery, World, next_month

GRACE_HOURS = 2
STRIPE_KEY = "sk_test_meterline_simulator"


@dataclass
class Played:
    """What a run did and saw: the checks' input beside the world and the model."""

    worlds: list[World]
    plan: PipelinePlan
    settings: dict[str, Any]
    as_of_close: datetime
    as_of_late: datetime
    #: per ingest that committed: (file name, its counts)
    ingests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    #: the summary of each close and delivery that completed, in order
    closes: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    #: finalized invoices after the first close: id -> (total_minor, sorted line ids)
    finalized_after_close: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_settings(root: Path, name: str, month: date, stripe_base: str) -> dict[str, Any]:
    """The Settings fields of one run: a warehouse database and a SQLite ledger of its
    own, its catalog file, and the Stripe stand-in (through the fault proxy)."""
    return {
        "warehouse_url": f"chdb://{root / 'warehouse'}?database={name}",
        "ledger_url": f"sqlite:///{root / name / 'ledger.db'}",
        "catalog_path": str(root / name / "catalog.yaml"),
        "billing_go_live": (month - timedelta(days=1)).isoformat(),
        "finalize_grace_hours": GRACE_HOURS,
        "max_event_age_days": 3650,
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": stripe_base,
        "stripe_timeout_s": 1.5,
        "stripe_request_attempts": 4,
        "stripe_concurrency": 2,
        "outbox_lease_seconds": 1,
    }


def rollup_days(month: date) -> list[date]:
    first = month - timedelta(days=1)
    last = next_month(month) + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def merged_deliveries(worlds: Sequence[World]) -> list[Delivery]:
    """The worlds' deliveries of one moment as one file (a nightly export holds every
    customer's events), in delivery order; the late file last."""
    groups: dict[tuple[bool, datetime], list[Delivery]] = {}
    for world in worlds:
        for d in world.deliveries:
            groups.setdefault((d.after_close, d.at), []).append(d)
    return [
        Delivery(
            group[0].name,
            at,
            tuple(row for d in group for row in d.rows),
            accepted=sum(d.accepted for d in group),
            duplicates=sum(d.duplicates for d in group),
            rejected=sum(d.rejected for d in group),
            after_close=after_close,
        )
        for (after_close, at), group in sorted(groups.items())
    ]


class Player:
    def __init__(
        self,
        worlds: Sequence[World],
        plan: PipelinePlan,
        root: Path,
        name: str,
        stripe_base: str,
        on_step: Callable[[str], None] | None = None,
    ):
        self.on_step = on_step or (lambda _detail: None)
        self.worlds = list(worlds)
        self.month = worlds[0].month
        self.plan = plan
        self.folder = root / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = run_settings(root, name, self.month, stripe_base)
        self.deliveries = merged_deliveries(worlds)
        self.counts: dict[str, int] = {}
        self.timing: dict[str, float] = {}
        days = rollup_days(self.month)
        close_at = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
        self.played = Played(
            self.worlds,
            plan,
            self.settings,
            as_of_close=close_at + timedelta(hours=3 + GRACE_HOURS),
            as_of_late=close_at + timedelta(hours=9 + GRACE_HOURS),
        )

    # --- steps ---------------------------------------------------------------------

    def step(self, kind: str, **args: Any) -> dict[str, Any]:
        """Run a step; the one the plan kills dies in a subprocess first, then is retried
        here (as a rescheduled task would be)."""
        step = {"kind": kind, "settings": self.settings, **args}
        self.on_step(" ".join([kind, *(str(v) for v in args.values() if isinstance(v, str))]))
        nth = self.counts.get(kind, 0)
        self.counts[kind] = nth + 1
        kill = next((k for k in self.plan.kills if (k.step, k.nth) == (kind, nth)), None)
        if kill is not None:
            code = run_killable(step, kill.point)
            self.played.kills.append(
                f"{kind}#{nth} at {kill.point}: " + ("killed" if code else "point not reached")
            )
            if kind == "deliver" and code:
                time.sleep(self.settings["outbox_lease_seconds"] + 0.2)  # the lease runs out
        t0 = time.perf_counter()
        overlap = None
        if "overlap" in self.plan.faults and kind in ("close", "rollup") and nth == 0:
            overlap = _Beside(step)  # the same run, started twice at once
        result = run_step(step)
        if overlap is not None:
            overlap.join()
        self.timing[kind] = self.timing.get(kind, 0.0) + time.perf_counter() - t0
        if kind == "close":
            self.played.closes.append(result)
        elif kind == "deliver":
            self.played.deliveries.append(result)
        if "rerun" in self.plan.faults and kind in ("close", "rollup") and nth == 0:
            run_step(step)  # a succeeded task run again gives the same state
        return result

    def ingest(self, name: str, at: datetime) -> None:
        summary = self.step("ingest", paths=[str(self.folder / name)], at=at.isoformat())
        self.played.ingests.append((name, summary))

    def close(self, as_of: datetime) -> None:
        self.step("close", as_of=as_of.isoformat())

    # --- the run ---------------------------------------------------------------------

    def setup(self) -> None:
        from meterline.jobs.catalog import load_catalog_file
        from meterline.jobs.init import init_schemas
        from meterline.jobs.ledger import load_customers
        from meterline.simulation.steps import config_of

        config = config_of({"settings": self.settings})
        (self.folder / "catalog.yaml").write_text(
            yaml.safe_dump(catalog_data(self.worlds), sort_keys=False)
        )
        (self.folder / "customers.jsonl").write_text(
            "".join(json.dumps(c.row()) + "\n" for w in self.worlds for c in w.customers)
        )
        for d in self.deliveries:
            (self.folder / d.name).write_text("\n".join(d.rows) + "\n")
        init_schemas(config)
        load_catalog_file(self.folder / "catalog.yaml", config=config)
        load_customers(self.folder / "customers.jsonl", config=config)

    def run(self) -> Played:
        played = self.played
        self.setup()
        pending = [d for d in self.deliveries if not d.after_close]
        days = rollup_days(self.month)
        for day in days:
            nightly = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
            nightly += timedelta(hours=1)
            while pending and pending[0].at <= nightly:
                delivery = pending.pop(0)
                self.ingest(delivery.name, delivery.at)
            self.step("rollup", day=day.isoformat())
        for delivery in pending:  # nothing is due after the last night, but never drop one
            self.ingest(delivery.name, delivery.at)
        if "backfill" in self.plan.faults:
            self.step("backfill", first=days[0].isoformat(), last=days[-1].isoformat())
        self.close(played.as_of_close)
        played.finalized_after_close = finalized_invoices(self.settings)
        self.step("deliver")
        late = [d for d in self.deliveries if d.after_close]
        late_at = played.as_of_close + timedelta(hours=1)
        for delivery in late:
            self.ingest(delivery.name, late_at)
        self.step("rollup", day=late_at.date().isoformat())
        self.close(played.as_of_late)
        self.step("deliver")
        played.notes.append(", ".join(f"{k} {v:.1f}s" for k, v in self.timing.items()))
        return played


class _Beside(threading.Thread):
    """A step run in a thread beside the same step: an overlapping task instance.
    `join` re-raises what it raised."""

    def __init__(self, step: dict[str, Any]):
        super().__init__(name="overlapping-step")
        self.step = step
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            run_step(self.step)
        except BaseException as exc:  # re-raised by join: the run fails with it
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def finalized_invoices(settings: dict[str, Any]) -> dict[int, tuple[int, tuple[int, ...]]]:
    """Finalized invoices of the ledger: id -> (total_minor, its line ids)."""
    from sqlalchemy import select

    from billing.models import Invoice
    from meterline.connections import ledger_session
    from meterline.settings import load_settings

    with ledger_session(load_settings(**settings)) as session:
        found = session.scalars(select(Invoice).where(Invoice.status == "finalized"))
        return {
            inv.id: (inv.total_minor, tuple(sorted(line.id for line in inv.lines))) for inv in found
        }
