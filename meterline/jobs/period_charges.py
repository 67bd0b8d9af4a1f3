"""Moved to rating/period.py (issue 12): these names stay importable here until the
audit imports them from rating.period."""

from rating.period import (
    ADDITIVE,
    MINIMUM_PRICE_ID,
    PriceSpec,
    PriceVersionSpec,
    QuantityKey,
    WindowQuantities,
    matches_filter,
    quantity_for,
    version_windows,
    windows_needed,
)

__all__ = [
    "ADDITIVE",
    "MINIMUM_PRICE_ID",
    "PriceSpec",
    "PriceVersionSpec",
    "QuantityKey",
    "WindowQuantities",
    "matches_filter",
    "quantity_for",
    "version_windows",
    "windows_needed",
]
