"""The tables of the data-lake export: columns, primary keys, money, and the Redshift DDL
made from them (meterline.sinks.lake.redshift).

Every table has the same frame around its own columns: ``period`` (the month YYYY-MM
the row belongs to) and the natural key first (together the primary key), then the
table's columns, ``row_version`` (the export run that wrote the row: docs/export.md)
and ``deleted`` (a tombstone: the month no longer has the key). A tombstone carries its
key and version and ``deleted = true``; its other columns are null.

Money leaves as integers in minor units with the ISO 4217 currency code and exponent
beside it (``total_minor`` 12345, ``currency`` USD, ``currency_exponent`` 2 is USD
123.45): the ledger's own representation, exact, and the same for JPY (exponent 0) and
KWD (3) in one column, which a decimal column of one fixed scale cannot be. Quantities
are decimal(38, 9), the warehouse's own type; unit prices and unrounded amounts
decimal(38, 18). A value a column cannot hold exactly fails the export (pyarrow refuses
to round), never a rounded row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

#: Raised when a column is added, removed, renamed or changes type or meaning; readers
#: check it in the manifest. 1: the first layout.
SCHEMA_VERSION = 1

QUANTITY = pa.decimal128(38, 9)
PRECISE = pa.decimal128(38, 18)
INSTANT = pa.timestamp("us", tz="UTC")
#: A text column's limit in Redshift (VARCHAR(65535) is the longest it has, in bytes).
REDSHIFT_TEXT = "VARCHAR(65535)"


@dataclass(frozen=True)
class Column:
    """One column: its name, Arrow type, Redshift type, and what it holds."""

    name: str
    type: pa.DataType
    redshift: str
    doc: str


@dataclass(frozen=True)
class Table:
    """One exported table. ``natural_key``: the columns that identify a row within a
    month (also in ``columns``); the primary key, ``key``, is the month and those.
    ``money``: the integer minor-unit columns the manifest totals per currency (and per
    ``group``, when set)."""

    name: str
    doc: str
    natural_key: tuple[str, ...]
    columns: tuple[Column, ...]
    money: tuple[str, ...] = ()
    group: str | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """The primary key: ``period`` and the natural key. A month is exported whole,
        so versions and tombstones are per month: a key can never be deleted by another
        month's export."""
        return ("period", *self.natural_key)

    @property
    def frame(self) -> tuple[Column, ...]:
        """Every column in file order: period, the natural key, the table's own columns,
        row_version, deleted."""
        own = {c.name: c for c in self.columns}
        keys = tuple(own[k] for k in self.natural_key)
        rest = tuple(c for c in self.columns if c.name not in self.natural_key)
        return (PERIOD, *keys, *rest, ROW_VERSION, DELETED)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(c.name, c.type, nullable=c.name not in ("row_version", "deleted"))
                for c in self.frame
            ]
        )

    def column(self, name: str) -> Column:
        for c in self.frame:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


PERIOD = Column("period", pa.string(), "CHAR(7)", "the month the row belongs to, YYYY-MM")
ROW_VERSION = Column(
    "row_version",
    pa.int64(),
    "BIGINT NOT NULL",
    "the export run that wrote the row; a later version of a key replaces an earlier one",
)
DELETED = Column(
    "deleted",
    pa.bool_(),
    "BOOLEAN NOT NULL",
    "a tombstone: the month no longer has the key (its other columns are null)",
)


def _text(name: str, doc: str, length: int | None = None) -> Column:
    return Column(name, pa.string(), f"VARCHAR({length})" if length else REDSHIFT_TEXT, doc)


def _int(name: str, doc: str) -> Column:
    return Column(name, pa.int64(), "BIGINT", doc)


def _instant(name: str, doc: str) -> Column:
    return Column(name, INSTANT, "TIMESTAMPTZ", doc)


CURRENCY = (
    _text("currency", "ISO 4217 code", 3),
    Column(
        "currency_exponent",
        pa.int16(),
        "SMALLINT",
        "ISO 4217 exponent: 10^exponent minor units make a major unit",
    ),
)

