"""The warehouse: one small interface over ClickHouse (`base`), two backends (`chdb`, the
engine in-process; `clickhouse`, a server through clickhouse-connect), and `connect`,
which opens the one a settings URL names. The backends import only `base`; this module
imports a backend only when its URL is opened, so importing the interface stays cheap.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from meters.warehouse.base import SERVER_SCHEMES, Warehouse, WarehouseError


def connect(
    url: str,
    *,
    lock_timeout_s: float = 300.0,
    database: str | None = None,
    connect_timeout_s: float | None = None,
    query_timeout_s: float | None = None,
    retries: int | None = None,
    cluster: str | None = None,
) -> Warehouse:
    """Open the warehouse named by a settings URL.

    chdb://PATH (embedded, a folder; `?database=NAME` optional), or a ClickHouse server:
    clickhouse://user:pass@host:8123/db (clickhouses:// for TLS; http:// and https:// are
    the same), with options in the query string (`?query_timeout=600&retries=5&cluster=c`,
    see meters.warehouse.clickhouse.ServerOptions). Inside an Airflow task the server's
    address and credentials come from the Airflow Connection `clickhouse_default` when it
    exists. Keyword arguments override the URL's options; `lock_timeout_s` is chDB's only.
    """
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        from meters.warehouse.chdb import ChdbWarehouse

        path = url[len("chdb://") :].split("?", 1)[0]
        query_db = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return ChdbWarehouse(
            path,
            database=database or query_db.get("database", "meterline"),
            lock_timeout_s=lock_timeout_s,
        )
    if parts.scheme in SERVER_SCHEMES:
        from meters.warehouse.clickhouse import connect_server

        return connect_server(
            url,
            database=database,
            overrides={
                "connect_timeout_s": connect_timeout_s,
                "query_timeout_s": query_timeout_s,
                "retries": retries,
                "cluster": cluster,
            },
        )
    raise WarehouseError(
        f"unknown warehouse URL scheme {parts.scheme!r}: use chdb://PATH (embedded) or "
        "clickhouse://user:pass@host:8123/db (a ClickHouse server)"
    )
