"""Settings, read from the environment (prefix METERLINE_) or a .env file.

Invalid settings fail at start with a message that names the setting. Every number has
a range (its field's bounds, the README's settings table): a value outside it is refused there,
rather than overflowing a date or a batch later. The ranges are wide enough for any real
use and small enough that every computation with them stays in range: the event age and
grace period are added to or subtracted from dates of 1900-2299 (the event timestamps'
range) and 2000-2200 (the command line's dates, meterline.cli.options).
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as UndecodableSetting

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "catalog" / "intercom.yaml"


#: Longest AvaTax company code taken, and the characters it may not hold: each would
#: change the meaning of the URL path the SDK puts it in.
COMPANY_CODE_MAX = 50
_URL_SPECIAL = ("/", "\\", "?", "#", "%")


def _redacted(url: str) -> str:
    """``url`` without a password (a URL in a message)."""
    return re.sub(r"//([^/@]*):[^/@]*@", r"//\1:***@", url)


def _base_url(value: str, example: str) -> str:
    """A service's base URL without its trailing ``/``. Raises ValueError for one with a
    user or password (credentials have settings of their own, and a URL is printed in
    messages), a query, a fragment, or a port that is no port."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError(f"{_redacted(value)!r} has no valid port, e.g. {example}") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{_redacted(value)!r} holds a user or password: give the URL without them (the"
            " credentials have settings of their own)"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"{_redacted(value)!r} has a query or fragment: give the base URL alone, e.g. {example}"
        )
    return value.rstrip("/")


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable."""


# The days METERLINE_BILLING_GO_LIVE may name (the command line's dates are 2000-2200).
GO_LIVE_RANGE = (date(2000, 1, 1), date(2199, 12, 31))


# The journal's roles and their default account numbers (docs/revrec.md, "Account
# mapping"): a common US chart of accounts' ranges (1xxx assets, 2xxx liabilities, 4xxx
# revenue, 49xx contra revenue). METERLINE_JOURNAL_ACCOUNTS overrides any of them.
DEFAULT_JOURNAL_ACCOUNTS: dict[str, str] = {
    "accounts_receivable": "1200",
    "unbilled_receivables": "1210",
    "deferred_revenue": "2400",
    "revenue": "4000",
    "discounts": "4900",
    "credits": "4910",
    "breakage": "4950",
}


def _account_ok(account: str) -> bool:
    """An account as NetSuite's import takes it: its number, or number and name; printable,
    at most 200 characters."""
    return 0 < len(account.strip()) == len(account) <= 200 and account.isprintable()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="METERLINE_", env_file=".env", extra="ignore", frozen=True
    )

    warehouse_url: str = Field(
        default="chdb://.meterline/warehouse",
        description="chdb://PATH (embedded, a folder) or clickhouse://user:pass@host:8123/db",
    )
    ledger_url: str = Field(
        default="sqlite:///.meterline/ledger.db",
        description="SQLAlchemy URL of the billing ledger (sqlite:///... or postgresql+psycopg://...)",
    )
    catalog_path: Path = Field(
        default=DEMO_CATALOG,
        description="Default file of `meterline catalog load` (commands read the loaded catalog)",
    )
    warehouse_lock_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="How long to wait for another process's chDB folder lock (at most a day)",
    )
    max_event_age_days: int = Field(
        default=45,
        ge=1,
        le=3_660,
        description="Events older than this (vs. ingest time) are rejected (1 to 3660 days)",
    )
    future_tolerance_s: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Events this far in the future (vs. ingest time) are accepted (at most a day)",
    )
    billing_go_live: date | None = Field(
        default=None,
        description="Only periods ending after this date (UTC) are billed (metering go-live)",
    )
    finalize_grace_hours: int = Field(
        default=72,
        ge=0,
        le=8_784,
        description="Hours after a period ends before its invoice is finalized (0 to 8784, a"
        " leap year)",
    )
    # 1M rows: a 10M-row day peaked at 2.3 GB (3.4 GB with 2M-row batches) and used no
    # more CPU (bench/: python -m bench).
    ingest_batch_rows: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Rows validated and inserted per ingest batch (1 to 100,000,000)",
    )
    # Read exactly as a Decimal from its text ("0.05"), never through a float.
    ingest_max_rejected_share: Decimal = Field(
        default=Decimal("0.05"),
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="`meterline ingest` exits 1 when more than this share of its rows is "
        "rejected (and always when every row is)",
    )
    delivery_path: str = Field(
        default="deliveries/{date}",
        description="Where the nightly ingest (the usage_ingest DAG, `meterline ingest"
        " --delivery DAY`) finds a UTC day's usage files: a folder (read recursively), a"
        " file or a glob, local or any fsspec URL (file://, s3://...), naming the day with"
        " {date} (YYYY-MM-DD) or {year}, {month} and {day}",
    )
    export_url: str | None = Field(
        default=None,
        description="Where the billing_close DAG's export task writes each closed month's"
        " Parquet files (docs/export.md): a local folder or any fsspec URL (s3:// needs"
        " s3fs installed); unset: the task is skipped (`meterline export --to URL` by hand)",
    )
    reconcile_fail_on: Literal["error", "warning"] = Field(
        default="error",
        description="Reconcile fails (exit 1, the billing_close DAG's reconcile task) on"
        " unacknowledged findings of this severity or worse: error (money differs) or"
        " warning (also usage billed to no one)",
    )

    # Stripe (meterline/sinks/stripe, docs/stripe.md). The key is a secret: never printed
    # or logged. Inside Airflow, the `stripe_default` Connection (password: the key; host:
    # the API base) is used when METERLINE_STRIPE_API_KEY is not set.
    stripe_api_key: SecretStr | None = Field(
        default=None,
        description="Stripe secret key (sk_live_... or sk_test_...); unset: the"
        " stripe_default Airflow Connection, else the Stripe sink is not configured",
    )
    stripe_api_base: str = Field(
        default="https://api.stripe.com",
        description="Stripe's API base URL (a test server's in tests and the demo)",
    )
    stripe_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Seconds to wait for one Stripe request (at most 600)",
    )
    stripe_concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Customers delivered to Stripe at once (1 to 64; Stripe's live-mode"
        " limit is 100 requests per second)",
    )
    stripe_request_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        description="Tries of one Stripe request on a connection error, 5xx or 429 (1 to 10)",
    )
    # The alerts' webhook (meterline/sinks/webhook.py, docs/alerts.md). The secret signs
    # every request: never printed or logged.
    webhook_url: str | None = Field(
        default=None,
        description="Where alert events are POSTed; unset: the webhook sink is not"
        " configured (the events wait in the outbox)",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The shared secret alert webhooks are signed with (HMAC-SHA256)",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Seconds to wait for the webhook to answer (at most 600)",
    )
    # Tax on meterline's own invoices through Avalara's AvaTax (meterline/sinks/tax,
    # docs/tax.md). The license key is a secret: never printed or logged.
    avalara_account_id: str | None = Field(
        default=None, description="AvaTax account id (with the license key: Basic auth)"
    )
    avalara_license_key: SecretStr | None = Field(
        default=None, description="AvaTax license key of that account"
    )
    avalara_api_base: str = Field(
        default="https://rest.avatax.com",
        description="AvaTax's REST v2 base URL: https://rest.avatax.com, the sandbox's"
        " https://sandbox-rest.avatax.com, or a test server's",
    )
    avalara_company_code: str | None = Field(
        default=None, description="The AvaTax company that records the transactions"
    )
    avalara_origin_address: dict[str, str] | None = Field(
        default=None,
        description="Where the company sells from (the transactions' shipFrom), a JSON"
        " object with the customers file's billing_address fields",
    )
    avalara_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Seconds to wait for one AvaTax request (at most 600)",
    )
    avalara_request_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        description="Tries of one AvaTax request on a connection error, timeout, 5xx or 429"
        " (1 to 10)",
    )
    avalara_document_prefix: str = Field(
        default="meterline-",
        pattern=r"^[A-Za-z0-9_-]{0,20}$",
        description="Prefix of the AvaTax document codes (code = prefix + invoice id):"
        " letters, digits, '-', '_', at most 20; one per ledger writing to one company",
    )
    tax_sink: Literal["none", "avalara"] = Field(
        default="none",
        description="none: meterline computes no tax (AvaTax for Stripe may, on Stripe's"
        " side); avalara: each invoice finalized is taxed through AvaTax before it is"
        " delivered to Stripe",
    )
    outbox_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed deliveries of one outbox event before it is parked (1 to 100)",
    )
    outbox_lease_seconds: int = Field(
        default=900,
        ge=1,
        le=86_400,
        description="Seconds a deliverer's claim keeps others off an outbox event (1 to"
        " 86,400); longer than one delivery can take with every retry. A deliverer that dies"
        " leaves its claims to be delivered again after this long",
    )
    stripe_collection_method: Literal["charge_automatically", "send_invoice"] = Field(
        default="charge_automatically",
        description="Stripe invoices' collection method for customers whose customers-file"
        " row names none",
    )
    stripe_days_until_due: int = Field(
        default=30,
        ge=1,
        le=365,
        description="Days until due of send_invoice Stripe invoices for customers whose"
        " row names none (1 to 365)",
    )

    # The HTTP service (`meterline serve`, docs/service.md).
    service_max_body_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest request body `POST /v1/events` takes, in bytes (1,024 to"
        " 268,435,456: 256 MiB); a larger one is refused with 413",
    )
    service_flush_events: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="The service stores buffered events once this many wait (1 to 10,000,000)",
    )
    service_flush_ms: int = Field(
        default=200,
        ge=0,
        le=60_000,
        description="... or once the oldest has waited this many milliseconds (0 to 60,000)",
    )
    service_buffer_max_events: int = Field(
        default=500_000,
        ge=1,
        le=100_000_000,
        description="Events that may wait to be stored; a request beyond is refused with"
        " 503 and Retry-After (1 to 100,000,000)",
    )
    service_rate_per_s: float = Field(
        default=100.0,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Requests per second each API key may make, on average (per service"
        " process; more than 0, at most 1,000,000)",
    )
    service_rate_burst: int = Field(
        default=200,
        ge=1,
        le=1_000_000,
        description="Requests an API key may make at once before the rate applies (1 to 1,000,000)",
    )
    journal_accounts: dict[str, str] = Field(
        default_factory=dict,
        description="Account numbers of the journal's roles, a JSON object overriding"
        ' DEFAULT_JOURNAL_ACCOUNTS (docs/revrec.md); discounts "": net into revenue',
    )
    journal_revenue_accounts: dict[str, str] = Field(
        default_factory=dict,
        description="Revenue account per product line (a catalog price id), a JSON object;"
        " the others take the revenue role's",
    )
    journal_subsidiary: str | None = Field(
        default=None,
        max_length=200,
        description="The NetSuite subsidiary of every journal entry (OneWorld accounts)",
    )
    service_ledger_read_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger for the service's read endpoints (GET"
        " invoices, explain, usage, preview), e.g. a PostgreSQL role that may only SELECT"
        " (docs/service.md); default: METERLINE_LEDGER_URL",
    )

    # Salesforce (`meterline customers sync-salesforce`, docs/salesforce.md): a username
    # with its password and security token (a SOAP login at the login URL), or an instance
    # URL with a session id. The password, token and session id are never printed or logged.
    salesforce_username: str | None = Field(
        default=None, description="Salesforce user the sync logs in as (with password and token)"
    )
    salesforce_password: SecretStr | None = Field(default=None, description="That user's password")
    salesforce_security_token: SecretStr | None = Field(
        default=None, description="That user's security token (appended to the password)"
    )
    salesforce_login_url: str = Field(
        default="https://login.salesforce.com",
        description="Where the user logs in: https://login.salesforce.com, a sandbox's"
        " https://test.salesforce.com or the org's My Domain URL",
    )
    salesforce_instance_url: str | None = Field(
        default=None,
        description="The org's instance URL, e.g. https://acme.my.salesforce.com (with a"
        " session id: no login)",
    )
    salesforce_session_id: SecretStr | None = Field(
        default=None, description="A session id or OAuth access token for the instance URL"
    )
    salesforce_api_version: str = Field(
        default="59.0", description="Salesforce REST API version, e.g. 59.0"
    )
    salesforce_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Seconds to wait for one Salesforce request (at most 600)",
    )
    salesforce_mapping: Path | None = Field(
        default=None,
        description="The field mapping file `customers sync-salesforce` reads when given no"
        " --mapping",
    )

    @field_validator("avalara_api_base")
    @classmethod
    def _check_avalara_base(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            http = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # an unbalanced [
            http = False
        if not http:
            raise ValueError(
                f"{_redacted(value)!r} is not an http(s) URL, e.g. https://rest.avatax.com"
            )
        return _base_url(value, "https://rest.avatax.com")

    @field_validator("avalara_company_code")
    @classmethod
    def _check_company_code(cls, value: str | None) -> str | None:
        # The SDK puts the code into URL paths unescaped ('.../companies/{}/...').
        if value is None or not value.strip():
            return None
        odd = [c for c in value if not c.isprintable() or c in _URL_SPECIAL]
        if odd or value != value.strip() or len(value) > COMPANY_CODE_MAX:
            raise ValueError(
                f"{value[:60]!r} is not an AvaTax company code: printable, without spaces at"
                f" either end or any of {' '.join(_URL_SPECIAL)}, at most"
                f" {COMPANY_CODE_MAX} characters (the company's code in AvaTax, e.g. DEFAULT)"
            )
        return value

    @field_validator("avalara_origin_address", mode="before")
    @classmethod
    def _check_origin(cls, value: Any) -> dict[str, str] | None:
        from pydantic import ValidationError as Invalid

        from billing.customers.tax_profile import BillingAddress

        example = (
            'e.g. {"line1": "1 Main St", "city": "Albany", "region": "NY", "postal_code":'
            ' "12207", "country": "US"}'
        )
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(
                    f"is not JSON: give a JSON object with the customers file's"
                    f" billing_address fields, {example}"
                ) from None
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(
                f"must be a JSON object with the customers file's billing_address fields,"
                f" not a {type(value).__name__}: {example}"
            )
        try:
            return BillingAddress.model_validate(value).stored()
        except Invalid as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message = f"unknown field (the fields are {', '.join(BillingAddress.model_fields)})"
            elif first["type"] == "missing":
                message = f"required: {example}"
            raise ValueError(f"{where + ': ' if where else ''}{message}") from None

    @field_validator("tax_sink")
    @classmethod
    def _check_tax_sink(cls, value: str, info: ValidationInfo) -> str:
        if value == "avalara":
            # A setting given but invalid is absent from info.data: its own error says
            # what is wrong with it, so it is not also called missing here.
            missing = [
                f"METERLINE_{name.upper()}"
                for name in ("avalara_company_code", "avalara_origin_address")
                if name in info.data and not info.data[name]
            ]
            if missing:
                raise ValueError(
                    f"avalara needs {' and '.join(missing)} (the AvaTax company that records"
                    " the transactions, and the address it sells from): set them, or"
                    " METERLINE_TAX_SINK=none"
                )
        return value

    @field_validator("journal_accounts")
    @classmethod
    def _check_journal_accounts(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_JOURNAL_ACCOUNTS))
        if unknown:
            raise ValueError(
                f"unknown role(s) {', '.join(unknown)}: the roles are"
                f" {', '.join(DEFAULT_JOURNAL_ACCOUNTS)}"
            )
        for role, account in value.items():
            if not _account_ok(account) and not (role == "discounts" and account == ""):
                raise ValueError(f"{role}: {account!r} is not an account number or name")
        return value

    @field_validator("journal_revenue_accounts")
    @classmethod
    def _check_revenue_accounts(cls, value: dict[str, str]) -> dict[str, str]:
        for product, account in value.items():
            if not _account_ok(account):
                raise ValueError(f"{product}: {account!r} is not an account number or name")
        return value

    @field_validator("journal_subsidiary")
    @classmethod
    def _check_subsidiary(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _account_ok(value):
            raise ValueError(
                f"{value[:60]!r} is not a subsidiary's name: printable, on one line, without"
                " spaces at either end (NetSuite's name, e.g. 'Parent Company : US')"
            )
        return value

    @property
    def journal_account_map(self) -> dict[str, str]:
        """The account of each journal role: DEFAULT_JOURNAL_ACCOUNTS with
        METERLINE_JOURNAL_ACCOUNTS over it."""
        return {**DEFAULT_JOURNAL_ACCOUNTS, **self.journal_accounts}

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        # Blank is unset (a line `KEY=` in .env): the sink is then not configured.
        if value is None or not value.strip():
            return None
        try:
            parts = urlsplit(value)
            http = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError:  # an unbalanced [, a port that is no port
            http = False
        if not http or value != value.strip() or not value.isprintable():
            raise ValueError(
                f"{_redacted(value)!r} is not an http(s) URL with a host, e.g."
                " https://hooks.example.com/meterline"
            )
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise ValueError(
                f"{_redacted(value)!r} holds a user, password or fragment: give the URL without"
                " them (the receiver checks the signature, METERLINE_WEBHOOK_SECRET)"
            )
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _blank_webhook_secret(cls, value: Any) -> Any:
        # Blank is unset: no signing secret, so the sink is not configured (exit code 2).
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("stripe_api_base")
    @classmethod
    def _check_stripe_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://api.stripe.com")
        return value.rstrip("/")

    @field_validator("salesforce_login_url", "salesforce_instance_url")
    @classmethod
    def _check_salesforce_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (info.field_name == "salesforce_instance_url" and not value.strip()):
            return None  # a blank instance URL is none (a line `KEY=` in .env)
        try:
            parts = urlsplit(value)
            https = parts.scheme == "https" and bool(parts.hostname)
        except ValueError:  # a port that is no number, an unbalanced [
            https = False
        # Credentials never travel over plain HTTP.
        if not https:
            raise ValueError(
                f"{_redacted(value)!r} is not an https URL, e.g. https://login.salesforce.com"
            )
        return _base_url(value, "https://login.salesforce.com")

    @field_validator("salesforce_api_version")
    @classmethod
    def _check_salesforce_version(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]{1,2}\.0", value):
            raise ValueError(f"{value!r} is not a Salesforce API version such as 59.0")
        return value

    @field_validator("billing_go_live")
    @classmethod
    def _check_go_live(cls, value: date | None) -> date | None:
        low, high = GO_LIVE_RANGE
        if value is not None and not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high} (a day YYYY-MM-DD)")
        return value

    @property
    def late_lookback(self) -> timedelta:
        """How far back late events can change anything: events older than the ingest
        window (max_event_age_days) are refused at ingest, so no older day gets dirty and
        no older period needs an adjustment; 2 days of margin for a period or day that
        straddles the window's edge. The nightly rollup, close and the audit use it."""
        return timedelta(days=self.max_event_age_days + 2)

    def delivery_location(self, day: date) -> str:
        """The delivery path for a UTC day: METERLINE_DELIVERY_PATH with its fields
        filled ({date} = 2026-11-01; {year} 2026, {month} 11, {day} 01)."""
        return _fill_delivery(self.delivery_path, day)

    @field_validator("delivery_path")
    @classmethod
    def _check_delivery_path(cls, value: str) -> str:
        probe = date(2001, 2, 3)
        try:
            shown = _fill_delivery(value, probe)
        except (KeyError, IndexError, ValueError) as exc:
            why = f"unknown field {{{exc.args[0]}}}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(
                f"{value!r} is not a path template ({why}): use {{date}}, or {{year}},"
                " {month} and {day}, e.g. deliveries/{date}"
            ) from None
        # Each day its own delivery: a template that leaves out the year, month or day
        # would read one delivery on several days.
        others = (date(2001, 2, 4), date(2001, 3, 3), date(2002, 2, 3))
        if any(_fill_delivery(value, other) == shown for other in others):
            raise ValueError(
                f"{value!r} does not name the whole day: use {{date}}, or {{year}}, {{month}}"
                " and {day}, e.g. deliveries/{date}"
            )
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _check_warehouse_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme == "chdb":
            if not value[len("chdb://") :].strip():
                raise ValueError("chdb:// needs a folder path, e.g. chdb://.meterline/warehouse")
            return value
        if scheme in ("clickhouse", "clickhouses", "http", "https"):
            if not urlsplit(value).hostname:
                raise ValueError(f"{scheme}:// needs a host, e.g. clickhouse://user@host:8123/db")
            return value
        raise ValueError(
            f"unsupported scheme {scheme!r}: use chdb://PATH or clickhouse://user:pass@host:8123/db"
        )

    @field_validator("ledger_url", "service_ledger_read_url")
    @classmethod
    def _check_ledger_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://user:pass@host:5432/db")
        return value

    def for_reads(self) -> Settings:
        """These settings with the ledger the service's read endpoints use:
        METERLINE_SERVICE_LEDGER_READ_URL when set (a role that may only SELECT), else
        the same settings."""
        if self.service_ledger_read_url is None:
            return self
        return self.model_copy(update={"ledger_url": self.service_ledger_read_url})


def _fill_delivery(template: str, day: date) -> str:
    return template.format_map(
        {
            "date": day.isoformat(),
            "year": f"{day.year:04d}",
            "month": f"{day.month:02d}",
            "day": f"{day.day:02d}",
        }
    )


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one clear message per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UndecodableSetting as exc:
        # A setting of JSON (an object or a list) that is not JSON: pydantic-settings
        # decodes it before any validator runs, and names the field only in its text.
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"METERLINE_{found.group(1).upper()}" if found else "a METERLINE_ setting"
        why = exc.__cause__ or exc
        raise SettingsError(
            f"invalid setting {name}: is not JSON ({why}): write it as JSON, as the"
            " README's settings table shows, or unset it"
        ) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"METERLINE_{field.upper()}: {message}")
        if len(problems) == 1:
            raise SettingsError(f"invalid setting {problems[0]}") from None
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None


@cache
def settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
