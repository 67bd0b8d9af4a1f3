"""The data-lake sink (docs/export.md): one month's billing data as Parquet files under
a folder or any fsspec URL, written atomically and versioned so that a loader keeping
the latest version of each row ends with exactly the ledger.

- ``tables``: the tables, their columns, primary keys and money columns; the schema
  version; the Redshift DDL made from them;
- ``versions``: the pure rules of row versions, tombstones and the latest-version merge;
- ``manifest``: the manifest (row counts, money totals, content hashes), pure;
- ``store``: the files themselves (temporary names, rename, manifest last).
"""
