"""The `meterline` command line: every operation a DAG task runs, runnable by hand."""

from __future__ import annotations

import click

from billing.errors import LedgerError
from meterline.cli_audit import register as register_audit
from meterline.cli_close import close
from meterline.cli_demo import demo
from meterline.cli_generate import generate
from meterline.cli_ingest import ingest, init, rejected
from meterline.cli_ledger import register as register_ledger
from meterline.cli_pipeline import backfill_command, rollup
from meterline.cli_quote import quote
from meterline.settings import SettingsError
from meters.catalog import CatalogError
from meters.warehouse import WarehouseError


class Group(click.Group):
    """Turns the errors a user can fix into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (SettingsError, CatalogError, WarehouseError, LedgerError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=Group)
def main() -> None:
    """meterline: usage metering and rating (events -> rollups -> rated invoice lines)."""


for command in (demo, init, generate, ingest, rejected, rollup, backfill_command, close, quote):
    main.add_command(command)
register_ledger(main)
register_audit(main)


if __name__ == "__main__":
    main()
