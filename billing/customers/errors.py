"""What is wrong with a customers file: one Problem per line and field, refused at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from billing.errors import LoadError

#: How many problems the message shows; `problems` holds them all.
SHOWN = 20


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a customers file: its line (0: the file as a whole), the field
    (``discounts.0.price``; ``row`` for the record itself) and what is wrong and what to
    do. Printed ``line N: field: text``."""

    line: int
    field: str
    text: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        if self.field in ("row", "file"):
            return f"{where}: {self.text}"
        return f"{where}: {self.field}: {self.text}"


class FileInvalid(LoadError):
    """An input file (customers, credit grants) that cannot be loaded; nothing of it was
    (the load is one transaction). ``problems`` lists every problem (``line N: field:
    text``) in line order, and within a line in the file's field order (``FIELD_ORDER``);
    the message shows the first SHOWN and counts the rest and their lines. The command
    line exits 2 (a refused input)."""

    #: A file's fields in the order its problems are listed within a line.
    FIELD_ORDER: tuple[str, ...] = ()

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        order = {name: i for i, name in enumerate(("file", "header", "row", *self.FIELD_ORDER))}
        ordered = sorted(
            dict.fromkeys(problems),
            key=lambda p: (p.line, order.get(p.field.split(".")[0], len(order))),
        )
        texts = [str(p) for p in ordered]
        super().__init__(source, texts)
        lines = len({p.line for p in ordered})
        head = (
            f"{source}: {len(ordered)} problem(s) on {lines} line(s); nothing was loaded: fix"
            " them and load the file again"
        )
        shown = texts[:SHOWN]
        rest = ordered[SHOWN:]
        more = (
            [
                f"... and {len(rest)} more problem(s) on"
                f" {len({p.line for p in rest} - {p.line for p in ordered[:SHOWN]})} more"
                " line(s)"
            ]
            if rest
            else []
        )
        self.args = ("\n  ".join([head, *shown, *more]),)
        self.found = ordered


class CustomersFileInvalid(FileInvalid):
    """A customers file that cannot be loaded (FileInvalid)."""

    FIELD_ORDER = (
        "customer_id",
        "name",
        "currency",
        "timezone",
        "stripe_customer_id",
        "collection_method",
        "days_until_due",
        "billing_address",
        "tax_ids",
        "subscription_id",
        "plan",
        "billing_anchor_day",
        "start",
        "end",
        "discounts",
    )
