#!/usr/bin/env bash
# The ledger database beside Airflow's metadata database (run once by the postgres image,
# from /docker-entrypoint-initdb.d, when its data volume is empty). The password comes
# from the container's environment (METERLINE_DB_PASSWORD), never from this file.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v ledger_password="$METERLINE_DB_PASSWORD" <<'SQL'
CREATE USER meterline WITH PASSWORD :'ledger_password';
CREATE DATABASE meterline OWNER meterline;
SQL
