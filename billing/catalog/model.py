"""The catalog's values: plans, price versions, a parsed file, the catalog the ledger
holds, what a load did, and the errors. Also what makes two price versions the same
content however they are written (`CatalogPriceVersion.terms`, `version_label`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.charges import canonical_json, sha256_hex
from billing.errors import LedgerError, LoadError
from billing.periods import Period
from meters.catalog import MeterCatalog
from rating import Price, RoundingMode, parse_price
from rating.decimals import plain

if TYPE_CHECKING:
    from billing.models import PriceVersion

# Close rounds every line half-up (meterline.jobs.close.ROUNDING); a catalog asking for
# another mode would be ignored silently, so it is refused.
SUPPORTED_ROUNDING = RoundingMode.HALF_UP
LOAD_COMMAND = "meterline catalog load FILE"


class CatalogNotLoaded(LedgerError):
    """No catalog has been loaded into the ledger yet (exit code 2)."""


class CatalogChangeRefused(LoadError):
    """The catalog would change what finalized invoices were charged (exit code 2).
    ``invoices`` lists the ids of the finalized invoices concerned."""

    def __init__(self, source: str, problems: list[str], invoices: Sequence[int]) -> None:
        super().__init__(source, problems)
        self.invoices = list(invoices)


@dataclass(frozen=True, slots=True)
class CatalogPriceVersion:
    """One price of one plan in one currency from a date: its slot is (plan, price id,
    currency, effective_from); its content is its body, meter and filter."""

    plan_id: str
    price_id: str
    currency: str
    effective_from: date
    """A local date: the version prices from midnight of it in the subscription's zone."""
    meter: str | None
    """None for a flat fee."""
    filter: dict[str, Any] | None
    body: dict[str, Any]
    """The price body as written in the file (decimals as text), without its currency."""
    content_hash: str
    # The body validated by the rating engine (decides equality of content).
    price: Price | None = field(default=None, compare=False)

    @classmethod
    def from_row(cls, row: PriceVersion) -> CatalogPriceVersion:
        """A version as the ledger stores it (billing.models.PriceVersion)."""
        return cls(**{name: getattr(row, name) for name in _ROW_COLUMNS})

    def row_values(self) -> dict[str, Any]:
        """The columns of this version's ledger row (billing.models.PriceVersion), its
        label included."""
        return {name: getattr(self, name) for name in _ROW_COLUMNS} | {"version": self.version}

    @property
    def version(self) -> str:
        return version_label(self.effective_from, self.content_hash)

    @property
    def slot(self) -> tuple[str, str, str, date]:
        return (self.plan_id, self.price_id, self.currency, self.effective_from)

    def checked_price(self) -> Price:
        """The body as the rating engine reads it (validated here when not yet)."""
        if self.price is not None:
            return self.price
        return validate_price_body(dict(self.body), currency=self.currency, name=self.version)

    def terms(self) -> Any:
        """What this version charges, as one comparable document: meter, filter and
        price, numbers by value (``0.99``, ``"0.99"`` and ``0.990`` are one price)."""
        return {
            "meter": self.meter,
            "filter": {str(k): str(v) for k, v in sorted((self.filter or {}).items())},
            "price": plain_doc(self.checked_price().model_dump(exclude_none=True)),
        }


# The fields of a CatalogPriceVersion that its ledger row holds as columns of their own.
_ROW_COLUMNS = (
    "plan_id",
    "price_id",
    "currency",
    "effective_from",
    "meter",
    "filter",
    "body",
    "content_hash",
)
# The name billing exports for the versions in effect on a date (price_versions_in_effect).
PriceVersionInfo = CatalogPriceVersion


@dataclass(frozen=True, slots=True)
class CatalogPlan:
    id: str
    name: str
    minimum_commitment: dict[str, str]
    """Currency -> amount in major units, as decimal text."""


