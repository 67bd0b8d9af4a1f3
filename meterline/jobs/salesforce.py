"""`meterline customers sync-salesforce` (and the salesforce_sync DAG's task): customers,
subscriptions and discounts from Salesforce into the ledger, incremental, idempotent,
all or nothing (docs/salesforce.md).

1. The mapping file is read and checked (meterline.sources.salesforce.mapping).
2. The ledger's cursors say where the last sync stopped, per object: records modified at
   or after its high-water mark less the mapping's lookback are read (all of them on the
   first sync, after the mapping changed, or from ``--since``).
3. Salesforce is read (meterline.sources.salesforce.changes), the records become
   customers-file rows (records.build_rows) and go through the customers file's own
   checks and store, billing.customers.load_customers, in one ledger transaction with
   the advanced cursors: any problem refuses the whole sync (RecordsInvalid, each problem
   naming the Salesforce record and field), and nothing is stored.

Unchanged records change nothing (the load writes only what differs), so a sync that
finds no change writes nothing, its cursors included. ``dry_run`` does all of it and
rolls the transaction back: the same checks, the diff, nothing kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from billing.customers import CustomersFileInvalid, CustomersLoadResult, load_customers
from billing.customers.diff import RecordChange, diff, snapshot
from billing.customers.read import parse_records
from billing.sync_cursors import Cursor, advance_cursor, read_cursors
from meterline.connections import ledger_session
from meterline.settings import Settings, settings
from meterline.sources.salesforce.changes import read_changes
from meterline.sources.salesforce.client import SalesforceReader, salesforce_config
from meterline.sources.salesforce.errors import (
    RecordsInvalid,
    SalesforceNotConfigured,
    SalesforceRefused,
)
from meterline.sources.salesforce.mapping import SalesforceMapping, read_mapping
from meterline.sources.salesforce.records import Ref, build_rows, keep_stored, translate

#: The ledger's name of this source (sync_cursors.source).
SOURCE = "salesforce"
STATUSES = ("added", "changed", "unchanged")


@dataclass
class ObjectRead:
    """One object of a sync: where its read started (None: every record), how many
    records it read as modified, and its cursor before and after (None: none yet)."""

    name: str
    since: datetime | None
    modified: int = 0
    before: Cursor | None = None
    after: Cursor | None = None


@dataclass
class SyncReport:
    """What a sync read and did. ``customers`` and ``subscriptions`` are each record's
    change against the ledger (added, changed with its fields, unchanged); ``refs`` names
    the Salesforce record of each (customer or subscription external id -> record);
    ``result`` is the load's counts (None: nothing to store)."""

    mapping: str
    dry_run: bool
    accounts: ObjectRead
    subscriptions: ObjectRead
    full: bool
    requests: int = 0
    customers: list[RecordChange] = field(default_factory=list)
    subscription_changes: list[RecordChange] = field(default_factory=list)
    refs: dict[tuple[str, str], Ref] = field(default_factory=dict)
    without_subscription: list[Ref] = field(default_factory=list)
    result: CustomersLoadResult | None = None

    @property
    def changed(self) -> bool:
        return self.result is not None and self.result.changed

    def to_json(self) -> dict[str, Any]:
        """The counts and the high-water marks, for a DAG task's result (XCom)."""

        def counts(changes: list[RecordChange]) -> dict[str, int]:
            return {s: sum(1 for c in changes if c.status == s) for s in STATUSES}

        def mark(read: ObjectRead) -> dict[str, Any]:
            return {
                "object": read.name,
                "since": read.since.isoformat() if read.since else None,
                "modified": read.modified,
                "high_water": read.after.high_water.isoformat() if read.after else None,
            }

        return {
            "dry_run": self.dry_run,
            "full": self.full,
            "requests": self.requests,
            "accounts": mark(self.accounts),
            "subscriptions": mark(self.subscriptions),
            "customers": counts(self.customers),
            "subscription_changes": counts(self.subscription_changes),
            "without_subscription": len(self.without_subscription),
            "changed": self.changed,
        }


def mapping_path(given: Path | None, config: Settings | None = None) -> Path:
    """The mapping file: ``given``, else METERLINE_SALESFORCE_MAPPING. Raises
    SalesforceRefused when neither names one."""
    path = given or (config or settings()).salesforce_mapping
    if path is None:
        raise SalesforceRefused(
            "no Salesforce field mapping: give --mapping FILE or set"
            " METERLINE_SALESFORCE_MAPPING (docs/salesforce.md; an example:"
            " docs/examples/salesforce-cpq.yaml)"
        )
    return Path(path)


