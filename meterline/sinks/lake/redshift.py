"""Loading the export into Redshift: the SQL, made from the tables (docs/export.md shows
it, and a test keeps the two the same and runs it in DuckDB).

A loader takes each new manifest in run order (any month), and in one transaction:
empties the staging tables (``DELETE``: Redshift's TRUNCATE commits), COPYs each file
the manifest names into its staging table, and merges: `merge` keeps, per key, the row
of the highest ``row_version`` among the table and the staged rows. Tombstones are kept
as rows (``deleted``), so a version loaded late never brings a deleted key back; the
``<table>_current`` view is the ledger's state: the rows not deleted.
"""

from __future__ import annotations

from meterline.sinks.lake.tables import Table

TARGET = "meterline"
STAGING = "meterline_staging"


def ddl(t: Table, schema: str = TARGET) -> str:
    """The table for `t`: the file's columns in the file's order (COPY ... FORMAT AS
    PARQUET maps columns by position), the primary key (key, row_version) declared
    (Redshift does not enforce it: the merge keeps it)."""
    width = max(len(c.name) for c in t.frame)
    cols = [f"    {c.name.ljust(width)} {c.redshift}" for c in t.frame]
    key = ", ".join((*t.key, "row_version"))
    body = ",\n".join([*cols, f"    PRIMARY KEY ({key})"])
    return f"CREATE TABLE IF NOT EXISTS {schema}.{t.name} (\n{body}\n);"


def current_view(t: Table) -> str:
    """The view of the ledger's state: the latest version of each key, not deleted."""
    return (
        f"CREATE OR REPLACE VIEW {TARGET}.{t.name}_current AS\n"
        f"SELECT * FROM {TARGET}.{t.name} WHERE NOT deleted;"
    )


def copy(t: Table, file_url: str, iam_role: str = "arn:aws:iam::ACCOUNT:role/ROLE") -> str:
    """COPY one exported file (its full URL) into the staging table."""
    return f"COPY {STAGING}.{t.name}\nFROM '{file_url}'\nIAM_ROLE '{iam_role}'\nFORMAT AS PARQUET;"


def merge(t: Table) -> str:
    """Merge the staged rows into the table, keeping the latest version of each key: drop
    the table's rows that a staged row of a higher version replaces, then insert the
    staged latest versions of the keys the table does not hold (any more)."""
    cols = ", ".join(c.name for c in t.frame)
    target, staged = f"{TARGET}.{t.name}", f"{STAGING}.{t.name}"
    on = " AND ".join(f"t.{k} = s.{k}" for k in t.key)
    on_target = " AND ".join(f"{target}.{k} = s.{k}" for k in t.key)
    part = ", ".join(t.key)
    return (
        f"DELETE FROM {target} USING {staged} s\n"
        f"WHERE {on_target} AND {target}.row_version < s.row_version;\n"
        f"INSERT INTO {target} ({cols})\n"
        f"SELECT {cols} FROM (\n"
        f"    SELECT *, ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY row_version DESC) AS rn\n"
        f"    FROM {staged}\n"
        f") s\n"
        f"WHERE s.rn = 1 AND NOT EXISTS (SELECT 1 FROM {target} t WHERE {on});"
    )
