"""The audit's errors."""

from __future__ import annotations

from billing.errors import NotFound


class AuditError(NotFound):
    """What the audit was asked for does not exist: no such invoice line, customer or
    period (the command line's exit code 3, as every ``billing.errors.NotFound``)."""
