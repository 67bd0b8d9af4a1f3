"""The catalog: meters, plans and versioned prices. Loaded once into the ledger, read by
every command from there (docs/catalog.md).

`meterline catalog load FILE` reads the file with the one YAML reader (billing.yamlio),
validates the whole of it (parse_catalog: meters, aggregations, dimensions, filters on
declared properties, prices on existing meters and their dimensions, plans, price
bodies through the rating engine) and stores it (load_catalog) as a new catalog
version: the file text, its content hash and when it was loaded. Ingest, rollup, close
and the audit read the newest version through current_catalog(session); the settings'
catalog path is only the default file of `catalog load`.

A price version is one price of one plan in one currency from a date: its slot is
(plan, price id, currency, effective_from); its content is its body, meter and filter.
Loading the same content again changes nothing, however its numbers are written
(``0.99``, ``"0.99"`` and ``0.990`` are one price).

The edit rule: a price version that priced a finalized invoice never changes in place
(billing.catalog.edit_rule).

Where each part lives: `model` (the values, the errors, what makes two versions the
same content), `parse` (reading and validating a file), `stored` (the catalog the
ledger holds, the versions in effect on a date), `edit_rule` (what a load may change
of finalized invoices), `load` (storing a catalog).
"""

from billing.catalog.edit_rule import check_edit_rule
from billing.catalog.load import load_catalog
from billing.catalog.model import (
    LOAD_COMMAND,
    SUPPORTED_ROUNDING,
    Catalog,
    CatalogChangeRefused,
    CatalogLoadResult,
    CatalogNotLoaded,
    CatalogPlan,
    CatalogPriceVersion,
    ParsedCatalog,
    PriceVersionInfo,
    RepricedPeriod,
    content_hash,
    validate_price_body,
    version_label,
)
from billing.catalog.parse import parse_catalog, parse_catalog_text, read_catalog
from billing.catalog.stored import current_catalog, latest_catalog_version, price_versions_in_effect

__all__ = [
    "LOAD_COMMAND",
    "SUPPORTED_ROUNDING",
    "Catalog",
    "CatalogChangeRefused",
    "CatalogLoadResult",
    "CatalogNotLoaded",
    "CatalogPlan",
    "CatalogPriceVersion",
    "ParsedCatalog",
    "PriceVersionInfo",
    "RepricedPeriod",
    "check_edit_rule",
    "content_hash",
    "current_catalog",
    "latest_catalog_version",
    "load_catalog",
    "parse_catalog",
    "parse_catalog_text",
    "price_versions_in_effect",
    "read_catalog",
    "validate_price_body",
    "version_label",
]