def configured(config: Settings | None = None) -> bool:
    """Whether a scheduled sync has what it needs: METERLINE_SALESFORCE_MAPPING and
    credentials (a login or a session). The salesforce_sync DAG skips without them."""
    cfg = config or settings()
    if cfg.salesforce_mapping is None:
        return False
    try:
        salesforce_config(cfg)
    except SalesforceNotConfigured:
        return False
    return True


def _start(
    mapping: SalesforceMapping, cursor: Cursor | None, since: datetime | None
) -> datetime | None:
    if since is not None:
        return since
    if cursor is None or cursor.mapping_digest != mapping.digest:
        return None
    return cursor.high_water - mapping.lookback


def sync_salesforce(
    mapping_file: Path | None = None,
    *,
    dry_run: bool = False,
    since: datetime | None = None,
    config: Settings | None = None,
) -> SyncReport:
    """Sync customers, subscriptions and discounts from Salesforce (the module
    docstring); ``since`` (an aware instant) reads the records modified from then
    instead of from the cursors. Raises MappingInvalid, SalesforceNotConfigured,
    RecordsInvalid, SalesforceRefused (exit code 2), SalesforceUnavailable (4), and the
    ledger's errors (StoreMissing, SchemaNotReady: 2; unreachable: 4)."""
    path = mapping_path(mapping_file, config)
    mapping = read_mapping(path)
    acc_name, sub_name = mapping.accounts.object, mapping.subscriptions.object
    with ledger_session(config) as session:
        cursors = read_cursors(session, SOURCE)
    reader = SalesforceReader(salesforce_config(config))
    accounts = ObjectRead(acc_name, _start(mapping, cursors.get(acc_name), since))
    subs = ObjectRead(sub_name, _start(mapping, cursors.get(sub_name), since))
    accounts.before, subs.before = cursors.get(acc_name), cursors.get(sub_name)
    if accounts.since is None or subs.since is None:
        # A row is an account and a subscription: one read from the start reads both.
        accounts.since = subs.since = None
    changes = read_changes(reader, mapping, accounts.since, subs.since)
    accounts.modified, subs.modified = changes.modified
    report = SyncReport(
        str(path),
        dry_run,
        accounts,
        subs,
        full=accounts.since is None,
        requests=reader.requests,
    )
    rows = build_rows(mapping, changes.accounts, changes.subscriptions.values())
    report.without_subscription = rows.without_subscription
    records = len(changes.accounts) + len(changes.subscriptions)
    with ledger_session(config, write=not dry_run) as session:
        try:
            if rows.records:
                # The customer fields a sync does not give keep what the ledger holds.
                held = [str(r["customer_id"]) for _, r in rows.records if "customer_id" in r]
                keep_stored(rows, mapping, snapshot(session, held, ()).customers)
                parsed = parse_records(rows.records)
                customers = [row.customer_id for _, row in parsed.rows]
                subscriptions = [row.subscription_id for _, row in parsed.rows]
                before = snapshot(session, customers, subscriptions)
                report.result = load_customers(
                    session, parsed.rows, SOURCE, problems=parsed.problems
                )
                after = snapshot(session, customers, subscriptions)
                report.customers, report.subscription_changes = diff(
                    before, after, customers, subscriptions
                )
            if rows.problems:
                raise RecordsInvalid(translate([], rows, mapping), records)
        except CustomersFileInvalid as exc:
            raise RecordsInvalid(translate(exc.found, rows, mapping), records) from None
        for read, high_water in (
            (accounts, changes.accounts_high_water),
            (subs, changes.subscriptions_high_water),
        ):
            read.after = read.before
            # A read from --since under another mapping did not read everything with
            # this one: it leaves that mapping's cursor alone.
            partial = since is not None and (
                read.before is None or read.before.mapping_digest != mapping.digest
            )
            if high_water is not None and not partial:
                read.after = advance_cursor(session, SOURCE, read.name, high_water, mapping.digest)
        if dry_run:
            session.rollback()
    built = dict(rows.records)
    for number, origin in rows.origins.items():
        record = built[number]
        report.refs[("customer", str(record.get("customer_id")))] = origin.account
        report.refs[("subscription", str(record.get("subscription_id")))] = origin.subscription
    return report
