"""API keys of the HTTP service: what `meterline apikeys create|list|revoke` run, and the
key store `meterline serve` checks every request's bearer token against
(billing/apikeys.py holds the rules: tokens shown once, only their SHA-256 stored,
compared in constant time).

Errors: billing.errors.NotFound for an unknown key id (exit code 3), ApiKeyError for a
bad name or scope (2), and the ledger openers' (2 for a schema that is not this code's,
4 for a ledger that cannot be reached).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime

from pydantic import BaseModel

from billing import apikeys
from billing.apikeys import SCOPES, ApiKey, ApiKeyError
from billing.db import reading, session_factory
from billing.migrate import require_head
from meterline.connections import ledger_engine, ledger_session, require_ledger_store
from meterline.settings import Settings, settings

__all__ = [
    "SCOPES",
    "ApiKeyError",
    "ApiKeyInfo",
    "CreatedKey",
    "KeyStore",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
]


class ApiKeyInfo(BaseModel):
    """A key as shown: never its token nor its hash."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyInfo:
        return cls(
            id=key.id,
            name=key.name,
            prefix=f"{apikeys.TOKEN_PREFIX}{key.prefix}_",
            scopes=tuple(sorted(key.scope_set)),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class CreatedKey(BaseModel):
    key: ApiKeyInfo
    token: str


def create_api_key(
    name: str, scopes: Sequence[str], *, config: Settings | None = None
) -> CreatedKey:
    """A new key; its token is in the result and nowhere else."""
    with ledger_session(config, write=True) as session:
        key, token = apikeys.create_key(session, name, scopes, now=datetime.now(UTC))
        return CreatedKey(key=ApiKeyInfo.of(key), token=token)


def list_api_keys(*, config: Settings | None = None) -> list[ApiKeyInfo]:
    with ledger_session(config) as session:
        return [ApiKeyInfo.of(key) for key in apikeys.list_keys(session)]


def revoke_api_key(key_id: int, *, config: Settings | None = None) -> tuple[ApiKeyInfo, bool]:
    """Revoke a key: the key, and whether this call revoked it (False: it already was)."""
    with ledger_session(config, write=True) as session:
        key, revoked = apikeys.revoke_key(session, key_id, now=datetime.now(UTC))
        return ApiKeyInfo.of(key), revoked


class KeyStore:
    """The keys, for a long-running service: one engine on the ledger from `open` to
    `close` (checked as every command checks it), one short read per request, so a key
    revoked a moment ago is refused on the next request."""

    def __init__(self, config: Settings | None = None) -> None:
        self.config = config or settings()
        self._stack = ExitStack()

    def open(self) -> None:
        require_ledger_store(self.config)
        engine = self._stack.enter_context(ledger_engine(self.config))
        require_head(engine)
        self._sessions = session_factory(engine)

    def close(self) -> None:
        self._stack.close()

    def verify(self, token: str) -> ApiKeyInfo | None:
        """The live key of this bearer token, or None."""
        with reading(self._sessions) as session:
            key = apikeys.find_key(session, token)
            return None if key is None else ApiKeyInfo.of(key)
