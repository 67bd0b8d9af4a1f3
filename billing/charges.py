"""What the pipeline posts: ChargeLine (and `charge_line`, the ledger line of a rated
line), and the deterministic keys and hashes of lines."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from billing.money import canonical, exponent, minor_unit, require_decimal, to_minor
from billing.periods import Period, iso_utc
from rating.period import RatedLine

ChargeKind = Literal["usage", "flat", "minimum_true_up", "discount", "adjustment", "credit"]
POSTABLE_KINDS: frozenset[str] = frozenset(
    {"usage", "flat", "minimum_true_up", "discount", "credit"}
)
#: Kinds that make an invoice's subtotal (charges: never negative); discounts and
#: adjustments are totalled apart.
SUBTOTAL_KINDS: tuple[str, ...] = ("usage", "flat", "minimum_true_up")
#: Kinds an invoice's discount total counts: what lowers its charges before adjustments,
#: discounts and the credit grants that pay for usage (docs/credits.md).
REDUCTION_KINDS: tuple[str, ...] = ("discount", "credit")
#: A credit line's key: the key of the usage line it pays, then this, then the grant id.
CREDIT_TAG = "credit"
#: Kinds whose line must name a price version of the loaded catalog.
CATALOG_KINDS: frozenset[str] = frozenset({"usage", "flat"})
KEY_SEP = "|"


class _NotPlain(Exception):
    """A value the fast copy leaves to to_json_doc's full walk."""


