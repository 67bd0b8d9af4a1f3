"""One module per price model, each implementing rating.models.base.ChargeModel."""

from rating.models.base import ChargeModel, PeriodState, Window
from rating.models.flat import Flat
from rating.models.graduated import Graduated
from rating.models.package import Package
from rating.models.per_unit import PerUnit
from rating.models.percentage import Percentage
from rating.models.volume import Volume

__all__ = [
    "ChargeModel",
    "Flat",
    "Graduated",
    "Package",
    "PerUnit",
    "Percentage",
    "PeriodState",
    "Volume",
    "Window",
]
