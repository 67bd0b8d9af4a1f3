"""meterline's benchmarks.

`python -m bench` is the side-by-side suite (issue 15): one generated day of usage
events per size, meterline's ingest + rollup and the alternatives (DuckDB, pandas,
PostgreSQL, chDB's own group-by) each in its own process on the same Parquet file, the
same totals checked across all of them, and a markdown table, a JSON file and a chart
written under bench/out/. Where each part lives: `suite` (the command), `data` (the
generated days and their expected totals), `contenders/` (one module per contender),
`child` (one contender in a process of its own), `report` (table, JSON, chart, machine).

The `bench_*.py` scripts beside it are single-purpose benchmarks, run as scripts
(`python bench/bench_ingest.py`).
"""
