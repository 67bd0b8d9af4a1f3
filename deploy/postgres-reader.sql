-- The ledger's read-only role, meterline_reader: the HTTP service's read endpoints
-- (METERLINE_SERVICE_LEDGER_READ_URL: invoices, explain, usage, preview) connect as it,
-- so a read request can never write the ledger. Run by the postgres image from
-- /docker-entrypoint-initdb.d after 10-meterline.sh (which creates the meterline
-- database), when its data volume is empty; on an existing volume run it by hand
-- (docs/service.md). Idempotent. The password comes from the container's environment
-- (METERLINE_DB_READ_PASSWORD), never from this file.
\set ON_ERROR_STOP on
\getenv reader_password METERLINE_DB_READ_PASSWORD
\connect meterline
SELECT 'CREATE ROLE meterline_reader' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meterline_reader')
\gexec
ALTER ROLE meterline_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_password';
-- A second lock: its transactions are read-only unless a session turns that off (the
-- grants below are what forbid writing).
ALTER ROLE meterline_reader SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA public TO meterline_reader;
-- The tables there now, and every table the ledger's owner (meterline, `meterline init`)
-- creates later: SELECT only.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO meterline_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE meterline IN SCHEMA public GRANT SELECT ON TABLES TO meterline_reader;
