"""One generation, day by day: the day's valid events, less those held back for the late
file, with the day's re-sends and malformed rows placed among them; then the late file,
the truth file and, last, the manifest (a folder without it is an interrupted run)."""

from __future__ import annotations

import json

import numpy as np

from meterline.demo.synthetic.config import (
    METERS,
    S_PLACEMENT,
    GeneratorConfig,
    ProgressFn,
    epoch_day,
    from_epoch_day,
    stream,
)
from meterline.demo.synthetic.customers import make_population, read_catalog_shape, write_customers
from meterline.demo.synthetic.events import DayPlan, EventModel, Rows
from meterline.demo.synthetic.faults import (
    Malformed,
    Selection,
    conflicting,
    malformed_arrays,
    plan_malformed,
    select,
)
from meterline.demo.synthetic.files import EventWriter, compact_json, prepare_out
from meterline.demo.synthetic.manifest import FileCounts, Manifest, MeterTotal


def generate(config: GeneratorConfig, progress: ProgressFn | None = None) -> Manifest:
    """Write the synthetic data set described by `config`; return its manifest.

    Raises FileExistsError when `config.out` holds generated data and `overwrite` is
    off, ValueError when the messiness needs more events than exist."""
    return _Generator(config, progress).run()


class _Generator:
    def __init__(self, cfg: GeneratorConfig, progress: ProgressFn | None) -> None:
        self.cfg = cfg
        catalog = read_catalog_shape(cfg.catalog_path)
        self.pop = make_population(cfg, catalog)
        self.catalog = catalog
        self.events = EventModel(cfg, catalog, self.pop)
        self.writer = EventWriter(
            cfg,
            self.pop.ids,
            [compact_json(p) for p in self.events.property_values()],
            progress,
        )
        n_c = cfg.customers
        # Per (daily or late, meter, customer): valid events and their value sums.
        self.truth_events = np.zeros((2, len(METERS), n_c), dtype=np.int64)
        self.truth_values = np.zeros((2, len(METERS), n_c), dtype=np.int64)
        # Re-sends of a day that go into the next day's file, and how many conflict.
        self.carry = Rows.empty()
        self.carry_conflicts = 0
        self.late_parts: list[Rows] = []
        self.late_dup_parts: list[Rows] = []

    def run(self) -> Manifest:
        cfg = self.cfg
        prepare_out(cfg)
        plans = self.events.plan_days()
        selections, total_valid = select(cfg, plans)
        malformed_rows = plan_malformed(cfg, self.catalog, self.pop.ids, total_valid)
        self.writer.rows_total = (
            total_valid
            + sum(len(s.dup) + len(s.conflict) + len(s.late_dup) for s in selections)
            + sum(len(m) for m in malformed_rows)
        )
        write_customers(cfg.out / "customers.jsonl", self.pop)

        files: list[str] = []
        file_stats: dict[str, FileCounts] = {}
        daily = FileCounts()
        for d, (plan, sel) in enumerate(zip(plans, selections, strict=True)):
            mal = malformed_arrays(malformed_rows[d]) if malformed_rows[d] else None
            rel = f"events/{from_epoch_day(epoch_day(cfg.start) + d).isoformat()}.{self.writer.ext}"
            file_stats[rel] = self._day_file(d, plan, sel, mal, rel)
            files.append(rel)
            daily.add(file_stats[rel])

        late, late_files = self._late_file()
        self.writer.write_truth(self.truth_events, self.truth_values)
        manifest = Manifest(
            seed=cfg.seed,
            customers=cfg.customers,
            start=cfg.start,
            days=cfg.days,
            format=cfg.format,
            options={
                "duplicates": cfg.duplicates,
                "late": cfg.late,
                "malformed": cfg.malformed,
                "events_per_day": cfg.events_per_day,
            },
            files=files,
            late_files=late_files,
            daily=daily,
            late=late,
            file_stats=file_stats,
        )
        tmp = cfg.out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(cfg.out / "manifest.json")
        return manifest

    def _day_file(
        self, d: int, plan: DayPlan, sel: Selection, mal: Malformed | None, rel: str
    ) -> FileCounts:
        """Write day `d`'s file: its valid events in time order, except those held back
        for the late file, with re-sends placed after their original (those of the day
        before first) and malformed rows anywhere. Its counts."""
        rows = self.events.day_events(d, plan)
        rng = stream(self.cfg.seed, S_PLACEMENT, d)
        n_base = len(rows)
        kept = np.ones(n_base, dtype=bool)
        kept[sel.late] = False
        self.late_parts.append(rows.take(sel.late))
        self.late_dup_parts.append(rows.take(sel.late_dup))

        dup_same = sel.dup[~sel.dup_next]
        conf_same = sel.conflict[~sel.conflict_next]
        conf_rows = conflicting(rows.take(sel.conflict), rng, self.events.seat_prop_base)
        carry = self.carry
        parts = [rows.take(kept), rows.take(dup_same), conf_rows.take(~sel.conflict_next), carry]
        # Each row goes after the valid row at its slot (-1: before the first).
        slots = [
            np.nonzero(kept)[0],
            rng.integers(dup_same, n_base) if len(dup_same) else np.zeros(0, np.int64),
            rng.integers(conf_same, n_base) if len(conf_same) else np.zeros(0, np.int64),
            rng.integers(-1, n_base, len(carry)),
            rng.integers(-1, n_base, len(mal) if mal else 0),
        ]
        after = [np.zeros(len(parts[0]), np.int64)] + [
            np.ones(len(s), np.int64) for s in slots[1:]
        ]
        slot = np.concatenate(slots).astype(np.int64)
        order = np.lexsort((np.arange(len(slot)), np.concatenate(after), slot)).astype(np.int64)

        stats = FileCounts(
            rows=len(slot),
            valid_events=int(kept.sum()),
            exact_duplicates=len(dup_same) + len(carry) - self.carry_conflicts,
            conflicting_duplicates=len(conf_same) + self.carry_conflicts,
        )
        if mal:
            for reason in mal.reasons:
                stats.malformed[reason] += 1
        stats.totals_by_meter = self._tally(parts[0], late=False)
        self.writer.write(self.cfg.out / rel, Rows.concat(parts), mal, order)

        self.carry = Rows.concat(
            [rows.take(sel.dup[sel.dup_next]), conf_rows.take(sel.conflict_next)]
        )
        self.carry_conflicts = int(sel.conflict_next.sum())
        return stats

    def _late_file(self) -> tuple[FileCounts, list[str]]:
        """Write the late file (the held-back events and some re-sent copies of daily
        ones, in time order); its counts and its name (none when nothing is late)."""
        late = FileCounts()
        moved = Rows.concat(self.late_parts)
        resent = Rows.concat(self.late_dup_parts)
        if not (len(moved) or len(resent)):
            return late, []
        (self.cfg.out / "late").mkdir(exist_ok=True)
        rel = f"late/events-late.{self.writer.ext}"
        all_late = Rows.concat([moved, resent])
        is_copy = np.r_[np.zeros(len(moved), np.int64), np.ones(len(resent), np.int64)]
        order = np.lexsort((all_late.eid, is_copy, all_late.ts)).astype(np.int64)
        self.writer.write(self.cfg.out / rel, all_late, None, order)
        late.rows = len(all_late)
        late.valid_events = len(moved)
        late.exact_duplicates = len(resent)
        late.totals_by_meter = self._tally(moved, late=True)
        return late, [rel]

    def _tally(self, rows: Rows, *, late: bool) -> dict[str, MeterTotal]:
        """Totals by meter of valid events; adds their per-customer counts and value sums
        to the truth (its daily or its late part)."""
        events, values = self.truth_events[int(late)], self.truth_values[int(late)]
        n_c = self.cfg.customers
        totals = {}
        for m, meter in enumerate(METERS):
            is_m = rows.meter == m
            cust, value = rows.cust[is_m], rows.value[is_m]
            events[m] += np.bincount(cust, minlength=n_c)
            # Float weights are exact here: integer sums far below 2**53.
            values[m] += np.rint(np.bincount(cust, weights=value, minlength=n_c)).astype(
                np.int64
            )
            totals[meter] = MeterTotal(int(is_m.sum()), int(value.sum()))
        return totals

