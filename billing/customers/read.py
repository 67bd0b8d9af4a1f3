"""Reading a customers file (JSONL, YAML or CSV) into rows, with every problem found.

Nothing here stops at the first problem: each record is checked on its own, then the
rows together (a customer's rows agree on its customer fields, CUSTOMER_FIELDS; two
customers never share a Stripe customer id; a subscription is on one row), and every
problem is kept as a Problem naming its line and field. The caller
(billing.customers.load) adds the ledger's problems and refuses the file once, with all
of them.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from billing import yamlio
from billing.customers.errors import CustomersFileInvalid, FileInvalid, Problem
from billing.customers.rows import CustomerRow, DiscountRow
from billing.customers.tax_profile import BillingAddress, TaxId

FileFormat = Literal["jsonl", "yaml", "csv"]
FORMATS: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
}
FIELDS: tuple[str, ...] = tuple(CustomerRow.model_fields)
REQUIRED: tuple[str, ...] = tuple(n for n, f in CustomerRow.model_fields.items() if f.is_required())
DISCOUNT_FIELDS: tuple[str, ...] = tuple(DiscountRow.model_fields)
#: The fields of the records a row holds, by the row's field.
NESTED_FIELDS: dict[str, tuple[str, ...]] = {
    "discounts": DISCOUNT_FIELDS,
    "billing_address": tuple(BillingAddress.model_fields),
    "tax_ids": tuple(TaxId.model_fields),
}
#: The fields that describe the customer, not the row's subscription: stored once on the
#: customer, so all of a customer's rows give the same values.
CUSTOMER_FIELDS: tuple[str, ...] = (
    "name",
    "currency",
    "timezone",
    "stripe_customer_id",
    "collection_method",
    "days_until_due",
    "billing_address",
    "tax_ids",
)

# A problem a model validator raises names its field first ("end: ...").
_FIELD_FIRST = re.compile(r"([a-z_]+(?:\.[0-9a-z_]+)*): (.*)\Z", re.DOTALL)


@dataclass
class ParsedFile:
    """The valid rows of a file (line number, row) and the problems of the others."""

    rows: list[tuple[int, CustomerRow]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def detect_format(path: Path, error: type[FileInvalid] = CustomersFileInvalid) -> FileFormat:
    """The format of a file by its extension. Raises ``error`` (a FileInvalid)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise error(
            str(path),
            [Problem(0, "file", f"unknown file type {path.suffix!r}: use .jsonl, .yaml or .csv")],
        )
    return fmt


def _jsonl_records(text: str) -> Iterator[tuple[int, Any]]:
    # Lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 and
    # others, which JSON allows inside a string, and number the lines wrongly after them.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            yield number, yamlio.load_json(line)
        except yamlio.InputError as exc:
            at = f" (column {exc.column})" if exc.column is not None else ""
            yield number, Problem(number, "row", f"invalid JSON: {exc.problem}{at}")


def _header_problem(
    names: list[str], fields: tuple[str, ...] = FIELDS, required: tuple[str, ...] = REQUIRED
) -> Problem | None:
    """The header row's problem: a column given twice, an unknown column (with the
    nearest known name), a required column missing."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return Problem(1, "header", f"column {name!r} is given twice")
        seen.add(name)
    unknown = [n for n in names if n not in fields]
    if unknown:
        return Problem(1, "header", f"unknown column {unknown[0]!r}{_suggest(unknown[0], fields)}")
    missing = [n for n in required if n not in seen]
    if missing:
        return Problem(1, "header", f"missing column {missing[0]!r} (required)")
    return None


def csv_records(
    text: str,
    fields: tuple[str, ...] = FIELDS,
    required: tuple[str, ...] = REQUIRED,
    json_columns: tuple[str, ...] = ("discounts", "billing_address", "tax_ids"),
) -> Iterator[tuple[int, Any]]:
    """(line number, record) of a CSV text with a header row of ``fields`` (every one of
    ``required``); an empty cell is null, ``json_columns`` hold JSON text. A record that
    cannot be read is its Problem instead."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        problem = _header_problem(header, fields, required)
        if problem is not None:
            # Every row would repeat it: the header is the one problem.
            yield 1, problem
            return
        number = reader.line_num + 1
        for cells in reader:
            start, number = number, reader.line_num + 1
            if not cells:
                continue
            if len(cells) != len(header):
                yield (
                    start,
                    Problem(start, "row", f"has {len(cells)} values, the header has {len(header)}"),
                )
                continue
            row: dict[str, Any] = {
                k: (v if v != "" else None) for k, v in zip(header, cells, strict=True)
            }
            bad = None
            for column in json_columns:
                raw = row.get(column)
                if raw is not None:
                    try:
                        row[column] = yamlio.load_json(raw)
                    except yamlio.InputError as exc:
                        bad = Problem(start, column, f"invalid JSON ({exc.problem})")
                        break
            yield start, (bad or row)
    except csv.Error as exc:
        line = reader.line_num
        yield line, Problem(line, "row", f"not valid CSV ({exc}); nothing after it was read")


def _yaml_records(text: str) -> Iterator[tuple[int, Any]]:
    try:
        yield from yamlio.iter_sequence(text)
    except Exception as exc:
        line = getattr(exc, "line", None) or 0
        yield line, Problem(line, "file" if not line else "row", f"invalid YAML: {exc}")


READERS = {"jsonl": _jsonl_records, "yaml": _yaml_records, "csv": csv_records}


