"""How the server backend talks to ClickHouse: its options (from the warehouse URL's
query string) and the endpoint it names in messages. Pure values; nothing here connects.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from meters.warehouse.base import WarehouseError, check_identifier

DEFAULT_DATABASE = "meterline"
# A pause between attempts doubles each time up to this many seconds.
MAX_BACKOFF_S = 8.0

# URL query keys -> ServerOptions fields.
_URL_OPTIONS = {
    "connect_timeout": "connect_timeout_s",
    "query_timeout": "query_timeout_s",
    "retries": "retries",
    "retry_backoff": "retry_backoff_s",
    "cluster": "cluster",
    "session": "session",
    "secure": "secure",
    "verify": "verify",
    "compress": "compress",
}
# Query keys that name where to connect rather than how (read by the opener).
_URL_TARGETS = ("database", "airflow_conn_id")


@dataclass(frozen=True)
class ServerOptions:
    """How to talk to the server. Each can be set in the URL's query string
    (`?query_timeout=600&retries=5&cluster=main`) or passed to `connect()`."""

    connect_timeout_s: float = 10.0
    """Seconds to establish a TCP/TLS connection."""
    query_timeout_s: float = 300.0
    """Seconds a statement may run: sent as max_execution_time, and the client waits this
    long plus a margin for the answer, so the server's own timeout error arrives first."""
    retries: int = 3
    """Extra attempts for a statement that may be retried (meters.warehouse.clickhouse)."""
    retry_backoff_s: float = 0.5
    """First pause between attempts; doubles each time, at most MAX_BACKOFF_S."""
    cluster: str | None = None
    """Cluster mode: migrations use Replicated engines and `ON CLUSTER <cluster>`."""
    session: bool = False
    """Send a session id (one per connection) with every statement."""
    secure: bool = False
    verify: bool = True
    compress: bool = True

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], base: ServerOptions | None = None
    ) -> ServerOptions:
        """Options from a URL's query string; unknown keys are an error (a typo would
        otherwise silently keep a default). Raises WarehouseError."""
        values: dict[str, Any] = {}
        for key, raw in query.items():
            if key in _URL_TARGETS:
                continue
            if key not in _URL_OPTIONS:
                raise WarehouseError(
                    f"unknown warehouse URL option {key!r}; known: "
                    + ", ".join(sorted([*_URL_OPTIONS, *_URL_TARGETS]))
                )
            field_name = _URL_OPTIONS[key]
            try:
                values[field_name] = _coerce(field_name, raw)
            except ValueError:
                raise WarehouseError(f"warehouse URL option {key}={raw!r} is not valid") from None
        return replace(base or cls(), **values)

    def check(self) -> ServerOptions:
        """These options, when they make sense together; WarehouseError otherwise."""
        if self.connect_timeout_s <= 0 or self.query_timeout_s <= 0:
            raise WarehouseError("warehouse timeouts must be positive")
        if self.retries < 0 or self.retry_backoff_s < 0:
            raise WarehouseError("warehouse retries and backoff must not be negative")
        if self.cluster is not None:
            try:
                check_identifier(self.cluster)
            except ValueError:
                raise WarehouseError(
                    f"warehouse URL option cluster={self.cluster!r} is not a cluster name"
                ) from None
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """clickhouse-connect's client arguments for these options (both openers)."""
        # clickhouse-connect takes whole seconds. The server's max_execution_time fires
        # first; the margin lets its error arrive before the client gives up.
        margin = min(10.0, max(1.0, self.query_timeout_s / 4))
        kwargs: dict[str, Any] = {
            "connect_timeout": math.ceil(self.connect_timeout_s),
            "send_receive_timeout": math.ceil(self.query_timeout_s + margin),
            # Retries are the backend's decision (meters.warehouse.clickhouse), not the
            # driver's.
            "query_retries": 0,
            "autogenerate_session_id": False,
            "compress": self.compress,
        }
        if self.session:
            kwargs["session_id"] = f"meterline-{uuid.uuid4().hex}"
        return kwargs

    def server_settings(self) -> dict[str, Any]:
        """Settings sent with every statement: the server's own time limit."""
        return {"max_execution_time": math.ceil(self.query_timeout_s)}


def _coerce(field_name: str, raw: str) -> Any:
    if field_name in ("session", "secure", "verify", "compress"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    if field_name == "retries":
        return int(raw)
    if field_name == "cluster":
        return raw or None
    return float(raw)


@dataclass(frozen=True)
class Endpoint:
    """Where the server is, for messages and for opening clients. The password is kept
    out of repr() so that it cannot reach a log line or a traceback."""

    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool = False

    def __repr__(self) -> str:
        return f"Endpoint({self.label})"

    @property
    def label(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"
