"""The `meterline` command line: every operation a DAG task runs, runnable by hand.

Subcommands are imported on first use (``COMMANDS``), so ``meterline --help`` and a
command's own start do not import the warehouse, the ledger, Arrow or Airflow for
commands that are not run. Errors and exit codes follow one table (meterline.cli.exits):
the group maps exception types to codes in one place.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from meterline.cli.exits import (
    PROG,
    ExitCode,
    echo_error,
    exit_code_for,
    message_of,
    report_internal,
    show_usage_error,
)

# name -> (module:attribute, the short help `meterline --help` lists without importing).
# tests/meterline/test_cli_errors.py checks each against the command's own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "meterline.cli.demo:demo",
        "Run the whole job on generated data in a fresh folder (embedded; no server needed).",
    ),
    "simulate": (
        "meterline.cli.simulate:simulate_command",
        "Play seeded worlds through the pipeline with injected faults; check every invariant.",
    ),
    "init": (
        "meterline.cli.init:init",
        "Create or upgrade the warehouse and ledger schemas (idempotent).",
    ),
    "generate": (
        "meterline.cli.generate:generate",
        "Write deterministic synthetic usage (customers, daily event files, late file, truth).",
    ),
    "ingest": (
        "meterline.cli.ingest:ingest",
        "Ingest usage files (.jsonl, .csv, .parquet; folders are read recursively).",
    ),
    "rejected": (
        "meterline.cli.ingest:rejected",
        "Show rejected rows: where they came from, why, and their raw payload.",
    ),
    "rollup": (
        "meterline.cli.pipeline:rollup",
        "Rebuild one day's usage rollup (and earlier days with late events), atomically.",
    ),
    "backfill": (
        "meterline.cli.pipeline:backfill_command",
        "Run the nightly rollup for every day in a range, in order, in this process.",
    ),
    "close": (
        "meterline.cli.close:close",
        "Close due billing periods: rate, post, finalize; adjust late usage.",
    ),
    "export": (
        "meterline.cli.export:export",
        "Export a closed month's billing data to the data lake as Parquet (docs/export.md).",
    ),
    "quote": (
        "meterline.cli.quote:quote",
        "Rate a quantity against a price and show the breakdown.",
    ),
    "customers": (
        "meterline.cli.ledger:customers",
        "Customers, subscriptions and their discounts.",
    ),
    "subscriptions": (
        "meterline.cli.subscriptions:subscriptions",
        'Subscriptions: plan changes mid-period (docs/rating.md, "Plan changes").',
    ),
    "catalog": (
        "meterline.cli.catalog:catalog",
        "The catalog: meters, plans and versioned prices (docs/catalog.md).",
    ),
    "credits": (
        "meterline.cli.credits:credits",
        "Credit grants: prepaid commitments and promotional credits (docs/credits.md).",
    ),
    "invoices": ("meterline.cli.ledger:invoices", "Invoices: list, show, finalize, void."),
    "ledger": ("meterline.cli.ledger:ledger", "The ledger database itself (schema migrations)."),
    "audit": (
        "meterline.cli.audit:audit",
        "Audit charges: explain a line from its raw events, reconcile a month, re-rate it.",
    ),
    "outbox": (
        "meterline.cli.outbox:outbox",
        "The outbox: list, deliver, replay what the ledger tells Stripe, AvaTax, the webhook.",
    ),
    "stripe": (
        "meterline.cli.stripe:stripe",
        "Stripe Billing: reconcile a month's invoices against Stripe.",
    ),
    "serve": (
        "meterline.cli.serve:serve",
        "Run the HTTP service: events in; invoices, explanations out (docs/service.md).",
    ),
    "apikeys": (
        "meterline.cli.apikeys:apikeys",
        "API keys of the HTTP service: create (the token is shown once), list, revoke.",
    ),
    "usage": (
        "meterline.cli.usage:usage",
        "A customer's usage so far in its current billing periods: quantity and cost per price.",
    ),
    "preview": (
        "meterline.cli.usage:preview",
        "The invoice each current billing period of a customer would end with if no more"
        " usage arrived.",
    ),
    "alerts": (
        "meterline.cli.alerts:alerts",
        "Spend and usage alerts: thresholds per billing period, announced by webhook.",
    ),
    "statement": (
        "meterline.cli.audit:statement",
        "A self-contained HTML usage statement: lines, daily usage, tiers (and the audit"
        " chain in the internal view).",
    ),
    "revrec": (
        "meterline.cli.revrec:revrec",
        "Revenue recognition of a month: recognized, billed, deferred, unbilled (docs/revrec.md).",
    ),
    "journal": (
        "meterline.cli.revrec:journal",
        "The month's balanced journal entries per currency, for NetSuite (docs/revrec.md).",
    ),
}

# Our own packages: their warnings (a retry, a wait) are shown. Libraries' log records
# repeat, less clearly, what our own messages say, and are not.
_OUR_LOGGERS = ("meterline", "meters", "billing", "rating", "dags")


def load_command(name: str) -> click.Command:
    """Import and return the command registered under ``name``."""
    module_name, attribute = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command


class LazyGroup(click.Group):
    """The `meterline` group: subcommands imported on first use, and every error turned
    into one line and an exit code of the table (meterline.cli.exits)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *self.commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        command = load_command(cmd_name)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(args) if args is not None else sys.argv[1:]
        _configure_logging()
        try:
            result = super().main(argv, prog_name or PROG, complete_var, False, **extra)
        except click.UsageError as exc:
            show_usage_error(exc)
            sys.exit(ExitCode.REFUSED)
        except (click.Abort, KeyboardInterrupt):
            echo_error("interrupted")
            sys.exit(130)
        except Exception as exc:
            code = exit_code_for(exc)
            if code == ExitCode.INTERNAL:
                report_internal(exc, argv)
            else:
                echo_error(message_of(exc))
            sys.exit(code)
        # Without standalone mode click returns ctx.exit(n)'s n; commands return None.
        sys.exit(result if isinstance(result, int) else ExitCode.OK)


def _configure_logging() -> None:
    """Warnings of our own code on stderr, prefixed like errors (``meterline: warning:``);
    log records of libraries (clickhouse-connect, urllib3...) are not shown."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        handler = _Handler(sys.stderr)
        handler.setFormatter(_Prefixed())
        handler.setLevel(logging.WARNING)
        handler.addFilter(_ours)
        root.addHandler(handler)
    else:
        handler.setStream(sys.stderr)  # this invocation's stderr (tests swap it)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """meterline's own handler on the root logger (one, however often main runs)."""


def _ours(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in _OUR_LOGGERS


class _Prefixed(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@click.group(PROG, cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meterline", prog_name=PROG, message="%(prog)s %(version)s")
def main() -> None:
    """meterline: usage metering and rating (events -> rollups -> rated invoice lines).

    Exit codes: 0 done, nothing wrong; 1 ran and found something to act on; 2 refused
    (bad option, input file, setting or catalog); 3 not found; 4 unavailable (warehouse,
    ledger or a lock; try again); 5 internal error (a bug; the traceback is in a file).
    """
