-- The ledger database beside Airflow's metadata database.
CREATE USER meterline WITH PASSWORD 'meterline';
CREATE DATABASE meterline OWNER meterline;
