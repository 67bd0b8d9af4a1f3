"""Exit codes and error reporting of the `meterline` command line: one table, one place.

| code | meaning |
|---|---|
| 0 | the command did its job and found nothing wrong |
| 1 | it ran, and found something a person must act on (reconcile findings of severity
      error, ingest over its rejected-share limit, close that could not bill some
      subscriptions) |
| 2 | refused: bad options, a missing/unreadable/invalid input file, invalid settings or
      catalog |
| 3 | not found: a named invoice, line, customer, period, ingest id does not exist |
| 4 | unavailable: the warehouse or ledger cannot be reached, a lock wait timed out (try
      again) |
| 5 | internal error (a bug): one line plus where the details were written |

Code 1 is never the result of an exception: a command that found something exits 1
itself, after printing what it found. Every error prints one line on stderr,
``meterline: error: <what is wrong and what to do>`` (indented detail lines follow only
when the message is a list, such as the problems of a customers file); a usage error
prints the command's usage line first.

Exceptions are matched by class name along their method resolution order (the most
specific class first), so this module imports none of the libraries it knows about and
``meterline --help`` stays fast. ``tests/meterline/test_cli_errors.py`` checks that every
name here is a real class.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

import click

PROG = "meterline"


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1
    REFUSED = 2
    NOT_FOUND = 3
    UNAVAILABLE = 4
    INTERNAL = 5


# The one mapping from exception classes to exit codes. A class not listed (nor any of
# its bases) is a bug: exit code 5, with the traceback written to a file.
EXIT_CODES: dict[str, ExitCode] = {
    # refused: fix the input, option or setting, then run again
    "click.exceptions.ClickException": ExitCode.REFUSED,
    "meterline.settings.SettingsError": ExitCode.REFUSED,
    "meterline.jobs.deliver.SinkNotConfigured": ExitCode.REFUSED,
    "meterline.sinks.SinkRefusedCredentials": ExitCode.REFUSED,
    "meterline.sinks.PermanentSinkError": ExitCode.REFUSED,
    "meterline.sinks.TransientSinkError": ExitCode.UNAVAILABLE,
    "meterline.sources.salesforce.errors.SalesforceRefused": ExitCode.REFUSED,
    "meterline.sources.salesforce.errors.SalesforceUnavailable": ExitCode.UNAVAILABLE,
    "meters.catalog.CatalogError": ExitCode.REFUSED,
    "meters.ingest.readers.UnreadableFile": ExitCode.REFUSED,
    "meters.warehouse.base.WarehouseError": ExitCode.REFUSED,
    "billing.errors.LedgerError": ExitCode.REFUSED,
    "billing.money.CurrencyError": ExitCode.REFUSED,
    "rating.errors.PriceError": ExitCode.REFUSED,
    "sqlalchemy.exc.ArgumentError": ExitCode.REFUSED,
    "builtins.FileNotFoundError": ExitCode.REFUSED,
    "builtins.FileExistsError": ExitCode.REFUSED,
    "builtins.IsADirectoryError": ExitCode.REFUSED,
    "builtins.NotADirectoryError": ExitCode.REFUSED,
    "builtins.PermissionError": ExitCode.REFUSED,
    "builtins.UnicodeDecodeError": ExitCode.REFUSED,
    # not found: a named thing does not exist
    "billing.errors.NotFound": ExitCode.NOT_FOUND,
    "meterline.cli.exits.NotFound": ExitCode.NOT_FOUND,
    # unavailable: try again later
    "meters.warehouse.base.WarehouseUnavailable": ExitCode.UNAVAILABLE,
    "meters.warehouse.base.WarehouseLockTimeout": ExitCode.UNAVAILABLE,
    "sqlalchemy.exc.OperationalError": ExitCode.UNAVAILABLE,
    "sqlalchemy.exc.InterfaceError": ExitCode.UNAVAILABLE,
    "sqlalchemy.exc.TimeoutError": ExitCode.UNAVAILABLE,
    "meterline.cli.exits.Unavailable": ExitCode.UNAVAILABLE,
}

# Ledger driver errors: what people need is the driver's own first line, not the
# statement, parameters and link SQLAlchemy add around it.
_LEDGER_UNAVAILABLE = (
    "sqlalchemy.exc.OperationalError",
    "sqlalchemy.exc.InterfaceError",
    "sqlalchemy.exc.TimeoutError",
)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]*@", re.IGNORECASE)


class Refused(click.ClickException):
    """For command modules: an input, option or setting is unusable (exit code 2)."""

    exit_code = ExitCode.REFUSED


class NotFound(click.ClickException):
    """For command modules: a named thing does not exist (exit code 3). Domain code
    raises ``billing.errors.NotFound`` (or a subclass) instead."""

    exit_code = ExitCode.NOT_FOUND


class Unavailable(click.ClickException):
    """For command modules: a service cannot be reached; try again (exit code 4)."""

    exit_code = ExitCode.UNAVAILABLE


def class_names(exc: BaseException) -> list[str]:
    """``module.QualName`` of the exception's class and of each of its bases, most
    specific first."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__]


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of an exception (module docstring); 5 for anything unexpected."""
    for name in class_names(exc):
        if name in EXIT_CODES:
            if name == "click.exceptions.ClickException":
                # A click exception with one of our codes keeps it; click's own default
                # (1, and FileError's) is a refusal in our table.
                code = getattr(exc, "exit_code", None)
                if code in (ExitCode.NOT_FOUND, ExitCode.UNAVAILABLE):
                    return ExitCode(code)
            return EXIT_CODES[name]
    return ExitCode.INTERNAL


def redact(text: str) -> str:
    """Passwords in URLs (``scheme://user:secret@host``) replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def message_of(exc: BaseException) -> str:
    """What went wrong, in the words a person needs: the exception's own message, with
    the driver noise of library errors taken off and passwords redacted."""
    names = class_names(exc)
    if isinstance(exc, click.ClickException):
        text = exc.format_message()
    elif any(name in names for name in _LEDGER_UNAVAILABLE):
        orig = getattr(exc, "orig", None)
        detail = _first_line(str(orig) if orig is not None else str(exc))
        if str(getattr(orig, "sqlstate", "") or "").startswith("40"):
            # Transaction rollback (a deadlock, a serialization failure): it was reached.
            text = (
                f"the ledger database rolled this command back: {detail} (another program"
                " held rows it needed); nothing of it was committed: run the command again"
            )
        else:
            text = (
                f"the ledger database cannot be reached: {detail}. Is it running, and is"
                " METERLINE_LEDGER_URL right? Then run the command again"
            )
    elif "sqlalchemy.exc.ArgumentError" in names:
        text = f"METERLINE_LEDGER_URL is not usable: {_first_line(str(exc))}"
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc).strip() or type(exc).__name__
    return redact(text)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def error_lines(message: str) -> list[str]:
    """The message as printed: one ``meterline: error:`` line, then any further lines of
    a multi-line message indented beneath it."""
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        lines = ["unknown error"]
    head, *rest = lines
    return [f"{PROG}: error: {head}", *(f"  {line.strip()}" for line in rest)]


