"""The ledger schema (SQLAlchemy 2 typed ORM). Migrations in billing/migrations mirror it.

Money is never a float: integer minor units (``*_minor``) for what is billed, and the
exact decimal (``ExactDecimal``) for the precise amounts, quantities and unit prices.
Instants are aware UTC datetimes (``UTCDateTime``); calendar dates are ``Date``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from billing.types import ExactDecimal, JSONDoc, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

INVOICE_STATUSES = ("draft", "finalized", "void")
#: What the outside world hears from the ledger (billing/outbox): one outbox event each.
OUTBOX_KINDS = (
    "invoice.finalized",
    "invoice.voided",
    "invoice.adjustments_posted",
    "alert.fired",
    "alert.retracted",
)
#: What an alert watches (docs/alerts.md): a meter's usage quantity, or rated spend.
ALERT_METRICS = ("usage", "spend")
#: A threshold of an alert in a period: fired, then possibly retracted (once each).
ALERT_STATES = ("fired", "retracted")
#: A delivery is pending until a sink delivered it, or parked after too many failures.
DELIVERY_STATUSES = ("pending", "delivered", "parked")
#: An invoice's tax through the tax sink (docs/tax.md): pending from finalization until
#: the tax is recorded; voided with the invoice.
TAX_STATUSES = ("pending", "recorded", "voided")
#: Stripe's invoice collection methods (Invoice.collection_method).
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
LINE_KINDS = ("usage", "flat", "minimum_true_up", "discount", "adjustment", "credit")
#: Credit grants (docs/credits.md): paid commitments and promotional credits.
GRANT_KINDS = ("paid_commit", "promotional")
#: What a grant pays for: every usage price, the prices listed, or the meters listed.
GRANT_SCOPES = ("all_usage", "prices", "meters")
#: The accounts of a grant's double-entry ledger. ``issuer`` is where a grant's value
#: comes from and returns to (the sale or the promotion); ``available`` its remaining
#: balance; ``consumed`` what paid for invoice lines; ``expired`` breakage;
#: ``rolled_over`` what moved at the end of the grant's term to the next term's grant
#: (kept apart from breakage: revenue recognition tells the two apart).
CREDIT_ACCOUNTS = ("issuer", "available", "consumed", "expired", "rolled_over")
#: Each kind of credit ledger entry moves value from one account to another, always
#: the same two (billing/credits/accounts.py explains each).
CREDIT_MOVES: dict[str, tuple[str, str]] = {
    "grant": ("issuer", "available"),
    "consume": ("available", "consumed"),
    "reverse": ("consumed", "available"),
    "expire": ("available", "expired"),
    "void": ("available", "issuer"),
    "rollover": ("available", "rolled_over"),
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def credit_moves_check() -> str:
    """The CHECK that ties each credit ledger entry kind to its two accounts."""
    return " OR ".join(
        f"(kind = '{kind}' AND from_account = '{src}' AND to_account = '{dst}')"
        for kind, (src, dst) in CREDIT_MOVES.items()
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    # The customer's id in Stripe, from the customers file (optional: without one, the
    # Stripe sink creates the customer once and records it in external_refs).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64))
    # The customer's invoice terms in Stripe; NULL means the settings' default.
    collection_method: Mapped[str | None] = mapped_column(String(32))
    days_until_due: Mapped[int | None] = mapped_column(Integer)
    # Where the customer is billed (line1..3, city, region, postal_code, country) and its
    # tax ids ([{type, value}]), from the customers file: what the tax sink sends
    # (docs/tax.md). NULL: none given.
    billing_address: Mapped[dict[str, str] | None] = mapped_column(JSONDoc)
    tax_ids: Mapped[list[dict[str, str]] | None] = mapped_column(JSONDoc)

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="customer")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("billing_anchor_day BETWEEN 1 AND 31", name="anchor_day"),
        CheckConstraint("end_date IS NULL OR end_date > start_date", name="end_after_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # A catalog plan id. Not a foreign key: customers and the catalog load independently;
    # posting resolves prices against the plan and fails loudly if it is missing.
    plan_id: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    billing_anchor_day: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    # Local calendar dates in ``timezone``; the subscription is active from local
    # midnight of start_date until local midnight of end_date (exclusive).
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)

    customer: Mapped[Customer] = relationship(back_populates="subscriptions")
    discounts: Mapped[list[SubscriptionDiscount]] = relationship(
        back_populates="subscription",
        cascade="all, delete-orphan",
        order_by="SubscriptionDiscount.id",
    )


class SubscriptionDiscount(Base):
    """A discount on one price of a subscription, from the customers file."""

    __tablename__ = "subscription_discounts"
    __table_args__ = (
        CheckConstraint("(percent_off IS NULL) <> (amount_off IS NULL)", name="percent_xor_amount"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="valid_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    price_id: Mapped[str] = mapped_column(String(64))
    percent_off: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    # Major units of the subscription's currency.
    amount_off: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)

    subscription: Mapped[Subscription] = relationship(back_populates="discounts")


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # {currency: decimal string in major units}; empty when the plan has none.
    minimum_commitment: Mapped[dict[str, str]] = mapped_column(JSONDoc)


class PriceVersion(Base):
    """One price of one plan in one currency, as effective from a date, with its body.

    A version is identified by (plan, price, currency, effective_from) + content hash:
    editing a body in the catalog adds a row, and the old row stays for audit with
    ``is_current`` false. ``version`` is the label charges carry (``effective_from#hash``).
    """

    __tablename__ = "price_versions"
    __table_args__ = (
        UniqueConstraint(
            "plan_id",
            "price_id",
            "currency",
            "effective_from",
            "content_hash",
            name="uq_price_versions_identity",
        ),
        UniqueConstraint(
            "plan_id", "price_id", "currency", "version", name="uq_price_versions_label"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    price_id: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    effective_from: Mapped[date] = mapped_column(Date)
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(40))
    meter: Mapped[str | None] = mapped_column(String(64))
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    body: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    is_current: Mapped[bool] = mapped_column(Boolean)


class CatalogVersion(Base):
    """One load of the catalog (`meterline catalog load FILE`): the whole file as given,
    validated. The newest row is the catalog every command reads (billing.catalog.
    current_catalog); older rows stay for audit. ``content_hash`` identifies the content
    (how numbers are written does not count), so loading the same catalog again adds no row.
    """

    __tablename__ = "catalog_versions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    # The file's name as the user gave it, and its text as read.
    source: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What the load changed: price versions created/superseded, invoices re-priced.
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDoc)


class RatingRun(Base):
    """One run of the rating pipeline: what it closed, when (logical time), with what.

    ``events_watermark`` is what the run saw of the warehouse (DESIGN.md invariant 7):
    every event ingested up to that instant, except on the days listed in
    ``rating_run_stale_days``, whose rollup was older (it saw their events ingested up to
    the day's own watermark). An event is late for a line when the run that produced the
    line did not see it. NULL for runs recorded before watermarks were kept: readers then
    fall back to the run's ``run_at``.
    """

    __tablename__ = "rating_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The data interval the run closed (not the billing periods, which vary by anchor).
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    code_version: Mapped[str] = mapped_column(String(100))
    inputs_hash: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    events_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime())

    stale_days: Mapped[list[RatingRunStaleDay]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RatingRunStaleDay.day"
    )


class RatingRunStaleDay(Base):
    """A UTC day whose rollup a rating run read while it was stale (events had arrived
    since it was built): the run saw that day's events ingested up to ``watermark`` only
    (the epoch when the day had never been rolled up)."""

    __tablename__ = "rating_run_stale_days"

    rating_run_id: Mapped[int] = mapped_column(
        ForeignKey("rating_runs.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    watermark: Mapped[datetime] = mapped_column(UTCDateTime())

    run: Mapped[RatingRun] = relationship(back_populates="stale_days")


class FindingAcknowledgement(Base):
    """A person's acknowledgement of one reconcile finding (``meterline audit
    acknowledge``). A finding's id hashes its check, subject and the values that define
    it, so a finding whose values change is a new one that no earlier acknowledgement
    covers. Rows are never updated: acknowledging again adds a row (the latest shows)."""

    __tablename__ = "finding_acknowledgements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text)
    acknowledged_by: Mapped[str] = mapped_column(String(200))
    # Wall-clock time of the person's action (a record of who did what when, not a
    # billing time: invariant 7 is about what the pipeline computes).
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
        CheckConstraint("period_end > period_start", name="period_order"),
        CheckConstraint(
            "(status = 'draft') OR finalized_at IS NOT NULL OR voided_at IS NOT NULL",
            name="closed_has_time",
        ),
        # One live invoice per (subscription, period): a void one can be re-issued. This
        # index is also what makes concurrent posters agree on a single draft.
        Index(
            "uq_invoices_live_period",
            "subscription_id",
            "period_start",
            unique=True,
            postgresql_where=text("status <> 'void'"),
            sqlite_where=text("status <> 'void'"),
        ),
        Index("ix_invoices_subscription_period", "subscription_id", "period_start"),
        Index("ix_invoices_period_start_local", "period_start_local"),
        # Ids are never reused, even after a draft's row is deleted: they appear in logs.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    # The local date the period starts on, in the subscription's timezone (for lists).
    period_start_local: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # Totals in minor units; total = sum of the rounded lines (invariant 4).
    subtotal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustment_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reissue_of_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.id"
    )
    subscription: Mapped[Subscription] = relationship()
    customer: Mapped[Customer] = relationship()


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint(_in("kind", LINE_KINDS), name="kind"),
        CheckConstraint(
            "(kind = 'adjustment') OR (adjusts_line_id IS NULL AND adjusts_key IS NULL)",
            name="only_adjustments_adjust",
        ),
        # A credit line (docs/credits.md) names the grant that pays and the line it pays
        # (same invoice); an adjustment of a credit line names its grant too.
        CheckConstraint("(kind = 'credit') = (pays_key IS NOT NULL)", name="credit_pays"),
        CheckConstraint(
            "(kind = 'credit' AND credit_grant_id IS NOT NULL)"
            " OR (kind <> 'credit' AND (credit_grant_id IS NULL OR kind = 'adjustment'))",
            name="credit_grant",
        ),
        # The deterministic idempotency key is unique per invoice. It is not unique
        # across invoices because a void invoice's period is re-issued with the same keys;
        # one live invoice per period (uq_invoices_live_period) makes it unique per period.
        UniqueConstraint("invoice_id", "idempotency_key", name="uq_invoice_lines_key"),
        # Partial: most lines adjust nothing, and indexing their NULLs would only slow
        # bulk posting down.
        Index(
            "ix_invoice_lines_adjusts_key",
            "adjusts_key",
            postgresql_where=text("adjusts_key IS NOT NULL"),
            sqlite_where=text("adjusts_key IS NOT NULL"),
        ),
        Index(
            "ix_invoice_lines_adjusts_line_id",
            "adjusts_line_id",
            postgresql_where=text("adjusts_line_id IS NOT NULL"),
            sqlite_where=text("adjusts_line_id IS NOT NULL"),
        ),
        Index(
            "ix_invoice_lines_credit_grant_id",
            "credit_grant_id",
            postgresql_where=text("credit_grant_id IS NOT NULL"),
            sqlite_where=text("credit_grant_id IS NOT NULL"),
        ),
        # Re-rating deletes draft lines; their ids must not come back for other lines.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    idempotency_key: Mapped[str] = mapped_column(String(400))
    # sha256 of the line's canonical content: "same key, same content" is a hash compare.
    content_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    price_id: Mapped[str] = mapped_column(String(64))
    price_version: Mapped[str] = mapped_column(String(64))
    price_version_id: Mapped[int | None] = mapped_column(ForeignKey("price_versions.id"))
    meter: Mapped[str | None] = mapped_column(String(64))
    dimension_group: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal())
    unit_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_precise: Mapped[Decimal] = mapped_column(ExactDecimal())
    breakdown: Mapped[Any] = mapped_column(JSONDoc)
    # The billing period this line charges for; an adjustment's is the corrected period.
    service_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    service_period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    adjusts_line_id: Mapped[int | None] = mapped_column(ForeignKey("invoice_lines.id"))
    # Key of the corrected line (set even when the correction adds a line that the
    # finalized invoice did not have, where there is no line to point at).
    adjusts_key: Mapped[str | None] = mapped_column(String(400))
    rating_run_id: Mapped[int | None] = mapped_column(ForeignKey("rating_runs.id"))
    # A credit line's grant (its own id, credit_grants.grant_id) and the key of the line it
    # pays; an adjustment of a credit line keeps the grant (migration 0007).
    credit_grant_id: Mapped[str | None] = mapped_column(ForeignKey("credit_grants.grant_id"))
    pays_key: Mapped[str | None] = mapped_column(String(400))

    invoice: Mapped[Invoice] = relationship(back_populates="lines")
    adjusts_line: Mapped[InvoiceLine | None] = relationship(remote_side="InvoiceLine.id")


class OutboxEvent(Base):
    """A fact another system must hear (DESIGN.md invariant 8), written in the same
    transaction as the change it reports (billing/outbox.py). Rows are never updated;
    their delivery state per sink lives in ``outbox_deliveries``.

    ``payload`` is the whole state of the subject at that moment (a finalized invoice
    with all its lines; a draft's adjustment lines), amounts as integer minor units with
    their currency, so a sink can apply it again and reach the same state.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        Index("ix_outbox_events_customer_id", "customer", "id"),
        # Ids order the events (per customer: delivery order) and are never reused.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    # The invoice an invoice.* event is about; NULL for alert.* events (no invoice).
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    # Our customer id (customers.external_id): a customer's events are delivered in order.
    customer: Mapped[str] = mapped_column(String(64))
    # Stable across retries and replays: the sinks derive their own idempotency keys
    # from it (docs/stripe.md).
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    # The logical time of the change (the as_of of the run that made it).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxDelivery(Base):
    """The delivery state of one outbox event to one sink. Times here are wall-clock:
    they record when this process talked to another system (not billing times)."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        Index("ix_outbox_deliveries_sink_status", "sink", "status", "event_id"),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("outbox_events.id"),
        primary_key=True,
    )
    sink: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Not before this instant (backoff after a failed attempt); NULL: now.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A deliverer's claim: others skip the event until the lease ends (a crashed
    # deliverer's claims expire; delivering again is harmless: the sinks look first).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When a deliverer first claimed the event (set once): whatever the sink created in
    # the other system for it, it created after this (migration 0015).
    first_attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the delivery produced in the other system (e.g. a Stripe invoice id).
    external_id: Mapped[str | None] = mapped_column(String(200))


class ExternalRef(Base):
    """Our object's id in another system: a customer's Stripe customer, an invoice's
    Stripe invoice, a line's Stripe invoice item (``kind``: customer, invoice, line).
    Written by a sink after the other system confirmed the object; the sinks still look
    the object up by its metadata before creating one (a crash can fall between)."""

    __tablename__ = "external_refs"

    sink: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    local_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200))
    # The object it belongs to there (a line item's invoice), when there is one.
    parent_external_id: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditGrant(Base):
    """A credit grant (docs/credits.md): prepaid value a customer's usage lines draw down.

    A grant is an amount of money in ``currency`` (``meter`` NULL) or a number of units
    of one meter (``meter`` set; each unit consumed is valued at the price of the line it
    pays for, in ``currency``). ``amount`` is in the grant's unit: major units of the
    currency (a whole number of its minor unit) or units of the meter. Rows are never
    deleted; only the void columns are ever set, once (billing/guards.py, migration
    0006's triggers). What a grant holds at any time is its ledger's, never a column
    here: ``credit_ledger_entries``.
    """

    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint(_in("kind", GRANT_KINDS), name="kind"),
        CheckConstraint(_in("applies_to", GRANT_SCOPES), name="applies_to"),
        CheckConstraint("priority BETWEEN 0 AND 100", name="priority"),
        CheckConstraint("expires_at IS NULL OR expires_at > effective_from", name="validity"),
        # A paid commitment records what the customer paid for it; a promotion nothing.
        CheckConstraint(
            "(kind = 'paid_commit') = (price_paid IS NOT NULL)", name="price_paid_commit"
        ),
        CheckConstraint(
            "(voided_at IS NULL) = (voided_by IS NULL) AND (voided_at IS NULL) = "
            "(void_reason IS NULL)",
            name="void_complete",
        ),
        Index("ix_credit_grants_customer", "customer_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The grant's own id, as people and files name it (printable, no "|").
    grant_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    # NULL: every subscription of the customer (in the grant's currency) may draw on it.
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    meter: Mapped[str | None] = mapped_column(String(64))
    # 0..100, lower first (Stripe's credit grant priority).
    priority: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applies_to: Mapped[str] = mapped_column(String(16))
    # The price ids or meter names of a ``prices`` / ``meters`` grant; [] for all_usage.
    applies_to_ids: Mapped[list[str]] = mapped_column(JSONDoc)
    # What the customer paid for a paid commitment (major units of ``currency``).
    price_paid: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    # At the end of its term the unused balance moves to the next term's grant instead
    # of expiring (docs/credits.md); that grant names this one.
    rollover: Mapped[bool] = mapped_column(Boolean)
    rolled_over_from_id: Mapped[int | None] = mapped_column(ForeignKey("credit_grants.id"))
    # Who created it, when (wall clock of the person's action) and why.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_by: Mapped[str | None] = mapped_column(String(200))
    void_reason: Mapped[str | None] = mapped_column(Text)

    customer: Mapped[Customer] = relationship()
    subscription: Mapped[Subscription | None] = relationship()


class CreditLedgerEntry(Base):
    """One movement of a grant's value between two of its accounts (double entry: what
    leaves ``from_account`` enters ``to_account``; CREDIT_MOVES fixes the pair per kind).

    ``amount`` (> 0) is in the grant's unit; ``available_after`` is the grant's remaining
    balance after this entry (never below zero: the database refuses it). Consumption
    and its reversal name the invoice line they fund (``invoice_line_id``, finalized
    lines only: a draft's lines are replaced when it is re-rated) and ``value_minor``,
    the money they are worth (minor units of the grant's currency; the line's amount is
    minus it). Rows are append-only: never updated, never deleted (triggers).
    """

    __tablename__ = "credit_ledger_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", tuple(CREDIT_MOVES)), name="kind"),
        CheckConstraint(credit_moves_check(), name="moves"),
        CheckConstraint(
            "(kind IN ('consume', 'reverse')) OR (invoice_line_id IS NULL AND value_minor IS NULL)",
            name="only_consumption_funds",
        ),
        CheckConstraint("(kind = 'reverse') = (reverses_entry_id IS NOT NULL)", name="reverses"),
        Index("ix_credit_ledger_entries_grant", "grant_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    grant_id: Mapped[int] = mapped_column(ForeignKey("credit_grants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    from_account: Mapped[str] = mapped_column(String(16))
    to_account: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    available_after: Mapped[Decimal] = mapped_column(ExactDecimal())
    value_minor: Mapped[int | None] = mapped_column(BigInteger)
    invoice_line_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("invoice_lines.id")
    )
    reverses_entry_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("credit_ledger_entries.id")
    )
    # Deterministic (billing/credits/store.py): writing the same movement again is a no-op.
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    # The logical time of the movement (a period's end, an expiry, a void's as_of).
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text)


#: A plan change's choice for cumulative tiers (docs/rating.md, "Plan changes").
PLAN_CHANGE_TIERS = ("continue", "restart")
#: What the person making a plan change calls it; never inferred from the prices.
PLAN_CHANGE_DIRECTIONS = ("upgrade", "downgrade", "lateral")


class SubscriptionPlanChange(Base):
    """A subscription's change of plan at an instant (``meterline subscriptions change``).

    ``subscriptions.plan_id`` stays the plan the subscription started on (the customers
    file's, a term that priced finalized invoices); the plan in effect at an instant is
    the ``to_plan`` of the latest change at or before it (billing/plan_changes.py).
    ``tiers`` says whether the period's cumulative tiers continue across the change or
    restart at it; ``direction`` is what the person named it. ``at`` is the billing
    instant of the change; ``created_at`` the wall clock of the person's action."""

    __tablename__ = "subscription_plan_changes"
    __table_args__ = (
        CheckConstraint(_in("tiers", PLAN_CHANGE_TIERS), name="tiers"),
        CheckConstraint(_in("direction", PLAN_CHANGE_DIRECTIONS), name="direction"),
        CheckConstraint("from_plan <> to_plan", name="changes_plan"),
        UniqueConstraint("subscription_id", "at", name="uq_subscription_plan_changes_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_plan: Mapped[str] = mapped_column(String(64))
    to_plan: Mapped[str] = mapped_column(String(64))
    tiers: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Alert(Base):
    """A spend or usage alert (docs/alerts.md): thresholds on one measure of a billing
    period, for one customer or for every customer on a plan. ``metric`` ``usage``: the
    quantity of ``meter``, thresholds are decimal strings; ``spend``: the rated amount in
    ``currency``, thresholds are integer minor units written as strings. Thresholds are
    canonical decimal strings (billing.alerts.threshold_text), ascending."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in("metric", ALERT_METRICS), name="metric"),
        CheckConstraint("(customer_id IS NULL) <> (plan_id IS NULL)", name="one_target"),
        CheckConstraint(
            "(metric = 'usage' AND meter IS NOT NULL AND currency IS NULL)"
            " OR (metric = 'spend' AND currency IS NOT NULL AND meter IS NULL)",
            name="subject",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id"), index=True)
    metric: Mapped[str] = mapped_column(String(16))
    meter: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(3))
    thresholds: Mapped[list[str]] = mapped_column(JSONDoc)
    # Wall clock of the person's action.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertState(Base):
    """What was announced for one threshold of one alert in one billing period of one
    subscription: ``fired`` (with the outbox event), then possibly ``retracted`` (once).
    The unique key is what makes each announcement happen once."""

    __tablename__ = "alert_states"
    __table_args__ = (
        CheckConstraint(_in("state", ALERT_STATES), name="state"),
        UniqueConstraint(
            "alert_id",
            "subscription_id",
            "threshold",
            "period_start",
            name="uq_alert_states_alert_subscription_threshold_period",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    threshold: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    # The amounts (decimal strings: quantity, or minor units) when it fired / retracted.
    fired_amount: Mapped[str] = mapped_column(String(64))
    retracted_amount: Mapped[str | None] = mapped_column(String(64))
    # The evaluation instants (as_of) that fired / retracted it: logical times.
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fired_event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("outbox_events.id")
    )
    retracted_event_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("outbox_events.id")
    )


class SyncCursor(Base):
    """How far an incremental read of another system got (`meterline customers
    sync-salesforce`, docs/salesforce.md): per source and object, the highest modification
    stamp (Salesforce's SystemModstamp) among the records read, and the digest of the field
    mapping they were read with (a changed mapping reads everything again). Written in the
    transaction that stores what was read, so it never runs ahead of the ledger."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_name: Mapped[str] = mapped_column(String(80), primary_key=True)
    high_water: Mapped[datetime] = mapped_column(UTCDateTime())
    mapping_digest: Mapped[str] = mapped_column(String(64))


class ExportRun(Base):
    """One run of the data-lake export that wrote files (`meterline export`, the
    billing_close DAG's export task; docs/export.md): the month, where to (passwords
    redacted), when it started and finished (wall clock: when this process wrote, not a
    billing time) and the sha256 of the manifest it wrote last (NULL: it did not finish).
    The id is the ``row_version`` of every row the run wrote: ids only grow and are never
    reused, so a later export of a row always carries a larger version."""

    __tablename__ = "export_runs"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    destination: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))


class InvoiceTax(Base):
    """The tax of an invoice finalized while the tax sink was enabled (docs/tax.md).

    Written ``pending`` in the transaction that finalizes the invoice; the tax sink sets it
    ``recorded`` with ``tax_minor`` (the tax of every tax document of the invoice, as the
    tax engine returned it) and ``total_minor`` (the invoice's total plus that tax), or
    ``voided`` once the invoice's void reached the tax engine. Invoice sinks other than
    the tax sink deliver the invoice only once it is no longer pending
    (billing.outbox.delivery.claim). Amounts in minor units of ``currency``; times are
    wall-clock (when the tax engine answered)."""

    __tablename__ = "invoice_taxes"
    __table_args__ = (
        CheckConstraint(_in("status", TAX_STATUSES), name="status"),
        CheckConstraint(
            "status <> 'recorded' OR (tax_minor IS NOT NULL AND total_minor IS NOT NULL)",
            name="recorded_amounts",
        ),
    )

    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    # The tax sink that computes it (meterline/sinks/tax: "avalara").
    engine: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    tax_minor: Mapped[int | None] = mapped_column(BigInteger)
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TaxDocument(Base):
    """One tax transaction committed in the tax engine for an invoice: the invoice's own
    lines (``code`` = the invoice's document code), or the adjustment lines correcting one
    earlier invoice (``reference_code`` = that invoice's document code). ``code`` and
    ``type`` identify it there (AvaTax: company, code and document type);
    ``transaction_id`` is the engine's id, ``status`` its status when last seen
    (Committed, Cancelled). Amounts in minor units as the engine returned them."""

    __tablename__ = "tax_documents"
    __table_args__ = (
        UniqueConstraint("code", "type", name="uq_tax_documents_code_type"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    code: Mapped[str] = mapped_column(String(50))
    type: Mapped[str] = mapped_column(String(32))
    reference_code: Mapped[str | None] = mapped_column(String(50))
    transaction_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    # The document's date (the invoice's finalization day), a local date of the engine.
    document_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TaxLine(Base):
    """The tax of one line of a tax document, as the tax engine returned it: the invoice
    line it taxes (``line_number`` is that line's id as sent), its tax code, the amount
    sent and the taxable, exempt and tax amounts (minor units), and ``details``: one entry
    per jurisdiction ({"jurisdiction", "type", "tax_name", "rate", "taxable_minor",
    "tax_minor"}, the rate as exact decimal text)."""

    __tablename__ = "tax_lines"
    __table_args__ = (
        UniqueConstraint("document_id", "line_number", name="uq_tax_lines_document_id_line_number"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(
        ForeignKey("tax_documents.id", ondelete="CASCADE"), index=True
    )
    invoice_line_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("invoice_lines.id")
    )
    line_number: Mapped[str] = mapped_column(String(50))
    tax_code: Mapped[str | None] = mapped_column(String(25))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    taxable_minor: Mapped[int] = mapped_column(BigInteger)
    exempt_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc)
