"""Loading customers, subscriptions and their discounts from JSONL, YAML or CSV.

One row per subscription (a customer with two subscriptions has two rows that agree on
the customer's name, currency, timezone and Stripe terms: its Stripe customer id,
collection method and days until due); the fields and their rules: docs/ledger.md.
Loading is all or nothing: every problem of every row is reported with its line and
field (billing.customers.errors.CustomersFileInvalid), and nothing is written.

Where each rule lives:

- rows: each field (printable ids as ingest accepts them, types, dates, timezones,
  anchor day, discounts);
- read: the three formats, and the rows checked together (a customer's rows agree; two
  customers never share a Stripe customer id; a subscription is on one row);
- checks: the rows against the ledger: billable by the loaded catalog; no two
  subscriptions of one customer active on the same day pricing the same usage (usage is
  billed by customer and meter); the terms that priced a finalized invoice never change
  in place (the catalog's edit rule, billing/catalog/edit_rule.py, for subscriptions);
  a customer's Stripe customer id is no stored customer's but its own;
- load: the checks, then one upsert in the caller's transaction.
"""

from billing.customers.checks import MeteredPrice
from billing.customers.errors import CustomersFileInvalid, Problem
from billing.customers.load import (
    CustomersLoadResult,
    check_priced,
    load_customers,
    load_customers_file,
)
from billing.customers.read import (
    FORMATS,
    FileFormat,
    ParsedFile,
    detect_format,
    parse_records,
    read_customers,
    read_file,
)
from billing.customers.rows import (
    CustomerRow,
    DiscountIdentity,
    DiscountRow,
    discount_identity,
    printable_problem,
    timezone_problem,
)

__all__ = [
    "FORMATS",
    "CustomerRow",
    "CustomersFileInvalid",
    "CustomersLoadResult",
    "DiscountIdentity",
    "DiscountRow",
    "FileFormat",
    "MeteredPrice",
    "ParsedFile",
    "Problem",
    "check_priced",
    "detect_format",
    "discount_identity",
    "load_customers",
    "load_customers_file",
    "parse_records",
    "printable_problem",
    "read_customers",
    "read_file",
    "timezone_problem",
]
