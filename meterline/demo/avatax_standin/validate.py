"""AvaTax's models, as Avalara's SDK declares them, and checks of documents against them.

``definitions.json`` holds the fields of every model the stand-in reads or writes
(CreateTransactionModel, LineItemModel, AddressesModel, ..., TransactionModel and the
models it names, ErrorResult) and the enums they use: extracted from Avalara's
JavaScript SDK (its ``source`` says which version and files), where each field is
declared ``@JsonProperty(name, type, optional)``. A field not declared optional there is
required here.

``request_problems`` checks a request body (stricter than AvaTax in one way: a field the
model does not declare is refused, where AvaTax's JSON reader would ignore it and a
misspelt field would silently mean nothing). ``answer_problems`` checks an answer: every
key a field of its model, every value of the field's type (what tests run on every
answer the stand-in gives).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})?)?\Z")


@cache
def definitions() -> dict[str, Any]:
    """The models and enums (definitions.json)."""
    text = resources.files(__package__).joinpath("definitions.json").read_text()
    return dict(json.loads(text))


def enum_names(enum: str) -> dict[str, int]:
    """An enum's names and numbers."""
    return dict(definitions()["enums"][enum])


def fields_of(model: str) -> dict[str, Any]:
    """A model's fields: name -> {type, required, model|items|enum}."""
    return dict(definitions()["models"][model])


@dataclass(frozen=True)
class Problem:
    """What is wrong at ``path`` (``lines[0].amount``), with AvaTax's error code."""

    path: str
    code: str
    message: str


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _value_problems(spec: dict[str, Any], value: Any, path: str, strict: bool) -> list[Problem]:
    kind = spec["type"]
    if value is None:
        return []
    if kind == "any":
        return []
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "number":
        ok = isinstance(value, (int, Decimal, float)) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        if isinstance(value, str) and _DATE.match(value):
            return []
        return [Problem(path, "DateFormatError", f"{path}: {value!r} is not a date (YYYY-MM-DD)")]
    elif kind == "enum":
        names = enum_names(spec["enum"])
        if isinstance(value, str) and value in names:
            return []
        return [
            Problem(
                path,
                "InvalidEnumValue",
                f"{path}: {value!r} is not a {spec['enum']} ({', '.join(list(names)[:12])}...)",
            )
        ]
    elif kind == "array":
        if not isinstance(value, list):
            return [
                Problem(path, "ModelStateInvalid", f"{path}: must be an array, not {_kind(value)}")
            ]
        out: list[Problem] = []
        for i, item in enumerate(value):
            out += _value_problems(spec["items"], item, f"{path}[{i}]", strict)
        return out
    elif kind == "object":
        if not isinstance(value, dict):
            return [
                Problem(path, "ModelStateInvalid", f"{path}: must be an object, not {_kind(value)}")
            ]
        return model_problems(spec["model"], value, path, strict=strict)
    else:  # pragma: no cover - definitions.json knows no other
        raise ValueError(f"unknown field type {kind!r}")
    if ok:
        return []
    return [Problem(path, "ModelStateInvalid", f"{path}: must be {kind}, not {_kind(value)}")]


def model_problems(
    model: str, doc: dict[str, Any], path: str = "", *, strict: bool = True, answer: bool = False
) -> list[Problem]:
    """Every problem of ``doc`` as a ``model``: unknown fields (``strict``), required
    fields missing (requests only, not ``answer``), values of the wrong type."""
    fields = fields_of(model)
    out: list[Problem] = []
    prefix = f"{path}." if path else ""
    for name, value in doc.items():
        spec = fields.get(name)
        if spec is None:
            if strict:
                out.append(
                    Problem(
                        prefix + name,
                        "InvalidField",
                        f"{prefix}{name}: {model} has no field {name!r} (the stand-in refuses"
                        " what AvaTax would ignore)",
                    )
                )
            continue
        out += _value_problems(spec, value, prefix + name, strict)
    if not answer:
        for name, spec in fields.items():
            if spec.get("required") and doc.get(name) is None:
                out.append(
                    Problem(
                        prefix + name, "ValueRequiredError", f"Field '{prefix}{name}' is required."
                    )
                )
    return out


def request_problems(model: str, doc: Any) -> list[Problem]:
    """The problems of a request body (a JSON object) as ``model``."""
    if not isinstance(doc, dict):
        return [Problem("", "ModelRequiredException", f"A model is required: a {model} object")]
    return model_problems(model, doc)


def answer_problems(model: str, doc: Any) -> list[Problem]:
    """The problems of an answer as ``model``: keys that are no field, wrong types."""
    if not isinstance(doc, dict):
        return [Problem("", "ModelStateInvalid", f"the answer is not a {model} object")]
    return model_problems(model, doc, answer=True)
