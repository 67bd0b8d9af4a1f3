"""The fault proxy the sink tests put between the Stripe SDK and the stand-in (it lives
beside the stand-in, where the simulator uses it too)."""

from meterline.demo.stripe_standin.faults import FAULTS, FaultProxy

__all__ = ["FAULTS", "FaultProxy"]
