#!/usr/bin/env bash
# The compose stack's one-shot init service: Airflow's metadata database, the Airflow
# Connections and pool meterline's tasks use, then `meterline init` (both schemas: the
# tasks only check them). Idempotent:
# `docker compose up` runs it on every start. Credentials come from the environment and
# are never printed (no `set -x`).
set -euo pipefail

echo "init: airflow db migrate"
airflow db migrate

# Connections: the warehouse for the tasks (clickhouse_default, read by meterline through
# apache-airflow-providers-clickhousedb) and a read-only one for audits.
add_connection() {
    local conn_id="$1" login="$2" password="$3"
    airflow connections delete "$conn_id" >/dev/null 2>&1 || true
    airflow connections add "$conn_id" \
        --conn-type clickhouse \
        --conn-host "$CLICKHOUSE_HOST" \
        --conn-port "$CLICKHOUSE_PORT" \
        --conn-schema "$CLICKHOUSE_DB" \
        --conn-login "$login" \
        --conn-password "$password" >/dev/null
    echo "init: connection $conn_id (user $login)"
}
add_connection clickhouse_default "$CLICKHOUSE_USER" "$CLICKHOUSE_PASSWORD"
add_connection clickhouse_auditor auditor "$CLICKHOUSE_AUDITOR_PASSWORD"

# Stripe (docs/stripe.md): the stripe_default Connection holds the secret key (password)
# and the API base (host). Without STRIPE_API_KEY, billing_close's deliver task is skipped
# and the outbox keeps the events.
if [ -n "${STRIPE_API_KEY:-}" ]; then
    airflow connections delete stripe_default >/dev/null 2>&1 || true
    airflow connections add stripe_default \
        --conn-type generic \
        --conn-host "${STRIPE_API_BASE:-https://api.stripe.com}" \
        --conn-password "$STRIPE_API_KEY" >/dev/null
    echo "init: connection stripe_default"
else
    echo "init: no STRIPE_API_KEY: Stripe delivery stays off (the outbox keeps the events)"
fi

# With a ClickHouse server the warehouse tasks may run side by side (the one-slot pool is
# for the embedded chDB warehouse, which one process at a time may open).
airflow pools set meterline_warehouse "${METERLINE_WAREHOUSE_POOL_SLOTS:-4}" \
    "meterline warehouse tasks (ClickHouse server)" >/dev/null
echo "init: pool meterline_warehouse"

echo "init: meterline init (warehouse and ledger schemas)"
meterline init
# Every task reads the catalog loaded in the ledger. The first start loads
# METERLINE_CATALOG_PATH; later changes are loaded on purpose (`meterline catalog load
# FILE`), never by a restart, since a change may be refused (docs/catalog.md).
if meterline catalog show >/dev/null 2>&1; then
    echo "init: catalog already loaded (meterline catalog show)"
else
    echo "init: meterline catalog load"
    meterline catalog load
fi
echo "init: done"
