"""ORM event hooks: a finalized or void invoice, and its lines, are never edited; credit
ledger entries are never edited or deleted, and a credit grant only ever gets voided.

They fire for every ORM flush of these models, in any Session. Core and raw SQL
statements do not go through the ORM; the database triggers of migrations 0002 and 0006
refuse those. Posting checks invoice status itself before writing, under the invoice row
lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper

from billing.errors import CreditLedgerImmutable, InvoiceImmutable
from billing.models import CreditGrant, CreditLedgerEntry, Invoice, InvoiceLine

# What voiding may change on a finalized invoice; every other column is frozen.
_VOID_MAY_SET = frozenset({"status", "voided_at"})
# What voiding a credit grant sets, once; every other column is frozen from the start.
_GRANT_VOID_SETS = frozenset({"voided_at", "voided_by", "void_reason"})


def _invoice_status(connection: Connection, invoice_id: int | None) -> str | None:
    if invoice_id is None:
        return None
    return connection.execute(
        select(Invoice.status).where(Invoice.id == invoice_id)
    ).scalar_one_or_none()


def _refuse_closed_line(connection: Connection, line: InvoiceLine, action: str) -> None:
    ids = {line.invoice_id}
    history = inspect(line).attrs.invoice_id.history
    ids.update(v for v in history.deleted if v is not None)
    for invoice_id in ids:
        status = _invoice_status(connection, invoice_id)
        if status is not None and status != "draft":
            raise InvoiceImmutable(
                f"cannot {action} a line of invoice {invoice_id}: it is {status}."
                " Post a correction with post_adjustments() instead"
            )


def _changed_columns(state: Any) -> set[str]:
    """The columns a flush would change on an object (its InstanceState)."""
    return {
        attr.key
        for attr in state.mapper.column_attrs
        if state.attrs[attr.key].history.has_changes()
    }


@event.listens_for(InvoiceLine, "before_insert")
def _line_insert(_mapper: Mapper[Any], connection: Connection, line: InvoiceLine) -> None:
    _refuse_closed_line(connection, line, "add")


@event.listens_for(InvoiceLine, "before_update")
def _line_update(_mapper: Mapper[Any], connection: Connection, line: InvoiceLine) -> None:
    _refuse_closed_line(connection, line, "change")


@event.listens_for(InvoiceLine, "before_delete")
def _line_delete(_mapper: Mapper[Any], connection: Connection, line: InvoiceLine) -> None:
    _refuse_closed_line(connection, line, "delete")


@event.listens_for(Invoice, "before_update")
def _invoice_update(_mapper: Mapper[Any], _connection: Connection, invoice: Invoice) -> None:
    state = inspect(invoice)
    status_history = state.attrs.status.history
    old_status = status_history.deleted[0] if status_history.deleted else invoice.status
    if old_status == "draft":
        return
    changed = _changed_columns(state)
    if not changed:
        return
    if old_status == "finalized" and invoice.status == "void" and changed <= _VOID_MAY_SET:
        return
    raise InvoiceImmutable(
        f"invoice {invoice.id} is {old_status}: it cannot change ({', '.join(sorted(changed))})."
        " A finalized invoice can only be voided"
    )


@event.listens_for(Invoice, "before_delete")
def _invoice_delete(_mapper: Mapper[Any], _connection: Connection, invoice: Invoice) -> None:
    status_history = inspect(invoice).attrs.status.history
    old_status = status_history.deleted[0] if status_history.deleted else invoice.status
    if old_status != "draft":
        raise InvoiceImmutable(f"invoice {invoice.id} is {old_status}: it cannot be deleted")


@event.listens_for(CreditLedgerEntry, "before_update")
def _entry_update(_mapper: Mapper[Any], _connection: Connection, entry: CreditLedgerEntry) -> None:
    raise CreditLedgerImmutable(
        f"credit ledger entry {entry.id} cannot change: the credit ledger is append-only;"
        " post a reversing entry instead"
    )


@event.listens_for(CreditLedgerEntry, "before_delete")
def _entry_delete(_mapper: Mapper[Any], _connection: Connection, entry: CreditLedgerEntry) -> None:
    raise CreditLedgerImmutable(
        f"credit ledger entry {entry.id} cannot be deleted: the credit ledger is append-only"
    )


@event.listens_for(CreditGrant, "before_update")
def _grant_update(_mapper: Mapper[Any], _connection: Connection, grant: CreditGrant) -> None:
    state = inspect(grant)
    changed = _changed_columns(state)
    if not changed:
        return
    history = state.attrs.voided_at.history
    before = history.deleted[0] if history.deleted else grant.voided_at
    was_void = before is not None
    if changed <= _GRANT_VOID_SETS and not was_void:
        return
    raise CreditLedgerImmutable(
        f"credit grant {grant.grant_id} cannot change ({', '.join(sorted(changed))}): a grant"
        " is only ever voided, once; void it and grant anew"
    )


@event.listens_for(CreditGrant, "before_delete")
def _grant_delete(_mapper: Mapper[Any], _connection: Connection, grant: CreditGrant) -> None:
    raise CreditLedgerImmutable(f"credit grant {grant.grant_id} cannot be deleted: void it")
