"""A stateful stand-in for the part of AvaTax REST v2 meterline's tax sink uses, checked
against Avalara's own model definitions (definitions.json); tax from a rate table.

See docs/tax.md ("The AvaTax stand-in") for what it covers and what it does not.
"""

from .server import FAULTS, AvaTaxStandIn
from .store import AvaTaxFault, Jurisdiction, RateTable, Store

__all__ = ["FAULTS", "AvaTaxFault", "AvaTaxStandIn", "Jurisdiction", "RateTable", "Store"]
