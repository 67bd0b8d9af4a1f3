"""API keys of the HTTP service (`meterline apikeys`, docs/service.md): who may call it,
and for what.

A key is a random token, shown once when it is created: ``mlk_<prefix>_<secret>``, the
prefix 12 hex digits that find its row, the secret 32 random bytes (base64url). The
ledger keeps the prefix and the SHA-256 of the whole token, never the token: a token of
256 random bits needs no slow password hash (nobody can guess one to match a hash, and
the hashes give no token back). A request's token is looked up by its prefix and its
hash compared in constant time (``hmac.compare_digest``).

Scopes: ``ingest`` (send events), ``read`` (invoices, explanations, usage), ``support``
(what read may, and the support console's actions). Revoking keeps the row
(``revoked_at``), so the key ids the logs name keep their meaning; a revoked key is
refused at once by every service process (each request looks its key up).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from billing.errors import LedgerError, NotFound
from billing.models import Base
from billing.types import UTCDateTime

SCOPES = ("ingest", "read", "support")
TOKEN_PREFIX = "mlk_"
_TOKEN = re.compile(r"^mlk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[!-~]([ -~]{0,98}[!-~])?$")


class ApiKeyError(LedgerError):
    """A key cannot be created as asked (a bad name or scope)."""


class ApiKey(Base):
    """An API key of the HTTP service: its name, scopes and the hash of its token."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scopes <> ''", name="scopes"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The token's public part (mlk_<prefix>_...): finds the row; shown by `apikeys list`.
    prefix: Mapped[str] = mapped_column(String(12), unique=True)
    # SHA-256 of the whole token, hex.
    key_hash: Mapped[str] = mapped_column(String(64))
    # Sorted, space-separated names from SCOPES.
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, each once, sorted; ApiKeyError for none or an unknown one."""
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise ApiKeyError(
            f"unknown scope {', '.join(map(repr, unknown))}" if unknown else "no scope given"
        ) from None
    return tuple(chosen)


def create_key(
    session: Session, name: str, scopes: Iterable[str], *, now: datetime
) -> tuple[ApiKey, str]:
    """A new key and its token (the only time the token exists outside the caller)."""
    if not _NAME.match(name):
        raise ApiKeyError(
            f"key name {name!r}: 1 to 100 printable ASCII characters, no space at either end"
        )
    chosen = check_scopes(scopes)
    while True:
        prefix = secrets.token_hex(6)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=token_hash(token),
        scopes=" ".join(chosen),
        created_at=now,
        revoked_at=None,
    )
    session.add(key)
    session.flush()
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, key_id: int, *, now: datetime) -> tuple[ApiKey, bool]:
    """Revoke a key (idempotent): the key, and whether this call revoked it."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}: `meterline apikeys list` shows them")
    if key.revoked_at is not None:
        return key, False
    key.revoked_at = now
    session.flush()
    return key, True


def find_key(session: Session, token: str) -> ApiKey | None:
    """The live key whose token this is; None for a token of no key, a revoked key's,
    or text that is not a token."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if key is None or not hmac.compare_digest(key.key_hash, token_hash(token)):
        return None
    return None if key.revoked_at is not None else key