INVOICES = Table(
    "invoices",
    "Invoices whose billing period starts in the month (local time), every status.",
    natural_key=("invoice_id",),
    columns=(
        _int("invoice_id", "the ledger's invoice id (never reused)"),
        _text("customer_id", "our customer id", 64),
        _text("subscription_id", "our subscription id", 64),
        _text("status", "finalized or void (a month with drafts is not exported)", 16),
        *CURRENCY,
        _instant("period_start", "billing period start (UTC)"),
        _instant("period_end", "billing period end, exclusive (UTC)"),
        Column("period_start_local", pa.date32(), "DATE", "the local date the period starts on"),
        _int("subtotal_minor", "usage, flat and minimum lines, minor units"),
        _int("discount_minor", "discount and credit lines, minor units (negative)"),
        _int("adjustment_minor", "adjustment lines, minor units"),
        _int("total_minor", "the invoice total: the sum of its lines, minor units"),
        Column("line_count", pa.int32(), "INTEGER", "lines on the invoice"),
        _instant("finalized_at", "the logical time of the close that finalized it"),
        _instant("voided_at", "when it was voided, if it was"),
        _int("reissue_of_id", "the void invoice this one re-issues"),
    ),
    money=("subtotal_minor", "discount_minor", "adjustment_minor", "total_minor"),
    group="status",
)

INVOICE_LINES = Table(
    "invoice_lines",
    "The lines of those invoices (an adjustment line corrects another period's line).",
    natural_key=("line_id",),
    columns=(
        _int("line_id", "the ledger's line id (never reused)"),
        _int("invoice_id", "its invoice"),
        _text("customer_id", "our customer id", 64),
        _text("subscription_id", "our subscription id", 64),
        _text("idempotency_key", "the line's deterministic posting key", 400),
        _text("kind", "usage, flat, minimum_true_up, discount, adjustment or credit", 20),
        _text("price_id", "the catalog price", 64),
        _text("price_version", "the price version that rated it", 64),
        _text("meter", "the meter of a usage line", 64),
        _text("dimension_group", "the dimension values a price counts (seat_type=advanced)", 200),
        _text("description", "the line's text"),
        Column("quantity", QUANTITY, "DECIMAL(38,9)", "billed quantity"),
        Column("unit_amount", PRECISE, "DECIMAL(38,18)", "unit price, major units"),
        *CURRENCY,
        _int("amount_minor", "the line's amount, rounded once, minor units"),
        Column("amount_precise", PRECISE, "DECIMAL(38,18)", "unrounded, major units"),
        _instant("service_period_start", "the period the line charges for (UTC)"),
        _instant("service_period_end", "its end, exclusive (UTC)"),
        _int("adjusts_line_id", "the line an adjustment corrects"),
        _text("credit_grant_id", "the grant a credit line draws on", 64),
        _int("rating_run_id", "the rating run that produced it"),
    ),
    money=("amount_minor",),
    group="kind",
)

DAILY_USAGE = Table(
    "daily_usage",
    "Per subscription, local day of the month's billing periods, meter and dimensions: the"
    " day's quantity from the hourly rollup, by the meter's aggregation (the rating's own"
    " code). Sum, count and time_weighted days add up to the period's quantity; max,"
    " unique_count and latest days do not (the period's is their max, distinct count,"
    " last).",
    natural_key=("subscription_id", "day", "meter", "dimensions"),
    columns=(
        _text("subscription_id", "our subscription id", 64),
        Column("day", pa.date32(), "DATE", "the local day, in the subscription's timezone"),
        _text("meter", "the meter", 64),
        _text("dimensions", "the meter's dimension values, JSON with sorted keys", 1000),
        _text("customer_id", "our customer id", 64),
        _int("invoice_id", "the live invoice whose period holds the day"),
        _text("timezone", "the subscription's timezone", 64),
        _text("aggregation", "the meter's aggregation (sum, count, max, ...)", 16),
        _int("events", "events of the day"),
        Column("quantity", QUANTITY, "DECIMAL(38,9)", "the day's quantity"),
    ),
)

