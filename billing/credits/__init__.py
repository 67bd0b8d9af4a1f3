"""Credit grants: prepaid commitments and promotional credits, and their append-only
double-entry ledger (docs/credits.md).

- ``accounts``: a grant's accounts replayed from its entries, the balance identity
  (pure);
- ``rows``: one grant as a file row or the command line gives it;
- ``read``: a grants file (YAML, JSONL, CSV) into rows, every problem with its line;
- ``store``: load, void, expire or roll over, consume and return, read back, audit (the
  ledger).
"""

from billing.credits.accounts import Balance, BalanceError, Movement, Replay, move, replay
from billing.credits.read import read_grants_file
from billing.credits.rows import GrantRow
from billing.credits.store import (
    EntryConflict,
    GrantAudit,
    GrantsFileInvalid,
    GrantsLoadResult,
    GrantView,
    NoGrants,
    TermsEnded,
    audit_grants,
    expire_grants,
    grant_views,
    load_grants,
    record_consumption,
    require_customer,
    reverse_consumption,
    void_grant,
)

__all__ = [
    "Balance",
    "BalanceError",
    "EntryConflict",
    "GrantAudit",
    "GrantRow",
    "GrantView",
    "GrantsFileInvalid",
    "GrantsLoadResult",
    "Movement",
    "NoGrants",
    "Replay",
    "TermsEnded",
    "audit_grants",
    "expire_grants",
    "grant_views",
    "load_grants",
    "move",
    "read_grants_file",
    "record_consumption",
    "replay",
    "require_customer",
    "reverse_consumption",
    "void_grant",
]
