"""Set-based SQL for posting: few statements per thousand periods, on both engines.

PostgreSQL gets array parameters (``unnest``) and COPY; SQLite gets executemany of one
cached statement. Nothing here decides anything: posting.py does, and calls these
inside its transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from billing.charges import REDUCTION_KINDS, SUBTOTAL_KINDS
from billing.errors import LedgerError
from billing.models import Invoice, InvoiceLine, Subscription

INVOICES: Table = Invoice.__table__  # type: ignore[assignment]
LINES: Table = InvoiceLine.__table__  # type: ignore[assignment]
SUBS: Table = Subscription.__table__  # type: ignore[assignment]

#: Keys per IN list: well under SQLite's (32,766) and PostgreSQL's (65,535) bound
#: parameter limits.
IN_CHUNK = 2000
#: Rows per executemany call on SQLite.
SQLITE_ROWS = 8000

Pair = tuple[int, datetime]

#: The largest amount the ledger holds, in minor units, for one line and for each total
#: of an invoice (subtotal, discounts, adjustments, total): the columns are signed 64-bit
#: integers (SQLite INTEGER, PostgreSQL bigint). Checked before anything is written, so
#: no database ever overflows (SQLite would refuse the row, or fail a later sum()).
MAX_AMOUNT_MINOR = 2**63 - 1


class AmountOutOfRange(LedgerError):
    """An amount (a line, or an invoice total its lines would make) is beyond what the
    ledger's columns hold (``MAX_AMOUNT_MINOR`` minor units either way)."""


def in_range(minor: int) -> bool:
    """Whether the ledger can hold ``minor``: ``|minor| <= MAX_AMOUNT_MINOR``."""
    return -MAX_AMOUNT_MINOR <= minor <= MAX_AMOUNT_MINOR


def out_of_range(minor: int, what: str) -> AmountOutOfRange:
    return AmountOutOfRange(
        f"{what} is {minor:,} minor units, beyond the ledger's limit of"
        f" {MAX_AMOUNT_MINOR:,} (signed 64-bit)"
    )


def check_amount(minor: int, what: str) -> None:
    """Raise AmountOutOfRange unless ``|minor| <= MAX_AMOUNT_MINOR``."""
    if not in_range(minor):
        raise out_of_range(minor, what)


def invoice_totals(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """An invoice's totals from its lines' (kind, amount_minor), as refresh_totals
    computes them in SQL."""
    out = {"subtotal_minor": 0, "discount_minor": 0, "adjustment_minor": 0, "total_minor": 0}
    for kind, minor in lines:
        if kind in SUBTOTAL_KINDS:
            out["subtotal_minor"] += minor
        elif kind in REDUCTION_KINDS:
            out["discount_minor"] += minor
        elif kind == "adjustment":
            out["adjustment_minor"] += minor
        out["total_minor"] += minor
    return out


def check_invoice_totals(totals: dict[str, int], what: str | Callable[[], str]) -> None:
    """Raise AmountOutOfRange when a total is beyond the limit; ``what`` names the
    invoice (a callable: the name is only built for the message)."""
    for name, minor in totals.items():
        if not in_range(minor):
            where = what() if callable(what) else what
            raise out_of_range(minor, f"{where}: {name.removesuffix('_minor')}")


class Live(NamedTuple):
    id: int
    status: str


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# The advisory lock every ledger writer takes (class id; the object id is the ledger's
# schema, so ledgers in separate schemas of one database do not wait for each other).
LEDGER_WRITE_LOCK = 0x6D6C6E  # "mln"


def lock_ledger_writes(session: Session) -> None:
    """Queue behind any other ledger writer until this transaction ends.

    Posting, adjustments, finalizing and voiding lock invoice rows and insert under the
    unique live-invoice index; two such transactions over overlapping sets, each cut
    into its own chunks, can wait on each other in a cycle (a PostgreSQL deadlock).
    One transaction-scoped advisory lock taken first makes them run one after the
    other instead: a close is one writer anyway, and a writer that waits loses nothing
    (its work is idempotent). Re-taking it in the same transaction is free. SQLite needs
    nothing: every transaction already holds the database write lock (BEGIN IMMEDIATE).
    """
    if dialect(session) == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:lock, hashtext(current_schema()))"),
            {"lock": LEDGER_WRITE_LOCK},
        )


