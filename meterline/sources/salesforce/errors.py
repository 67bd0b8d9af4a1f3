"""What can go wrong in a Salesforce sync, in two kinds the command line maps to exit
codes (meterline.cli.exits): refused (2: fix the mapping, the settings or the records,
then run again) and unavailable (4: Salesforce could not answer now; run again)."""

from __future__ import annotations


class SalesforceError(Exception):
    """Base class of the sync's errors; the message says what is wrong and what to do."""


class SalesforceRefused(SalesforceError):
    """Refused: a setting, the mapping file or the records themselves must change before a
    sync can succeed (exit code 2). Running again unchanged fails the same way."""


class SalesforceNotConfigured(SalesforceRefused):
    """No credentials: neither username, password and security token nor instance URL and
    session id are set (METERLINE_SALESFORCE_*)."""


class MappingInvalid(SalesforceRefused):
    """The field mapping file cannot be used; ``problems`` lists each (``where: what``)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        head = f"{source}: {len(problems)} problem(s) in the Salesforce field mapping"
        super().__init__("\n  ".join([head, *problems]))
        self.source = source
        self.problems = problems


class RecordsInvalid(SalesforceRefused):
    """Records read from Salesforce that the ledger refuses (the customers file's rules,
    billing.customers); nothing was stored and no high-water mark moved. ``problems``
    lists each as ``OBJECT ID: FIELD (meterline field): what is wrong``."""

    #: How many problems the message shows; ``problems`` holds them all.
    SHOWN = 20

    def __init__(self, problems: list[str], records: int) -> None:
        head = (
            f"salesforce: {len(problems)} problem(s) among the {records} record(s) read;"
            " nothing was stored and the high-water marks did not move: fix the records in"
            " Salesforce (or the mapping) and sync again"
        )
        shown = problems[: self.SHOWN]
        more = (
            [f"... and {len(problems) - len(shown)} more problem(s)"]
            if len(problems) > len(shown)
            else []
        )
        super().__init__("\n  ".join([head, *shown, *more]))
        self.problems = problems


class SalesforceUnavailable(SalesforceError):
    """Salesforce could not be reached or could not answer now (a connection error, a
    timeout, a 5xx, its request limit, an expired query cursor): nothing was stored; run
    the sync again (exit code 4)."""