def _plain_copy(value: Any) -> Any:
    """A copy of ``value`` when it is plain JSON already (dicts with string keys, lists,
    str, int, bool, None), as a rating breakdown is; _NotPlain for anything else. Builds
    no paths: to_json_doc's walk names where a bad value is, and is only needed then."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            out[key] = _plain_copy(item)
        return out
    if kind is list:
        return [_plain_copy(item) for item in value]
    raise _NotPlain


def to_json_doc(value: Any, where: str = "breakdown") -> Any:
    """``value`` as plain JSON (dict / list / str / int / bool / None).

    Decimals become their exact string; a float anywhere is a TypeError (invariant 4);
    dates become ISO strings; tuples become lists; mapping keys must be strings.
    """
    try:
        return _plain_copy(value)
    except _NotPlain:
        return _to_json_doc(value, where)


def _to_json_doc(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        require_decimal(value, where)
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError(f"{where} holds a float ({value!r}): use Decimal")
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError(f"{where} holds a naive datetime {value!r}")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            out[key] = _to_json_doc(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json_doc(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where} holds a {type(value).__name__}, which is not JSON-able")


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces), for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One rated charge to post, as the rating pipeline produces it.

    Amounts are major units. ``amount`` is already rounded once to the currency's minor
    unit; ``amount_precise`` is the unrounded amount it came from. A discount is a
    negative amount. ``group`` names a dimension group ("seat_type=advanced") when one
    price yields several lines. Decimal only: a float anywhere is a TypeError.
    """

    price_id: str
    price_version: str
    kind: ChargeKind
    quantity: Decimal
    amount: Decimal
    amount_precise: Decimal
    currency: str
    meter: str | None = None
    unit_amount: Decimal | None = None
    breakdown: Any = field(default_factory=dict)
    description: str = ""
    group: str | None = None
    grant_id: str | None = None  # a credit line's grant (an adjustment of one keeps it)
    # Derived once at construction (the line is immutable): the breakdown as canonical
    # JSON text, and the content hash that idempotent re-posts compare.
    breakdown_json: str = field(init=False, repr=False, compare=False)
    _content_hash: str = field(init=False, repr=False, compare=False)
    _amount_minor: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("price_id", "price_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TypeError(f"ChargeLine.{name} must be a non-empty string, got {value!r}")
            if KEY_SEP in value:
                raise ValueError(f"ChargeLine.{name} {value!r} must not contain {KEY_SEP!r}")
        if self.kind not in POSTABLE_KINDS and self.kind != "adjustment":
            raise ValueError(
                f"ChargeLine.kind {self.kind!r} is not one of {sorted(POSTABLE_KINDS)}"
            )
        if self.group is not None and (not isinstance(self.group, str) or KEY_SEP in self.group):
            raise ValueError(f"ChargeLine.group must be a string without {KEY_SEP!r}")
        if (self.kind == "credit") and (self.grant_id is None):
            raise ValueError("a credit line names the grant that pays it")
        if self.grant_id is not None and (
            self.kind not in ("credit", "adjustment") or KEY_SEP in self.grant_id
        ):
            raise ValueError(
                f"ChargeLine.grant_id is for credit lines and their adjustments, without"
                f" {KEY_SEP!r}"
            )
        if self.meter is not None and not isinstance(self.meter, str):
            raise TypeError("ChargeLine.meter must be a string or None")
        if not isinstance(self.description, str):
            raise TypeError("ChargeLine.description must be a string")
        exponent(self.currency)
        object.__setattr__(self, "quantity", require_decimal(self.quantity, "ChargeLine.quantity"))
        object.__setattr__(self, "amount", require_decimal(self.amount, "ChargeLine.amount"))
        object.__setattr__(
            self,
            "amount_precise",
            require_decimal(self.amount_precise, "ChargeLine.amount_precise"),
        )
        if self.unit_amount is not None:
            object.__setattr__(
                self, "unit_amount", require_decimal(self.unit_amount, "ChargeLine.unit_amount")
            )
        object.__setattr__(self, "breakdown", to_json_doc(self.breakdown, "ChargeLine.breakdown"))
        object.__setattr__(
            self, "_amount_minor", to_minor(self.amount, self.currency, "ChargeLine.amount")
        )
        # The rounded amount comes from the precise one, whatever the rounding mode.
        if abs(self.amount - self.amount_precise) >= minor_unit(self.currency):
            raise ValueError(
                f"ChargeLine.amount {self.amount} is not a rounding of amount_precise"
                f" {self.amount_precise} ({self.currency})"
            )
        # Sign rules: discounts reduce, charges add; an adjustment goes either way.
        if self.kind == "discount" and self.amount > 0:
            raise ValueError(f"a discount line must not be positive, got {self.amount}")
        if self.kind == "credit" and self.amount >= 0:
            raise ValueError(f"a credit line must be negative, got {self.amount}")
        if self.kind in SUBTOTAL_KINDS and self.amount < 0:
            raise ValueError(f"a {self.kind} line must not be negative, got {self.amount}")
        object.__setattr__(self, "breakdown_json", canonical_json(self.breakdown))
        content = self.content()
        del content["breakdown"]
        object.__setattr__(
            self, "_content_hash", sha256_hex(canonical_json(content) + self.breakdown_json)
        )

    @property
    def amount_minor(self) -> int:
        """The rounded amount in integer minor units."""
        return self._amount_minor

    def content(self) -> dict[str, Any]:
        """Everything that makes two postings of one key "the same content"."""
        return {
            "price_id": self.price_id,
            "price_version": self.price_version,
            "kind": self.kind,
            "meter": self.meter,
            "group": self.group,
            "quantity": canonical(self.quantity),
            "unit_amount": None if self.unit_amount is None else canonical(self.unit_amount),
            "amount": canonical(self.amount),
            "amount_precise": canonical(self.amount_precise),
            "currency": self.currency,
            "breakdown": self.breakdown,
            "description": self.description,
            **({} if self.grant_id is None else {"grant_id": self.grant_id}),
        }

    def content_hash(self) -> str:
        """sha256 of :meth:`content` (same content, same hash, whatever the spelling of
        the decimals)."""
        return self._content_hash


def charge_line(rated: RatedLine) -> ChargeLine:
    """The ledger line a rated line posts as (the same key parts, amounts and
    explanation; its breakdown as JSON). Raises what ChargeLine raises for a line the
    ledger's rules refuse (ValueError, TypeError)."""
    return ChargeLine(
        price_id=rated.price_id,
        price_version=rated.price_version,
        kind=rated.kind,
        quantity=rated.quantity,
        amount=rated.amount,
        amount_precise=rated.amount_precise,
        currency=rated.currency,
        meter=rated.meter,
        unit_amount=rated.unit_amount,
        breakdown=rated.breakdown(),
        description=rated.description,
        group=rated.group,
        grant_id=rated.grant_id,
    )


def period_token(period: Period) -> str:
    return iso_utc(period.start)


def line_key(subscription: str, period: Period | str, charge: ChargeLine) -> str:
    """The deterministic idempotency key: (subscription, period, price, version, kind[, group]).

    ``period`` may be given as its period_token() already (posting computes it once).
    """
    token = period if isinstance(period, str) else period_token(period)
    kind = "usage" if charge.kind == "credit" else charge.kind
    parts = [subscription, token, charge.price_id, charge.price_version, kind]
    if charge.group is not None:
        parts.append(charge.group)
    if charge.kind == "credit":
        # `<usage line key>|credit|<grant id>`: re-rating a draft replaces it like any
        # line, and the key names the line it pays (pays_key) and the grant.
        assert charge.grant_id is not None
        parts += [CREDIT_TAG, charge.grant_id]
    return KEY_SEP.join(parts)


def pays_key(credit_key: str) -> str:
    """The key of the usage line a credit line (its key, `line_key`) pays."""
    head, tag, _grant = credit_key.rsplit(KEY_SEP, 2)
    if tag != CREDIT_TAG:
        raise ValueError(f"{credit_key!r} is not the key of a credit line")
    return head


def adjustment_key(adjusted_key: str, target: Period) -> str:
    """Key of the adjustment of ``adjusted_key`` carried by the invoice of ``target``."""
    return f"{adjusted_key}{KEY_SEP}adj>{period_token(target)}"
