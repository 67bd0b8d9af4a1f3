"""ORM event hooks: a finalized or void invoice, and its lines, are never edited.

They fire for every ORM flush of these models, in any Session. Core and raw SQL
statements do not go through the ORM; the database triggers of migration 0002 refuse
those. Posting checks invoice status itself before writing, under the invoice row lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper

from billing.errors import InvoiceImmutable
from billing.models import Invoice, InvoiceLine

# What voiding may change on a finalized invoice; every other column is frozen.
_VOID_MAY_SET = frozenset({"status", "voided_at"})


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
    changed = {
        attr.key
        for attr in state.mapper.column_attrs
        if state.attrs[attr.key].history.has_changes()
    }
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