def chunks(items: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def where_in(session: Session, column: Any, values: list[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``: one bound parameter,
    where a long IN list costs more to parse and plan than to run."""
    if dialect(session) == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def in_chunks(session: Session, values: Iterable[Any]) -> Iterable[list[Any]]:
    """``values`` in slices sized for where_in on this engine."""
    size = PG_ARRAY_ROWS if dialect(session) == "postgresql" else IN_CHUNK
    return chunks(list(values), size)


def pairs_in(pairs: list[Pair]) -> Any:
    """``(invoices.subscription_id, invoices.period_start) IN pairs`` (SQLite; PostgreSQL
    plans a long row-value IN list as a chain of ORs, so it joins unnested arrays)."""
    return tuple_(INVOICES.c.subscription_id, INVOICES.c.period_start).in_(pairs)


def live_invoices(session: Session, pairs: list[Pair], *, lock: bool) -> dict[Pair, Live]:
    """The live (non-void) invoice of each pair that has one; ``lock`` takes row locks.

    Rows are locked in id order, so posters locking overlapping sets queue instead of
    waiting on each other in a cycle. (SQLite ignores FOR UPDATE: its transactions
    already hold the database write lock.)
    """
    found: dict[Pair, Live] = {}
    if dialect(session) == "postgresql":
        sql = _PG_LIVE + (" FOR UPDATE OF i" if lock else "")
        with _pg_cursor(session) as cursor:
            for part in chunks(pairs, PG_ARRAY_ROWS):
                cursor.execute(sql, {"s": [p[0] for p in part], "p": [p[1] for p in part]})
                for inv_id, sub_id, start, status in cursor.fetchall():
                    found[(sub_id, start.astimezone(UTC))] = Live(inv_id, status)
        return found
    for part in chunks(pairs):
        stmt = (
            select(
                INVOICES.c.id,
                INVOICES.c.subscription_id,
                INVOICES.c.period_start,
                INVOICES.c.status,
            )
            .where(pairs_in(part), INVOICES.c.status != "void")
            .order_by(INVOICES.c.id)
        )
        if lock:
            stmt = stmt.with_for_update(of=INVOICES)
        for row in session.execute(stmt).all():
            found[(row.subscription_id, row.period_start)] = Live(row.id, row.status)
    return found


# PostgreSQL statements run on the session's DBAPI connection (same transaction) with
# binary array parameters (%(x)b): psycopg dumps a list of 10,000 datetimes ~7x faster
# in binary than as array text.
PG_ARRAY_ROWS = 10_000
_PG_LIVE = (
    "SELECT i.id, i.subscription_id, i.period_start, i.status FROM invoices i"
    " WHERE (i.subscription_id, i.period_start) IN"
    " (SELECT * FROM unnest(%(s)b::integer[], %(p)b::timestamptz[]))"
    " AND i.status <> 'void' ORDER BY i.id"
)


@contextmanager
def _pg_cursor(session: Session) -> Iterator[Any]:
    """A cursor on the session's DBAPI connection (its transaction). A driver error is
    raised as SQLAlchemy raises it for its own statements (a deadlock or a lost
    connection: sqlalchemy.exc.OperationalError), so retries and the command line's exit
    codes see one kind of error whichever way a statement ran (it escaped raw, as a
    psycopg error: exit code 5 instead of 4, and no retry)."""
    connection = session.connection()
    dbapi: Any = connection.connection.dbapi_connection
    errors = connection.dialect.loaded_dbapi.Error
    try:
        with dbapi.cursor() as cursor:
            yield cursor
    except errors as exc:
        raise DBAPIError.instance(None, None, exc, errors) from exc


def subscription_rows(
    session: Session, external_ids: list[str], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Rows (``columns``, in order) of the subscriptions with these external ids."""
    rows: list[tuple[Any, ...]] = []
    if dialect(session) == "postgresql":
        sql = (
            f"SELECT {', '.join(columns)} FROM subscriptions"
            " WHERE external_id = ANY(%(ids)b::varchar[])"
        )
        with _pg_cursor(session) as cursor:
            for part in chunks(external_ids, PG_ARRAY_ROWS):
                cursor.execute(sql, {"ids": part})
                rows.extend(cursor.fetchall())
        return rows
    cols = [SUBS.c[name] for name in columns]
    for part in chunks(external_ids):
        rows.extend(
            tuple(r) for r in session.execute(select(*cols).where(SUBS.c.external_id.in_(part)))
        )
    return rows


# Columns given per new invoice; the others are constants of a new draft.
_NEW_INVOICE_COLUMNS = (
    "customer_id",
    "subscription_id",
    "period_start",
    "period_end",
    "period_start_local",
    "currency",
    "subtotal_minor",
    "discount_minor",
    "total_minor",
    "line_count",
)
# A period re-posted after its invoice was voided gets a new draft linked to the
# latest void one.
_REISSUE_OF = (
    "(SELECT max(v.id) FROM invoices v WHERE v.subscription_id = u.subscription_id"
    " AND v.period_start = u.period_start AND v.status = 'void')"
)
_LIVE_CONFLICT = "ON CONFLICT (subscription_id, period_start) WHERE status <> 'void' DO NOTHING"


@cache
def _pg_types(table: Table) -> dict[str, str]:
    pg = postgresql.dialect()
    return {col.name: col.type.dialect_impl(pg).compile(dialect=pg) for col in table.columns}


def insert_invoices(session: Session, rows: list[dict[str, Any]]) -> set[Pair]:
    """Insert new draft invoices (totals given), skipping pairs that meanwhile got a live
    invoice from a concurrent poster; return the pairs this call created."""
    if not rows:
        return set()
    for row in rows:
        totals = {k: row[k] for k in ("subtotal_minor", "discount_minor", "total_minor")}
        if not all(in_range(minor) for minor in totals.values()):
            check_invoice_totals(
                totals,
                f"the new invoice of subscription {row['subscription_id']}"
                f" for {row['period_start'].isoformat()}",
            )
    cols = ", ".join(_NEW_INVOICE_COLUMNS)
    picked = ", ".join(f"u.{c}" for c in _NEW_INVOICE_COLUMNS)
    head = (
        f"INSERT INTO invoices ({cols}, status, adjustment_minor, reissue_of_id)"
        f" SELECT {picked}, 'draft', 0, {_REISSUE_OF}"
    )
    created: set[Pair] = set()
    if dialect(session) == "postgresql":
        types = _pg_types(INVOICES)
        arrays = ", ".join(f"%({c})b::{types[c]}[]" for c in _NEW_INVOICE_COLUMNS)
        sql = (
            f"{head} FROM unnest({arrays}) AS u({cols}) {_LIVE_CONFLICT}"
            " RETURNING subscription_id, period_start"
        )
        with _pg_cursor(session) as cursor:
            for part in chunks(rows, PG_ARRAY_ROWS):
                cursor.execute(sql, {c: [r[c] for r in part] for c in _NEW_INVOICE_COLUMNS})
                for sub_id, start in cursor.fetchall():
                    created.add((sub_id, start.astimezone(UTC)))
        return created
    # SQLite: the transaction holds the database write lock (BEGIN IMMEDIATE), so no
    # other poster can have created any of these since the caller looked.
    values = ", ".join(f":{c} AS {c}" for c in _NEW_INVOICE_COLUMNS)
    sqlite_stmt = text(f"{head} FROM (SELECT {values}) AS u WHERE true {_LIVE_CONFLICT}")
    sqlite_stmt = sqlite_stmt.bindparams(
        *(bindparam(c, type_=INVOICES.c[c].type) for c in _NEW_INVOICE_COLUMNS)
    )
    for part in chunks(rows, SQLITE_ROWS):
        session.execute(sqlite_stmt, part)
    created.update((r["subscription_id"], r["period_start"]) for r in rows)
    return created


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Plain INSERT of many rows: PostgreSQL ``INSERT .. SELECT FROM unnest`` with binary
    array parameters (one statement per 10,000 rows), SQLite executemany."""
    if not rows:
        return
    columns = list(rows[0])
    if dialect(session) != "postgresql":
        stmt = insert(table)
        for part in chunks(rows, SQLITE_ROWS):
            session.execute(stmt, part)
        return
    types = _pg_types(table)
    arrays = ", ".join(f"%({c})b::{types[c]}[]" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
    with _pg_cursor(session) as cursor:
        for part in chunks(rows, PG_ARRAY_ROWS):
            cursor.execute(sql, {c: [_copy_value(r[c]) for r in part] for c in columns})


def _copy_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def insert_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert invoice lines: COPY on PostgreSQL (one statement per call, so the
    immutability trigger runs once), executemany on SQLite.

    A row may carry ``_breakdown_json``, its breakdown already serialised (ChargeLine
    keeps its canonical JSON), which COPY sends as is.
    """
    if not rows:
        return
    _check_lines(session, rows)
    columns = [c for c in rows[0] if not c.startswith("_")]
    if dialect(session) != "postgresql":
        _sqlite_insert_lines(session, columns, rows)
        return
    for row in rows:
        if row["service_period_start"].utcoffset() is None:
            raise ValueError("service_period_start must be timezone-aware")
    at = columns.index("breakdown")
    with (
        _pg_cursor(session) as cursor,
        cursor.copy(f"COPY {LINES.name} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = [row[c] for c in columns]
            values[at] = row.get("_breakdown_json") or _copy_value(values[at])
            copy.write_row(values)


def _check_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    """Refuse, before writing, a line or an invoice total beyond MAX_AMOUNT_MINOR: each
    line's amount, and each receiving invoice's totals with its current lines."""
    by_invoice: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        if not in_range(row["amount_minor"]):
            raise out_of_range(row["amount_minor"], f"line {row['idempotency_key']}")
        by_invoice[row["invoice_id"]].append((row["kind"], row["amount_minor"]))
    for part in in_chunks(session, sorted(by_invoice)):
        stmt = select(LINES.c.invoice_id, LINES.c.kind, LINES.c.amount_minor).where(
            where_in(session, LINES.c.invoice_id, part)
        )
        for invoice_id, kind, minor in session.execute(stmt):
            by_invoice[invoice_id].append((kind, minor))
    for invoice_id, lines in by_invoice.items():
        totals = invoice_totals(lines)
        if not all(in_range(minor) for minor in totals.values()):
            check_invoice_totals(totals, f"invoice {invoice_id}")


def _sqlite_insert_lines(session: Session, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """executemany of plain tuples, converted with the columns' own bind processors
    (memoised per value for the instants, which repeat for every line of a period)."""
    bind = session.get_bind()
    processors = {
        c: LINES.c[c].type.dialect_impl(bind.dialect).bind_processor(bind.dialect) for c in columns
    }
    memo: dict[tuple[str, Any], Any] = {}

    def convert(column: str, value: Any) -> Any:
        proc = processors[column]
        if value is None or proc is None:
            return value
        if column.startswith("service_period_"):
            key = (column, value)
            if key not in memo:
                memo[key] = proc(value)
            return memo[key]
        return proc(value)

    at = columns.index("breakdown")
    tuples = []
    for row in rows:
        values = [convert(c, row[c]) if c != "breakdown" else None for c in columns]
        json_text = row.get("_breakdown_json")
        values[at] = json_text if json_text is not None else convert("breakdown", row["breakdown"])
        tuples.append(tuple(values))
    sql = (
        f"INSERT INTO {LINES.name} ({', '.join(columns)})"
        f" VALUES ({', '.join('?' for _ in columns)})"
    )
    connection = session.connection()
    for part in chunks(tuples, SQLITE_ROWS):
        connection.exec_driver_sql(sql, part)


def set_rating_run(session: Session, line_ids: list[int], rating_run_id: int) -> None:
    """Point draft lines at the rating run that re-derived them unchanged."""
    for part in in_chunks(session, sorted(line_ids)):
        session.execute(
            update(LINES)
            .where(where_in(session, LINES.c.id, part))
            .values(rating_run_id=rating_run_id)
        )


def delete_lines(session: Session, ids: list[int]) -> None:
    for part in in_chunks(session, sorted(ids)):
        session.execute(delete(LINES).where(where_in(session, LINES.c.id, part)))


def existing_lines(
    session: Session,
    invoice_ids: list[int],
    *,
    adjustments: bool,
    service_start: datetime | None = None,
) -> dict[int, dict[str, tuple[int, str]]]:
    """{invoice id: {key: (line id, content hash)}} of regular lines, or of adjustment
    lines (optionally only those correcting the period starting at ``service_start``)."""
    out: dict[int, dict[str, tuple[int, str]]] = defaultdict(dict)
    if dialect(session) == "postgresql":
        sql = (
            "SELECT invoice_id, idempotency_key, id, content_hash FROM invoice_lines"
            " WHERE invoice_id = ANY(%(ids)b::integer[]) AND "
            + ("kind = 'adjustment'" if adjustments else "kind <> 'adjustment'")
            + (" AND service_period_start = %(start)s" if service_start is not None else "")
        )
        with _pg_cursor(session) as cursor:
            for part in chunks(sorted(invoice_ids), PG_ARRAY_ROWS):
                cursor.execute(sql, {"ids": part, "start": service_start})
                for invoice_id, key, line_id, chash in cursor.fetchall():
                    out[invoice_id][key] = (line_id, chash)
        return out
    kind = LINES.c.kind == "adjustment" if adjustments else LINES.c.kind != "adjustment"
    for part in chunks(sorted(invoice_ids)):
        stmt = select(
            LINES.c.invoice_id, LINES.c.idempotency_key, LINES.c.id, LINES.c.content_hash
        ).where(LINES.c.invoice_id.in_(part), kind)
        if service_start is not None:
            stmt = stmt.where(LINES.c.service_period_start == service_start)
        for invoice_id, key, line_id, chash in session.execute(stmt).all():
            out[invoice_id][key] = (line_id, chash)
    return out


def refresh_totals(session: Session, invoice_ids: Iterable[int]) -> None:
    """Recompute draft invoices' totals from their lines: total = sum of rounded lines."""

    def total(kinds: tuple[str, ...] | None) -> Any:
        stmt = select(func.coalesce(func.sum(LINES.c.amount_minor), 0)).where(
            LINES.c.invoice_id == INVOICES.c.id
        )
        if kinds is not None:
            stmt = stmt.where(LINES.c.kind.in_(kinds))
        return stmt.scalar_subquery()

    count = select(func.count()).where(LINES.c.invoice_id == INVOICES.c.id).scalar_subquery()
    for part in in_chunks(session, sorted(set(invoice_ids))):
        session.execute(
            update(INVOICES)
            .where(where_in(session, INVOICES.c.id, part), INVOICES.c.status == "draft")
            .values(
                subtotal_minor=total(SUBTOTAL_KINDS),
                discount_minor=total(REDUCTION_KINDS),
                adjustment_minor=total(("adjustment",)),
                total_minor=total(None),
                line_count=count,
            )
        )
