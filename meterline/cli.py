"""The `meterline` command line: every operation a DAG task runs, runnable by hand."""

from __future__ import annotations

import click

from meterline.settings import SettingsError


@click.group()
def main() -> None:
    """meterline: usage metering and rating (events -> rollups -> rated invoice lines)."""


def run() -> None:
    try:
        main(standalone_mode=True)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
