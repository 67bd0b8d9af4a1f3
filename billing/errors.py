"""Errors raised by the ledger. Every message names what to do next."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every ledger error."""


class NotFound(LedgerError):
    """A named invoice, line, customer, subscription or period does not exist (the
    command line's exit code 3). The message names what was asked for."""


class PostingConflict(LedgerError):
    """A line's idempotency key was already posted with different content.

    Idempotency follows Stripe: the same key with the same content returns the existing
    line; the same key with different content is refused, unless the invoice is still a
    draft and the caller re-rates it explicitly (``rerate=True``).
    """

    def __init__(self, message: str, *, keys: list[str] | None = None) -> None:
        super().__init__(message)
        self.keys: list[str] = list(keys or [])


class InvoiceImmutable(LedgerError):
    """An attempt to change a finalized or void invoice or its lines."""


class CreditLedgerImmutable(LedgerError):
    """An attempt to change or delete a credit ledger entry, or to change a credit grant
    other than by voiding it once (the credit ledger is append-only)."""


class FinalizeTooEarly(LedgerError):
    """``finalize`` was asked to close an invoice before period end + grace period."""


class UnknownSubscription(NotFound):
    """A subscription external id that was never loaded."""


class UnknownPriceVersion(LedgerError):
    """A charge names a price version that is not in the loaded catalog."""


class LoadError(LedgerError):
    """A customers or catalog file has invalid rows; ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        shown = problems[:50]
        more = (
            f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        )
        super().__init__(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)
        self.source = source
        self.problems = problems


class SchemaNotReady(LedgerError):
    """The ledger database is not migrated to the latest revision."""
