"""The usage event: one thing a customer did (or a level they were at), at one instant."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Event(BaseModel):
    """A usage event for the Python API. Files carry the same fields as text.

    event_id is the idempotency key: re-sending an event with the same id and content is
    a no-op; the same id with other content is refused as a conflict.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    customer_id: str = Field(min_length=1, max_length=256)
    meter: str = Field(min_length=1)
    # Timezone-aware; stored in UTC with millisecond precision.
    timestamp: datetime
    value: Decimal = Decimal(1)
    properties: dict[str, str] = Field(default_factory=dict)
    source: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)

    @field_validator("value", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("value must be a Decimal, int or decimal string, not a float")
        return value