CREDIT_ENTRIES = Table(
    "credit_entries",
    "Credit ledger entries (double entry, append-only): consumption and its reversal in"
    " the month of the invoice they fund, the others in the local month they take effect.",
    natural_key=("entry_id",),
    columns=(
        _int("entry_id", "the ledger's entry id"),
        _text("grant_id", "the grant's own id", 64),
        _text("customer_id", "our customer id", 64),
        _text("kind", "grant, consume, reverse, expire, void or rollover", 16),
        _text("from_account", "the account the value leaves", 16),
        _text("to_account", "the account it enters", 16),
        Column(
            "amount",
            QUANTITY,
            "DECIMAL(38,9)",
            "in the grant's unit: currency (major units) or meter",
        ),
        _text("unit", "the grant's unit: its currency, or its meter", 64),
        Column("available_after", QUANTITY, "DECIMAL(38,9)", "the grant's balance after the entry"),
        *CURRENCY,
        _int("value_minor", "consume and reverse: the money they are worth, minor units"),
        _int("invoice_line_id", "consume and reverse: the line they fund"),
        _int("invoice_id", "that line's invoice"),
        _int("reverses_entry_id", "the entry a reverse undoes"),
        _instant("effective_at", "the logical time of the movement"),
        _text("idempotency_key", "its deterministic key", 400),
        _text("note", "what happened, in words"),
    ),
    money=("value_minor",),
    group="kind",
)

REJECTED_EVENTS = Table(
    "rejected_events",
    "Usage rows ingested in the month (UTC) and rejected, with the reason and the raw row.",
    natural_key=("ingest_id", "source", "source_line"),
    columns=(
        _text("ingest_id", "the ingest that read it", 64),
        _text("source", "the file (or batch) it came from", 1000),
        _int("source_line", "its physical line (Parquet: row number)"),
        _instant("ingested_at", "the ingest's logical time"),
        _text("event_id", "as sent, when readable", 1000),
        _text("customer_id", "as sent, when readable", 1000),
        _text("meter", "as sent, when readable", 1000),
        _text("reason", "the rejection reason (README, Rejection reasons)", 32),
        _text("detail", "what is wrong, in words"),
        _text("raw_row", "the row as sent, cut to 65,535 UTF-8 bytes (raw_bytes says when)"),
        _int("raw_bytes", "the length of the row as sent, in UTF-8 bytes"),
    ),
)

RECONCILE_FINDINGS = Table(
    "reconcile_findings",
    "What `meterline audit reconcile --period` finds for the month, judged.",
    natural_key=("finding_id",),
    columns=(
        _text("finding_id", "the finding's stable id (f-...)", 16),
        _text("check_name", "the check that found it", 64),
        _text("severity", "error or warning", 8),
        _text("customer_id", "the customer it is about", 64),
        _int("invoice_id", "the invoice it is about"),
        _text("line_key", "the line key it is about", 400),
        _text("detail", "what it found, in words"),
        Column("fails", pa.bool_(), "BOOLEAN", "it fails the run (severe, unacknowledged)"),
        _text("acknowledged_by", "who acknowledged it", 200),
        _instant("acknowledged_at", "when"),
        _text("acknowledged_reason", "why"),
        _text("data", "the values it compared, JSON"),
    ),
)

REVREC_SCHEDULE = Table(
    "revrec_schedule",
    "Revenue recognized on each day of the month (local days), per source: an invoice"
    " line, or a paid commitment's release or breakage (docs/revrec.md).",
    natural_key=("schedule_key",),
    columns=(
        _text("schedule_key", "the row's stable key (its source's key and the day)", 600),
        _text("customer_id", "our customer id", 64),
        Column("day", pa.date32(), "DATE", "the day recognized, in the customer's timezone"),
        *CURRENCY,
        _int("amount_minor", "revenue recognized that day, minor units"),
        _text("category", "revenue, discount, credit, commit_release or breakage", 16),
        _text("rule", "the rule that placed it on the day (docs/revrec.md)", 32),
        _text("product", "the product line: the line's price, or breakage", 64),
        _text("line_key", "the invoice line's idempotency key", 400),
        _int("line_id", "the invoice line"),
        _int("invoice_id", "its invoice"),
        _text("grant_id", "the paid commitment released or broken", 64),
        Column("billed_on", pa.date32(), "DATE", "the day its source was billed (null: not yet)"),
    ),
    money=("amount_minor",),
    group="category",
)

#: Every table, in the order files are written (the manifest last of all).
TABLES: tuple[Table, ...] = (
    INVOICES,
    INVOICE_LINES,
    DAILY_USAGE,
    CREDIT_ENTRIES,
    REJECTED_EVENTS,
    RECONCILE_FINDINGS,
    REVREC_SCHEDULE,
)


def table(name: str, tables: Sequence[Table] = TABLES) -> Table:
    for t in tables:
        if t.name == name:
            return t
    raise KeyError(f"no exported table {name!r}")
