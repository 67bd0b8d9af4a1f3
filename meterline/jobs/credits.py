"""Credit grants by hand: what `meterline credits ...` runs (docs/credits.md). Each opens
the ledger through meterline.connections.ledger_session (a write is one transaction,
committed on success) and calls billing.credits; the command renders what comes back.

Errors are billing's: GrantsFileInvalid (every problem with its line and field, exit
code 2), NotFound (an unknown customer or grant, 3), BalanceError and the other
LedgerErrors (2); `credits grant` says its problems by option (GrantRefused, 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing.credits import (
    GrantsFileInvalid,
    GrantsLoadResult,
    grant_views,
    load_grants,
    read_grants_file,
    require_customer,
    void_grant,
)
from billing.credits.read import parse_grant_records
from billing.customers import FORMATS, FileFormat, Problem
from billing.errors import LedgerError
from billing.models import GRANT_KINDS
from meterline.connections import ledger_session
from meterline.settings import Settings

__all__ = [
    "GRANT_FORMATS",
    "GRANT_KINDS",
    "GrantRefused",
    "balances",
    "grant_one",
    "list_grants",
    "load_file",
    "void",
]

#: The grants file formats `credits load --format` takes.
GRANT_FORMATS: tuple[str, ...] = tuple(sorted(set(FORMATS.values())))


def load_file(
    path: Path, fmt: FileFormat | None = None, *, by: str, config: Settings | None = None
) -> GrantsLoadResult:
    """Create the grants of a file that the ledger does not hold yet, all or nothing.
    Raises GrantsFileInvalid naming every bad row and field (exit code 2)."""
    rows, problems = read_grants_file(path, fmt)
    with ledger_session(config, write=True) as session:
        return load_grants(session, rows, str(path), by=by, at=datetime.now(UTC), problems=problems)


#: The `credits grant` option of each grant field (the others: ``--`` and the field
#: with dashes).
OPTIONS = {
    "customer_id": "--customer",
    "subscription_id": "--subscription",
}


class GrantRefused(LedgerError):
    """`meterline credits grant` refused (exit code 2): every problem of the one grant,
    each named by its option (``--amount: must be above 0``); nothing was granted."""

    def __init__(self, problems: list[Problem]) -> None:
        texts = [_option_problem(p) for p in problems]
        if len(texts) == 1:
            message = f"credits grant: {texts[0]}; nothing was granted"
        else:
            message = "\n  ".join(
                [f"credits grant: {len(texts)} problems; nothing was granted", *texts]
            )
        super().__init__(message)
        self.problems = texts


def _option_problem(problem: Problem) -> str:
    """A grant row's problem in the command's words: its option, not a line and field."""
    field = problem.field.split(".")[0]
    if field in ("row", "file"):
        return problem.text
    return f"{OPTIONS.get(field, '--' + field.replace('_', '-'))}: {problem.text}"


def grant_one(
    record: Mapping[str, Any], *, by: str, config: Settings | None = None
) -> dict[str, Any]:
    """Create one grant from the command's fields (the file's rules; a grant the ledger
    holds with the same terms is left as it is); the grant as stored, with its balance.
    Raises GrantRefused naming the options (exit code 2), NotFound for an unknown
    customer (3)."""
    rows, problems = parse_grant_records([(1, dict(record))])
    if problems:
        raise GrantRefused(problems)
    with ledger_session(config, write=True) as session:
        require_customer(session, rows[0][1].customer_id)
        try:
            load_grants(session, rows, "credits grant", by=by, at=datetime.now(UTC))
        except GrantsFileInvalid as exc:
            raise GrantRefused(list(exc.found)) from None
        # The same grant again is no change (as a file loaded twice): it is shown as stored.
        return grant_views(session, grant_id=rows[0][1].grant_id)[0].to_json()


def list_grants(
    *, customer: str | None = None, config: Settings | None = None
) -> list[dict[str, Any]]:
    """Every grant (of a customer) with its accounts. NotFound for an unknown customer."""
    with ledger_session(config) as session:
        return [g.to_json() for g in grant_views(session, customer=customer)]


def balances(
    customer: str, *, as_of: datetime | None = None, config: Settings | None = None
) -> list[dict[str, Any]]:
    """A customer's grants with their accounts as of ``as_of`` (entries effective by
    then; all without it). NotFound for an unknown customer."""
    with ledger_session(config) as session:
        return [g.to_json() for g in grant_views(session, customer=customer, as_of=as_of)]


def void(
    grant_id: str, *, as_of: datetime, by: str, reason: str, config: Settings | None = None
) -> dict[str, Any]:
    """Void a grant: its remaining balance goes back to the issuer. NotFound (exit 3) for
    an unknown grant; a grant voided already is refused (2)."""
    with ledger_session(config, write=True) as session:
        return void_grant(
            session, grant_id, as_of=as_of, by=by, reason=reason, at=datetime.now(UTC)
        ).to_json()
