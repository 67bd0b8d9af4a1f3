"""The Stripe sink: meterline's finalized invoices as Stripe invoices with one invoice
item per line, through the official ``stripe`` SDK (docs/stripe.md)."""

from meterline.sinks.stripe.client import StripeApi, StripeConfig
from meterline.sinks.stripe.sink import StripeSink

__all__ = ["StripeApi", "StripeConfig", "StripeSink"]