def _suggest(name: str, known: Iterable[str] = FIELDS) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (the fields are {', '.join(known)})"


def problems_of(
    number: int, exc: ValidationError, fields: tuple[str, ...] = FIELDS
) -> list[Problem]:
    """One Problem per field pydantic refused, in the file's words (an unknown field with
    the nearest of ``fields``)."""
    out: list[Problem] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            known = NESTED_FIELDS.get(loc[0], fields) if len(loc) > 1 else fields
            msg = f"unknown field{_suggest(loc[-1], known)}"
        elif err["type"] == "missing":
            msg = "Field required"
        elif err["type"] in ("model_type", "dict_type") and loc and loc[0] in NESTED_FIELDS:
            # An item that is no object: say what it must be, not pydantic's class name.
            msg = (
                f"must be an object with the fields {', '.join(NESTED_FIELDS[loc[0]])},"
                f" not {_kind(err['input'])}"
            )
        if not loc and (found := _FIELD_FIRST.match(msg)):
            loc, msg = [found.group(1)], found.group(2)
        out.append(Problem(number, ".".join(loc) or "row", msg))
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    number = isinstance(value, (int, float, Decimal))
    return f"the number {value}" if number else "a value of another type"


def parse_records(records: Iterable[tuple[int, Any]]) -> ParsedFile:
    """Validate records (line number, mapping, or the Problem of an unreadable record):
    the valid rows and every problem, each row checked against the others (a customer's
    rows agree on its CUSTOMER_FIELDS; two customers never share a Stripe customer id;
    each subscription is on one row)."""
    parsed = ParsedFile()
    for number, record in records:
        if isinstance(record, Problem):
            parsed.problems.append(record)
            continue
        if not isinstance(record, Mapping):
            parsed.problems.append(
                Problem(number, "row", "must be an object with the customer fields")
            )
            continue
        try:
            parsed.rows.append((number, CustomerRow.model_validate(dict(record))))
        except ValidationError as exc:
            parsed.problems.extend(problems_of(number, exc))
    customers: dict[str, tuple[int, CustomerRow]] = {}
    subscriptions: dict[str, int] = {}
    # Stripe customer id -> the first customer (and its line) that gives it.
    stripe_ids: dict[str, tuple[str, int]] = {}
    for number, row in parsed.rows:
        first = customers.setdefault(row.customer_id, (number, row))
        for name in CUSTOMER_FIELDS:
            if getattr(first[1], name) != getattr(row, name):
                parsed.problems.append(
                    Problem(
                        number,
                        name,
                        f"customer {row.customer_id} has {_shown(getattr(first[1], name))} on"
                        f" line {first[0]}; a customer's rows agree on its"
                        f" {', '.join(CUSTOMER_FIELDS[:-1])} and {CUSTOMER_FIELDS[-1]}",
                    )
                )
        stripe_id = row.stripe_customer_id
        if stripe_id is not None and first[0] == number:
            owner, line = stripe_ids.setdefault(stripe_id, (row.customer_id, number))
            if owner != row.customer_id:
                parsed.problems.append(
                    shared_stripe_id(number, row.customer_id, stripe_id, owner, f"line {line}")
                )
        if row.subscription_id in subscriptions:
            parsed.problems.append(
                Problem(
                    number,
                    "subscription_id",
                    f"{row.subscription_id} already on line {subscriptions[row.subscription_id]}",
                )
            )
        subscriptions.setdefault(row.subscription_id, number)
    if not parsed.rows and not parsed.problems:
        parsed.problems.append(Problem(0, "file", "no rows"))
    return parsed


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        value = [_plain(item) for item in value] or None
    return "none (empty)" if value is None else repr(_plain(value))


def _plain(value: Any) -> Any:
    """A field's value as the file writes it (a nested record as its fields)."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if dump is not None else value


def shared_stripe_id(number: int, customer: str, stripe_id: str, owner: str, where: str) -> Problem:
    """The problem of a customer given the Stripe customer id another customer has."""
    return Problem(
        number,
        "stripe_customer_id",
        f"customer {customer} and customer {owner} ({where}) both have Stripe customer"
        f" {stripe_id}; two customers never share one Stripe customer (each would receive"
        " the other's invoices): give each its own id",
    )


def read_text(path: Path, error: type[FileInvalid] = CustomersFileInvalid) -> str:
    """The file's text (UTF-8, a byte-order mark allowed). Raises ``error`` (a
    FileInvalid) when it cannot be read or is not UTF-8, naming the line of the first bad
    byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(str(path), [Problem(0, "file", f"cannot read: {exc.strerror}")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            str(path), [Problem(line, "row", "is not UTF-8 text: save the file as UTF-8")]
        ) from None


def read_file(path: str | Path, fmt: FileFormat | None = None) -> ParsedFile:
    """The rows and problems of a customers file, without the ledger. Raises
    CustomersFileInvalid only when the file cannot be read at all."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    return parse_records(READERS[fmt](read_text(path)))


def read_customers(
    path: str | Path, fmt: FileFormat | None = None
) -> list[tuple[int, CustomerRow]]:
    """The rows of a customers file (line number, row). Raises CustomersFileInvalid
    listing every problem of the file itself (not the ledger's: billing.customers.load)."""
    parsed = read_file(path, fmt)
    if parsed.problems:
        raise CustomersFileInvalid(str(path), parsed.problems)
    return parsed.rows
