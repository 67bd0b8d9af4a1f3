"""Meter definitions: what each event type means and how a period's quantity is computed.

The catalog YAML's `meters:` section. Plans and prices live in the same file and are
read by the rating and billing code.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Aggregation(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"
    TIME_WEIGHTED = "time_weighted"

    @property
    def is_counter(self) -> bool:
        """Counters add up events; a negative value in one is refused at ingest.

        Gauges (max, latest, time_weighted) report a level, not an increment.
        """
        return self in (Aggregation.SUM, Aggregation.COUNT, Aggregation.UNIQUE_COUNT)


class MeterDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    aggregation: Aggregation
    unit: str = "unit"
    # Allowed property names, each with its allowed values (null or [] = any value).
    properties: dict[str, list[str] | None] = Field(default_factory=dict)
    # Properties a price may group or filter by (each must be a declared property).
    dimensions: list[str] = Field(default_factory=list)
    # unique_count: the property whose distinct values are counted.
    unique_property: str | None = None
    # Only events whose properties match every entry count towards the meter (rollups
    # and period quantities); an event lacking a filtered property does not match.
    filter: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> MeterDefinition:
        for dim in self.dimensions:
            if dim not in self.properties:
                raise ValueError(f"dimension {dim!r} is not one of the meter's properties")
        if self.aggregation is Aggregation.UNIQUE_COUNT:
            if not self.unique_property:
                raise ValueError("a unique_count meter needs unique_property")
            if self.unique_property not in self.properties:
                raise ValueError(f"unique_property {self.unique_property!r} is not a property")
        for prop, value in self.filter.items():
            if prop not in self.properties:
                raise ValueError(f"filter property {prop!r} is not one of the meter's properties")
            allowed = self.allowed_values(prop)
            if allowed and value not in allowed:
                raise ValueError(
                    f"filter {prop}={value!r} can never match: allowed values are {allowed}"
                )
        return self

    def allowed_values(self, prop: str) -> list[str]:
        return list(self.properties.get(prop) or [])


class MeterCatalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    meters: dict[str, MeterDefinition]

    def get(self, name: str) -> MeterDefinition:
        try:
            return self.meters[name]
        except KeyError:
            raise KeyError(
                f"unknown meter {name!r}; known: {', '.join(sorted(self.meters))}"
            ) from None

    def validation_params(self) -> dict[str, Any]:
        """The catalog as bound parameters for the ingest validation query."""
        return {
            "meter_props": {m.name: sorted(m.properties) for m in self.meters.values()},
            "prop_values": {
                f"{m.name}\t{prop}": sorted(values or [])
                for m in self.meters.values()
                for prop, values in m.properties.items()
            },
            "counter_meters": sorted(
                m.name for m in self.meters.values() if m.aggregation.is_counter
            ),
        }


class CatalogError(ValueError):
    """The catalog file is invalid; the message names the file and the entry."""


def load_meters(path: Path) -> MeterCatalog:
    """Read and validate the `meters:` section of a catalog YAML file."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    return meters_from_dict(data, str(path))


def meters_from_dict(data: Any, origin: str = "catalog") -> MeterCatalog:
    if not isinstance(data, dict) or not isinstance(data.get("meters"), list):
        raise CatalogError(f"{origin}: expected a mapping with a `meters:` list")
    meters: dict[str, MeterDefinition] = {}
    for index, raw in enumerate(data["meters"]):
        label = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
        try:
            meter = MeterDefinition.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'meter'}: {e['msg']}" for e in exc.errors()
            )
            raise CatalogError(f"{origin}: meter {label}: {problems}") from None
        if meter.name in meters:
            raise CatalogError(f"{origin}: meter {meter.name} is defined twice")
        meters[meter.name] = meter
    return MeterCatalog(meters=meters)
