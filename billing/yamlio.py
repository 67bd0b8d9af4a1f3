"""YAML reading for ledger inputs: decimals stay exact and items keep their line numbers."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml


class DecimalLoader(yaml.SafeLoader):
    """A safe loader that reads YAML floats as Decimal from their literal text.

    ``unit_amount: 0.99`` is the decimal 0.99, never the binary float near it.
    """


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite decimal", node.start_mark
        ) from None
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite decimal", node.start_mark
        )
    return value


DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


def load(text: str) -> Any:
    """The whole document, with floats as Decimal."""
    return yaml.load(text, Loader=DecimalLoader)


def iter_sequence(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, item) for each item of a top-level YAML list."""
    loader = DecimalLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return
        if not isinstance(root, yaml.SequenceNode):
            raise ValueError("the YAML document must be a list of objects")
        for node in root.value:
            yield node.start_mark.line + 1, loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
