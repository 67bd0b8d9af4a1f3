"""Meter definitions: what each event type means and how a period's quantity is computed.

The catalog's `meters:` section, as typed objects. meters/ reads no file: the caller
hands it a MeterCatalog (billing.catalog reads the catalog the ledger holds, validates
the whole of it and builds this one with `parse_meters`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

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
                raise ValueError(
                    f"dimensions: {dim!r} is not one of the meter's properties"
                    f" ({_names(self.properties)})"
                )
        if self.aggregation is Aggregation.UNIQUE_COUNT:
            if not self.unique_property:
                raise ValueError("unique_property: a unique_count meter needs one")
            if self.unique_property not in self.properties:
                raise ValueError(
                    f"unique_property: {self.unique_property!r} is not one of the meter's"
                    f" properties ({_names(self.properties)})"
                )
        elif self.unique_property is not None:
            raise ValueError("unique_property: only a unique_count meter counts distinct values")
        for prop, value in self.filter.items():
            if prop not in self.properties:
                raise ValueError(
                    f"filter: {prop!r} is not one of the meter's properties"
                    f" ({_names(self.properties)})"
                )
            allowed = self.allowed_values(prop)
            if allowed and value not in allowed:
                raise ValueError(
                    f"filter: {prop}={value!r} can never match: allowed values are"
                    f" {', '.join(allowed)}"
                )
        return self

    def allowed_values(self, prop: str) -> list[str]:
        return list(self.properties.get(prop) or [])

    def counting_key(self) -> tuple[Any, ...]:
        """What decides the quantities this meter gives a period: two definitions with the
        same key count every set of events the same. Description, unit and the allowed
        values (checked at ingest, on events to come) do not count; dimensions do, except
        for sum and count, whose per-group quantities add up to the same total."""
        additive = self.aggregation in (Aggregation.SUM, Aggregation.COUNT)
        return (
            self.aggregation.value,
            self.unique_property,
            tuple(sorted(self.filter.items())),
            () if additive else tuple(sorted(self.dimensions)),
        )


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
    """The catalog is invalid; the message names the entry and the field."""


METER_FIELDS = tuple(MeterDefinition.model_fields)


def _names(items: Any) -> str:
    return ", ".join(sorted(items)) or "none declared"


def _problem(where: str, err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown field (fields: {', '.join(METER_FIELDS)})"
    elif err["type"] == "enum" and loc == ["aggregation"]:
        msg = f"{err['input']!r} is not an aggregation (one of: {', '.join(Aggregation)})"
    elif err["type"] == "missing":
        msg = "is required"
    elif not loc and (field := re.match(r"(\w+): (.*)\Z", msg, re.S)):
        loc, msg = [field.group(1)], field.group(2)
    return f"{where}{'.' + '.'.join(loc) if loc else ''}: {msg}"


def parse_meters(items: Any, path: str = "meters") -> tuple[dict[str, MeterDefinition], list[str]]:
    """The valid meters of a catalog's `meters:` list, and a problem for every invalid
    entry, each naming the entry by path and name and the field (``meters[1] (seats).
    dimensions: 'region' is not one of the meter's properties (seat_type)``)."""
    if not isinstance(items, list) or not items:
        return {}, [f"{path}: must be a non-empty list of meters"]
    meters: dict[str, MeterDefinition] = {}
    problems: list[str] = []
    for index, raw in enumerate(items):
        where = f"{path}[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping with name and aggregation")
            continue
        if isinstance(raw.get("name"), str):
            where += f" ({raw['name']})"
        try:
            meter = MeterDefinition.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problem(where, err) for err in exc.errors())
            continue
        if meter.name in meters:
            problems.append(f"{where}.name: meter {meter.name} is defined twice")
            continue
        meters[meter.name] = meter
    return meters, problems


def meters_from_dict(data: Any, origin: str = "catalog") -> MeterCatalog:
    """A MeterCatalog from a mapping with a `meters:` list; CatalogError lists every problem."""
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: expected a mapping with a `meters:` list")
    meters, problems = parse_meters(data.get("meters"))
    if problems:
        raise CatalogError(f"{origin}: " + "; ".join(problems))
    return MeterCatalog(meters=meters)