@dataclass(slots=True)
class ParsedCatalog:
    """A validated catalog file (parse_catalog)."""

    plans: list[CatalogPlan] = field(default_factory=list)
    versions: list[CatalogPriceVersion] = field(default_factory=list)
    meters: MeterCatalog = field(default_factory=lambda: MeterCatalog(meters={}))
    rounding_mode: RoundingMode = SUPPORTED_ROUNDING
    source: str = "catalog"
    text: str = ""
    #: Price id -> (its tax code or None, where the file gives it): parse's record.
    tax_codes: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    @property
    def price_tax_codes(self) -> dict[str, str]:
        """The tax code of each price id that has one (docs/tax.md)."""
        return {price: code for price, (code, _) in self.tax_codes.items() if code is not None}

    @property
    def content_hash(self) -> str:
        """Identifies the content: the same meters, plans and prices however written
        (numbers compared by value, mapping keys in any order)."""
        doc: dict[str, Any] = {
            "rounding_mode": self.rounding_mode.value,
            "meters": [m.model_dump(mode="json") for m in self.meters.meters.values()],
            "plans": [
                {
                    "id": p.id,
                    "name": p.name,
                    "minimum_commitment": plain_doc(minimum_amounts(p.minimum_commitment)),
                }
                for p in self.plans
            ],
            "prices": sorted(
                [[v.plan_id, v.price_id, v.currency, v.effective_from.isoformat()], v.terms()]
                for v in self.versions
            ),
        }
        if self.price_tax_codes:
            # Only when there are any: a catalog without tax codes keeps its hash.
            doc["tax_codes"] = dict(sorted(self.price_tax_codes.items()))
        return sha256_hex(canonical_json(doc))


@dataclass(frozen=True, slots=True)
class Catalog:
    """The catalog the ledger holds (current_catalog): typed meters, plans and the price
    versions of the loaded file, with the catalog version that holds them."""

    version: int
    """The catalog version's id in the ledger (catalog_versions.id)."""
    content_hash: str
    source: str
    """The file it was loaded from, as given to `catalog load`."""
    loaded_at: datetime
    meters: MeterCatalog
    plans: tuple[CatalogPlan, ...]
    prices: tuple[CatalogPriceVersion, ...]
    """Every price version of the file, in file order."""
    rounding_mode: RoundingMode
    tax_codes: Mapping[str, str] = field(default_factory=dict)
    """Price id -> the tax engine's code of what it sells (prices without one absent)."""


@dataclass(frozen=True, slots=True)
class RepricedPeriod:
    """A finalized invoice's period whose charges a `reprice` load changed: the caller
    re-rates it and posts the difference as adjustment lines."""

    invoice_id: int
    subscription: str
    period: Period


@dataclass(frozen=True, slots=True)
class CatalogLoadResult:
    plans_created: int
    plans_updated: int
    versions_created: int
    versions_unchanged: int
    versions_superseded: int
    versions_restored: int = 0
    # The catalog version the ledger now reads, and whether this load created it.
    catalog_version: int | None = None
    catalog_version_created: bool = False
    repriced: tuple[RepricedPeriod, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the load stored anything (versions left unchanged do not count)."""
        counts = (
            self.plans_created,
            self.plans_updated,
            self.versions_created,
            self.versions_superseded,
            self.versions_restored,
        )
        return self.catalog_version_created or any(counts)


def version_label(effective_from: date, content_hash: str) -> str:
    """The price version string charges carry: ``2026-01-01#0123456789ab``."""
    return f"{effective_from.isoformat()}#{content_hash[:12]}"


def content_hash(body: Mapping[str, Any], meter: str | None, filt: Mapping[str, Any] | None) -> str:
    return sha256_hex(canonical_json({"body": body, "meter": meter, "filter": filt}))


def validate_price_body(body: dict[str, Any], *, currency: str, name: str) -> Price:
    """THE single place where price bodies get validated by the rating engine.

    ``rating.parse_price(data, name=...)`` validates one price; the catalog keys bodies
    by currency, so the currency is added to the body it sees. Any error it raises is
    reported as a catalog problem naming the price's path in the file. The body stored
    in the ledger is the catalog's, as written (decimals as strings).
    """
    return parse_price({**body, "currency": currency}, name=name)


def plain_doc(value: Any) -> Any:
    """``value`` with every Decimal as its shortest exact text (0.990 -> "0.99")."""
    if isinstance(value, Mapping):
        return {str(k): plain_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_doc(v) for v in value]
    if isinstance(value, Decimal):
        return format(plain(value), "f")
    return value


def minimum_amounts(amounts: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """A plan's minimum commitments by value (stored as decimal text)."""
    return {str(cur): Decimal(str(amount)) for cur, amount in (amounts or {}).items()}
