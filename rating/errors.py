"""Errors raised by the rating engine. Every one is a ValueError, so a caller that
validates input (the catalog loader, the `quote` command) can catch ValueError and
show the message, which always names the offending price, field or tier."""

from __future__ import annotations


class PriceError(ValueError):
    """A price definition is invalid. The message names the price and the field, and
    for tier problems the tier (numbered from 1), e.g.
    "price 'volume/fin_resolution@2026-01-01 USD': tier 2: up_to 500 is not above the
    previous tier's 1000"."""


class RatingError(ValueError):
    """A quantity or a list of version windows cannot be rated."""


class QuantityError(RatingError):
    """A quantity is not a finite, non-negative decimal number."""


class CurrencyMismatchError(ValueError):
    """Two amounts in different currencies were combined."""


class FloatNotAllowedError(TypeError, ValueError):
    """A Python float reached money code. Binary floats cannot represent 0.99 exactly,
    so every amount and quantity must be a Decimal, an int or a decimal string."""
