"""meterline billing ledger: customers, catalog versions, invoices and idempotent posting.

Typical use (the caller owns the transaction)::

    engine = billing.create_ledger_engine(url)
    billing.migrate.upgrade(engine)
    with billing.session_factory(engine).begin() as session:
        billing.post_charges(session, "sub_00001", period, charges, rating_run_id=run)

See docs/ledger.md for the schema and the idempotency design.
"""

from __future__ import annotations

from billing import apikeys as _apikeys  # noqa: F401  (the api_keys table, in Base.metadata)
from billing import guards as _guards  # noqa: F401  (registers the immutability hooks)
from billing.adjustments import AdjustmentResult, post_adjustments
from billing.catalog import (
    CatalogLoadResult,
    PriceVersionInfo,
    load_catalog,
    price_versions_in_effect,
    read_catalog,
    version_label,
)
from billing.charges import ChargeKind, ChargeLine, line_key
from billing.customers import CustomersLoadResult, load_customers_file, read_customers
from billing.db import create_ledger_engine, session_factory
from billing.errors import (
    FinalizeTooEarly,
    InvoiceImmutable,
    LedgerError,
    LoadError,
    PostingConflict,
    SchemaNotReady,
    UnknownPriceVersion,
    UnknownSubscription,
)
from billing.lifecycle import DEFAULT_GRACE, finalize, finalize_due, void
from billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    Plan,
    PriceVersion,
    RatingRun,
    Subscription,
    SubscriptionDiscount,
)
from billing.periods import (
    Period,
    Terms,
    iter_periods,
    next_period,
    period_containing,
    periods_ended_by,
    subscription_period_containing,
)
from billing.posting import (
    ChargeBatch,
    PostResult,
    post_charges,
    post_charges_bulk,
    record_rating_run,
)
from billing.views import invoice_detail, list_invoices

__all__ = [
    "DEFAULT_GRACE",
    "AdjustmentResult",
    "CatalogLoadResult",
    "ChargeBatch",
    "ChargeKind",
    "ChargeLine",
    "Customer",
    "CustomersLoadResult",
    "FinalizeTooEarly",
    "Invoice",
    "InvoiceImmutable",
    "InvoiceLine",
    "LedgerError",
    "LoadError",
    "Period",
    "Plan",
    "PostResult",
    "PostingConflict",
    "PriceVersion",
    "PriceVersionInfo",
    "RatingRun",
    "SchemaNotReady",
    "Subscription",
    "SubscriptionDiscount",
    "Terms",
    "UnknownPriceVersion",
    "UnknownSubscription",
    "create_ledger_engine",
    "finalize",
    "finalize_due",
    "invoice_detail",
    "iter_periods",
    "line_key",
    "list_invoices",
    "load_catalog",
    "load_customers_file",
    "next_period",
    "period_containing",
    "periods_ended_by",
    "post_adjustments",
    "post_charges",
    "post_charges_bulk",
    "price_versions_in_effect",
    "read_catalog",
    "read_customers",
    "record_rating_run",
    "session_factory",
    "subscription_period_containing",
    "version_label",
    "void",
]
