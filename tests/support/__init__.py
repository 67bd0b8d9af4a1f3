"""Test-only infrastructure: the ClickHouse HTTP server driven by chDB."""
