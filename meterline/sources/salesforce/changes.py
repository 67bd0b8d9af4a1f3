"""Which records a sync reads: those modified since each object's high-water mark, and
what they need to become whole rows.

A row is an account and one of its subscriptions, so:

1. the accounts modified since the accounts' mark, and the subscriptions modified since
   the subscriptions' mark (everything when a mark is None: the first sync, a changed
   mapping);
2. every subscription of an account read in 1 (a changed name or currency is each of
   its subscriptions' rows), by the subscriptions' account lookup: when the
   subscriptions were read from a mark (read from the start, they are all there);
3. the account of every subscription read in 1 or 2 that 1 did not read, by Id, with the
   accounts' ``where``, when the accounts were read from a mark (a subscription of an
   account the mapping does not read is a problem, reported by records.build_rows).

Each object's new high-water mark is the latest stamp among the records step 1 read for
it (never those of steps 2 and 3: a record modified while the sync ran may be read by
them without the others modified at that moment, and step 1 of the next sync reads
them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from meterline.sources.salesforce import soql
from meterline.sources.salesforce.errors import SalesforceRefused
from meterline.sources.salesforce.mapping import SalesforceMapping, value_at
from meterline.sources.salesforce.records import Record, high_water


class Reader(Protocol):
    """What reading needs of a connection (client.SalesforceReader)."""

    def query(self, soql: str, what: str) -> list[dict[str, Any]]: ...


@dataclass
class Changes:
    """The records a sync stores, and what it read them from."""

    accounts: dict[str, Record] = field(default_factory=dict)
    subscriptions: dict[str, Record] = field(default_factory=dict)
    #: Records read by step 1, per object (accounts, subscriptions).
    modified: tuple[int, int] = (0, 0)
    #: The latest stamp step 1 read, per object (None: it read nothing).
    accounts_high_water: datetime | None = None
    subscriptions_high_water: datetime | None = None


def read_changes(
    reader: Reader,
    mapping: SalesforceMapping,
    accounts_since: datetime | None,
    subscriptions_since: datetime | None,
) -> Changes:
    """Read the records of a sync (the module docstring). Raises SalesforceRefused or
    SalesforceUnavailable (the reader's), and SalesforceRefused for a record whose
    modification stamp (the mapping's ``modified``) is empty or not a dateTime."""
    acc_map, sub_map = mapping.accounts, mapping.subscriptions
    accounts = reader.query(soql.modified_since(acc_map, accounts_since), acc_map.object)
    subscriptions = reader.query(soql.modified_since(sub_map, subscriptions_since), sub_map.object)
    out = Changes(
        accounts={str(r["Id"]): r for r in accounts},
        subscriptions={str(r["Id"]): r for r in subscriptions},
    )
    out.modified = (len(out.accounts), len(out.subscriptions))
    for side, records, key in (
        ("accounts", accounts, acc_map.modified),
        ("subscriptions", subscriptions, sub_map.modified),
    ):
        try:
            stamp = high_water(records, key)
        except ValueError as exc:
            # SystemModstamp is on every record: a mapping's other field may be empty,
            # or a date: the sync cannot know what it read.
            raise SalesforceRefused(
                f"{side}.modified: {exc}: the sync is incremental by this field, so every"
                " record needs it as a dateTime: use SystemModstamp or LastModifiedDate"
                " (docs/salesforce.md)"
            ) from None
        if side == "accounts":
            out.accounts_high_water = stamp
        else:
            out.subscriptions_high_water = stamp
    if subscriptions_since is not None and out.accounts:
        for query in soql.having(sub_map, sub_map.account, out.accounts):
            for record in reader.query(query, sub_map.object):
                out.subscriptions.setdefault(str(record["Id"]), record)
    if accounts_since is not None:
        # Ids only: anything else is the subscription's problem (records.build_rows).
        lookups = [value_at(r, sub_map.account) for r in out.subscriptions.values()]
        wanted = {v for v in lookups if isinstance(v, str) and v} - set(out.accounts)
        for query in soql.having(acc_map, "Id", wanted):
            for record in reader.query(query, acc_map.object):
                out.accounts.setdefault(str(record["Id"]), record)
    return out
