"""A stateful stand-in for the part of Stripe's API meterline's Stripe sink uses,
validated against the pinned `stripe` SDK's own parameter and resource types.

See docs/stripe-standin.md for what it covers and what it does not.
"""

from .server import API_VERSION, StripeStandIn
from .store import Store, StripeError

__all__ = ["API_VERSION", "Store", "StripeError", "StripeStandIn"]
