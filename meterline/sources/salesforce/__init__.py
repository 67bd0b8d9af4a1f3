"""Customers, subscriptions and discounts from Salesforce (`meterline customers
sync-salesforce`, docs/salesforce.md).

- mapping: the YAML field mapping (which objects, which fields, how each maps);
- soql: the queries, built from the mapping (pure);
- changes: which records a sync reads (modified since each object's high-water mark, and
  what they need to become whole rows);
- records: records to customers-file rows, and the rows' problems back to records (pure);
- client: simple-salesforce, the settings' credentials, paging, Salesforce's errors;
- errors: refused (exit 2) or unavailable (exit 4).

meterline.jobs.salesforce runs a sync: the rows go through the customers file's own
checks and store (billing.customers), all or nothing, with the high-water marks in the
same transaction.
"""

from meterline.sources.salesforce.errors import (
    MappingInvalid,
    RecordsInvalid,
    SalesforceError,
    SalesforceNotConfigured,
    SalesforceRefused,
    SalesforceUnavailable,
)
from meterline.sources.salesforce.mapping import SalesforceMapping, read_mapping

__all__ = [
    "MappingInvalid",
    "RecordsInvalid",
    "SalesforceError",
    "SalesforceMapping",
    "SalesforceNotConfigured",
    "SalesforceRefused",
    "SalesforceUnavailable",
    "read_mapping",
]
