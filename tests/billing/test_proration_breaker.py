"""The catalog's `proration` against bad input (docs/catalog.md): each fault a tester
found kept as a test with the right value."""

from __future__ import annotations

from typing import Any

import pytest

from billing.catalog import parse_catalog
from billing.errors import LoadError
from tests.billing.test_catalog_proration import _catalog


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(LoadError) as caught:
        parse_catalog(data)
    return list(caught.value.problems)


@pytest.mark.parametrize(("value", "shown"), [(None, "null"), ("partial", "'partial'"), (1, "1")])
def test_a_proration_other_than_prorate_or_full_is_refused_at_its_path(
    value: Any, shown: str
) -> None:
    """`proration: null` loaded silently (as prorate); a bad value's message did not
    name the field's path."""
    (problem,) = _problems(_catalog(fee={"proration": value}))
    assert problem.startswith("plans[0] (p).prices[0] (fee).versions[0].prices.USD.proration:")
    assert "must be prorate" in problem and f"not {shown}" in problem


def test_proration_above_the_price_body_says_where_it_belongs() -> None:
    data = _catalog()
    price = data["plans"][0]["prices"][0]
    price["proration"] = "full"
    price["versions"][0]["proration"] = "full"
    problems = _problems(data)
    assert [p.split(":")[0] for p in problems] == [
        "plans[0] (p).prices[0] (fee).proration",
        "plans[0] (p).prices[0] (fee).versions[0].proration",
    ]
    assert all("`proration` belongs in the price body" in p for p in problems)
