"""The Salesforce field mapping: which records are customers and subscriptions, and where
each field of a customers-file row (billing.customers.rows.CustomerRow) comes from.

The file is YAML (docs/salesforce.md has every key, docs/examples/salesforce-cpq.yaml a
whole mapping for Salesforce CPQ subscriptions):

    accounts:                       # the customers: one per account
      object: Account               # default Account
      where: "Type = 'Customer'"    # optional SOQL condition
      modified: SystemModstamp      # the modification stamp the sync is incremental by
      fields: {customer_id: Meterline_Customer_Id__c, name: Name, ...}
    subscriptions:                  # one meterline subscription per record
      object: SBQQ__Subscription__c
      account: SBQQ__Account__c     # the lookup holding the account's Id
      fields: {subscription_id: Id, plan: ..., start: ..., ...}
      discounts: [{price: {value: fin_resolution}, percent_off: SBQQ__Discount__c, ...}]
    lookback_minutes: 10            # re-read this much before the high-water mark

A field is a Salesforce field path (``Name``, ``SBQQ__Product__r.ProductCode``) or an
object: ``field`` (or ``fields``: the first of them that is not empty), ``value`` (a
constant instead of a field), ``map`` (Salesforce value -> meterline value; others pass
unchanged), ``inclusive: true`` (a date that is the last day of the term: meterline's
end is the day after) and ``default`` (when Salesforce's value is empty).

Every meterline field is mapped once, on the accounts or on the subscriptions; the
required ones (billing.customers.read.REQUIRED) must be. Field paths and object names
are SOQL identifiers only: a mapping cannot put anything else into a query but its
``where`` conditions, which are SOQL as written. Raises MappingInvalid.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from billing import yamlio
from billing.customers.read import REQUIRED
from billing.customers.rows import CustomerRow
from meterline.sources.salesforce.errors import MappingInvalid

#: A SOQL field path: a field, or up to four relationship names then a field; each name
#: at most 80 characters (Salesforce's API names are at most 40, plus a namespace
#: prefix and a suffix such as __c or __r).
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}(\.[A-Za-z][A-Za-z0-9_]{0,79}){0,4}\Z")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}\Z")
#: Longest ``where`` condition: a query's GET URL must stay under Salesforce's limit of
#: about 16,000 characters with its fields and an IN list of soql.IN_CHUNK ids.
WHERE_MAX = 4000
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _scalar(annotation: Any) -> bool:
    """A field that holds one text, number or date (``str | None`` included)."""
    return all(a in (str, int, date, type(None)) for a in get_args(annotation) or (annotation,))


#: The customers-file fields a mapping gives: those that hold one value (the discounts
#: have a list of their own; structured fields such as a billing address are not mapped).
MAPPED_FIELDS: tuple[str, ...] = tuple(
    name for name, info in CustomerRow.model_fields.items() if _scalar(info.annotation)
)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(value: Any) -> str:
    if not isinstance(value, str) or not _PATH.match(value):
        raise ValueError(
            f"{_shown(value)} is not a Salesforce field path (letters, digits and _, at most"
            " 80 each, up to five relationships joined by '.', e.g."
            " SBQQ__Product__r.ProductCode)"
        )
    return value


def _constant(value: Any, what: str = "") -> Any:
    """A ``value``, ``default`` or value of a ``map``: one text, number, true or false (a
    date as text)."""
    if isinstance(value, (dict, list, tuple)):
        kind = "an object" if isinstance(value, dict) else "a list"
        raise ValueError(
            f"{what}must be one text, number, true or false (a date as YYYY-MM-DD), not {kind}"
        )
    return value


def where_problem(text: str) -> str | None:
    """Why a ``where`` condition cannot be put into a query as one condition (None when it
    can): a control character, an unterminated string, parentheses that do not balance
    outside strings (``A) OR (B`` would read every record on every sync), or longer than
    WHERE_MAX."""
    if len(text) > WHERE_MAX:
        return f"has {len(text):,} characters; at most {WHERE_MAX:,}"
    depth, quoted, escaped = 0, False, False
    for char in text:
        if not char.isprintable() and char not in " \t\r\n":
            return f"contains the character U+{ord(char):04X}: a control character"
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
    if quoted:
        return "has a string that is not closed ('): close it"
    if depth != 0:
        return (
            "has parentheses that do not balance: it is put in a query as one condition,"
            " (where) AND the sync's own"
        )
    return None


class FieldSpec(BaseModel):
    """Where one meterline field's value comes from (the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: tuple[str, ...] = ()
    constant: bool = False
    value: Any = None
    map: dict[str, Any] = Field(default_factory=dict)
    inclusive: StrictBool = False
    default: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"fields": (data,)}
        if not isinstance(data, dict):
            raise ValueError(
                "must be a Salesforce field path or an object with field, fields or value"
            )
        data = dict(data)
        if "constant" in data:
            raise ValueError("unknown key 'constant' (give value: X for a constant)")
        given = [k for k in ("field", "fields", "value") if k in data]
        if len(given) != 1:
            raise ValueError("give exactly one of field, fields and value")
        if "field" in data:
            data["fields"] = (data.pop("field"),)
        elif "value" in data:
            # A constant is meterline's value as written: nothing maps, shifts or
            # replaces it (inclusive would be silently ignored).
            extra = [k for k in ("map", "inclusive", "default") if k in data]
            if extra:
                raise ValueError(
                    f"{extra[0]} does not apply to a value: give meterline's value itself"
                )
            data["constant"] = True
        elif not isinstance(data["fields"], list) or not data["fields"]:
            raise ValueError("fields must be a list of Salesforce field paths")
        return data

    @field_validator("fields", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return tuple(_path(v) for v in value)

    @field_validator("map", mode="before")
    @classmethod
    def _map(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must be an object of Salesforce value: meterline value")
        odd = [k for k in value if not isinstance(k, str)]
        if odd:
            raise ValueError(f"key {odd[0]!r} must be text (write it in quotes)")
        for key, mapped in value.items():
            _constant(mapped, f"the value of {key!r} ")
        return value

    @field_validator("value", "default")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return _constant(value)

    def describe(self) -> str:
        """Where the value comes from, as an error names it: the field paths, or "the
        mapping's value"."""
        if self.constant:
            return "the mapping's value"
        return " or ".join(self.fields)

    def apply(self, record: dict[str, Any]) -> Any:
        """The meterline value of ``record`` (a Salesforce record as the REST API returns
        it); None when empty and no default."""
        if self.constant:
            return self.value
        value = None
        for path in self.fields:
            value = value_at(record, path)
            if value is not None and value != "":
                break
        else:
            value = None
        if value is not None and isinstance(value, str) and value in self.map:
            value = self.map[value]
        if value is not None and self.inclusive:
            value = day_after(value)
        return self.default if value is None else value


def value_at(record: dict[str, Any] | None, path: str) -> Any:
    """The value at a field path of a record: through each relationship's object (None
    when a relationship is empty)."""
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def day_after(value: Any) -> Any:
    """The day after a YYYY-MM-DD date (Salesforce's end dates are the term's last day;
    meterline's end is the first day not billed). Anything else is returned unchanged,
    for the row's own check to refuse."""
    if isinstance(value, str) and _DAY.match(value):
        try:
            return (date.fromisoformat(value) + timedelta(days=1)).isoformat()
        except ValueError:
            return value
    return value


class DiscountSpec(BaseModel):
    """A discount each subscription record may carry: emitted when its percent_off or
    amount_off is neither empty nor zero (billing.customers.rows.DiscountRow)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price: FieldSpec
    percent_off: FieldSpec | None = None
    amount_off: FieldSpec | None = None
    valid_from: FieldSpec
    valid_to: FieldSpec | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> DiscountSpec:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return self

    def specs(self) -> dict[str, FieldSpec]:
        return {
            name: spec
            for name in ("price", "percent_off", "amount_off", "valid_from", "valid_to")
            if (spec := getattr(self, name)) is not None
        }


class ObjectMapping(BaseModel):
    """One Salesforce object the sync reads, and the meterline fields it gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    object: str
    where: str | None = None
    modified: str = "SystemModstamp"
    fields: dict[str, FieldSpec] = Field(default_factory=dict)

    @field_validator("object", "modified")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce API name (letters, digits and _)")
        return value

    @field_validator("where")
    @classmethod
    def _where(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out to read every record)")
        problem = None if value is None else where_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("fields")
    @classmethod
    def _known(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            if name not in MAPPED_FIELDS:
                close = difflib.get_close_matches(name, MAPPED_FIELDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{name!r} is not a meterline field{hint} (they are {', '.join(MAPPED_FIELDS)})"
                )
        return value

    def paths(self) -> list[str]:
        """Every Salesforce field path its fields read."""
        return [p for spec in self.fields.values() for p in spec.fields]


class AccountMapping(ObjectMapping):
    object: str = "Account"


class SubscriptionMapping(ObjectMapping):
    account: str
    discounts: tuple[DiscountSpec, ...] = ()

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _path(value)

    def paths(self) -> list[str]:
        return [
            self.account,
            *super().paths(),
            *(p for d in self.discounts for spec in d.specs().values() for p in spec.fields),
        ]


class SalesforceMapping(BaseModel):
    """A whole mapping file (the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: AccountMapping = Field(default_factory=AccountMapping)
    subscriptions: SubscriptionMapping
    lookback_minutes: StrictInt = Field(default=10, ge=0, le=1440)

    @model_validator(mode="after")
    def _each_field_once(self) -> SalesforceMapping:
        if self.accounts.object.lower() == self.subscriptions.object.lower():
            raise ValueError(
                f"accounts and subscriptions both read {self.accounts.object}: a subscription"
                " is a record of another object than its account"
            )
        both = set(self.accounts.fields) & set(self.subscriptions.fields)
        if both:
            raise ValueError(
                f"{sorted(both)[0]} is mapped on both accounts and subscriptions: map it once"
            )
        given = set(self.accounts.fields) | set(self.subscriptions.fields)
        missing = [name for name in REQUIRED if name not in given]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} not mapped: every customers-file field that is"
                " required must come from the accounts or the subscriptions"
            )
        return self

    def source_of(self, name: str) -> tuple[str, FieldSpec] | None:
        """Which object (``accounts`` or ``subscriptions``) gives a meterline field, and
        how; None when the mapping does not give it."""
        for side in ("accounts", "subscriptions"):
            spec = getattr(self, side).fields.get(name)
            if spec is not None:
                return side, spec
        return None

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)

    @property
    def digest(self) -> str:
        """SHA-256 of what the mapping reads and how it maps it (not its lookback): a
        cursor read with another digest is not this mapping's, and the next sync reads
        every record again."""
        content = self.model_dump(mode="json", exclude={"lookback_minutes"})
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return f"the text {_shown(value)}"
    return f"the number {_shown(value)}"


def _message(err: Any) -> str:
    """A pydantic error of a mapping file in the mapping's words: what the key must be."""
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in ("string_type", "string_too_short"):
        return f"must be text (a Salesforce API name or SOQL), not {_kind(given)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be an object of keys and values, not {_kind(given)}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, not {_kind(given)}"
    if kind.startswith("int") or kind.startswith("greater") or kind.startswith("less"):
        return f"must be a whole number of minutes from 0 to 1440, not {_kind(given)}"
    if kind.startswith("bool"):
        return f"must be true or false, not {_kind(given)}"
    return str(err["msg"]).removeprefix("Value error, ")


def parse_mapping(data: Any, source: str) -> SalesforceMapping:
    """A mapping from its decoded YAML. Raises MappingInvalid naming every problem by
    its key path (``subscriptions.fields.plan.map: ...``)."""
    if not isinstance(data, dict):
        raise MappingInvalid(
            source, ["the file must be a YAML object with accounts and subscriptions"]
        )
    try:
        return SalesforceMapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "file"
            problems.append(f"{where}: {_message(err)}")
        raise MappingInvalid(source, problems) from None


def read_mapping(path: str | Path) -> SalesforceMapping:
    """Read and check a mapping file. Raises MappingInvalid (unreadable, not YAML, or
    each problem of its content)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MappingInvalid(str(path), [f"cannot read it: {why}"]) from None
    try:
        data = yamlio.load(text)
    except yamlio.InputError as exc:
        raise MappingInvalid(str(path), [str(exc)]) from None
    return parse_mapping(data, str(path))