def echo_error(message: str) -> None:
    for line in error_lines(message):
        click.echo(line, err=True)


def show_usage_error(exc: click.UsageError) -> None:
    """click's usage line, then one error line that says where the help is. A group
    called without a command prints its help (click's own way)."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()
        return
    ctx = exc.ctx
    message = exc.format_message()
    if ctx is not None:
        click.echo(ctx.get_usage(), err=True)
        message += f" (see '{ctx.command_path} --help')"
    echo_error(message)


def log_folder() -> Path:
    """Where tracebacks of internal errors go: .meterline/logs under the working folder
    when it can be written, else the system's temporary folder."""
    local = Path(".meterline") / "logs"
    try:
        local.mkdir(parents=True, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / "meterline-logs"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def write_traceback(exc: BaseException, argv: list[str] | None = None) -> Path:
    """Write the exception's traceback (and the command line) to a new file; its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = log_folder() / f"error-{stamp}-{os.getpid()}.log"
    command = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
    body = "".join(traceback.format_exception(exc))
    path.write_text(redact(f"{command}\n\n{body}"), encoding="utf-8")
    return path


def report_internal(exc: BaseException, argv: list[str] | None = None) -> None:
    """One line for a bug: what it was, and the file that holds the traceback."""
    summary = _first_line(redact(str(exc))) or "(no message)"
    try:
        where = f"the traceback is in {write_traceback(exc, argv)}"
    except OSError as failed:
        where = f"the traceback could not be written ({failed.strerror})"
    echo_error(
        f"internal error (a bug): {type(exc).__name__}: {summary}; {where}. Please report it"
    )
