"""The tax sink: tax on meterline's own invoices through Avalara's AvaTax REST v2, with
the official ``avalara`` SDK (docs/tax.md).

- mapping.py: an invoice to AvaTax transactions and an answer to the ledger's record
  (pure);
- avatax.py: the SDK client with retries, exact decimals and AvaTax's error shape;
- sink.py: deliver ``invoice.finalized`` (create and commit, look before create) and
  ``invoice.voided`` (void);
- lines.py: the recorded tax as lines of the invoice, for the sinks after tax (Stripe).
"""

from meterline.sinks.tax.avatax import AvalaraConfig, AvaTaxApi, AvaTaxError, AvaTaxUnavailable
from meterline.sinks.tax.sink import TaxDirectory, TaxSink

__all__ = [
    "AvaTaxApi",
    "AvaTaxError",
    "AvaTaxUnavailable",
    "AvalaraConfig",
    "TaxDirectory",
    "TaxSink",
]
