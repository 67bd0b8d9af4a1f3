"""`meterline init`: create or upgrade the warehouse and ledger schemas (idempotent).

The one command that migrates (with `meterline ledger migrate`, the ledger alone, to a
chosen revision); every other command checks the schema version and, when it is not
this code's, stops with exit code 2 and says to run `meterline init`.
"""

from __future__ import annotations

import click


@click.command("init")
def init() -> None:
    """Create or upgrade the warehouse and ledger schemas (idempotent)."""
    from meterline.jobs.init import init_schemas

    for line in init_schemas().lines():
        click.echo(line)
