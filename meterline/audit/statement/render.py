"""The statement page: typed values in, one self-contained HTML document out (inline CSS
and SVG, no script, no web font, no image file). Pure. Templates:
meterline/audit/statement/templates/ (Jinja2, autoescaped).

Two views: ``customer`` shows quantities with their meaningful decimals only (at most
3, marked "≈" when rounded for display; amounts are always exact) and nothing internal;
``internal`` adds ledger ids, price versions, UTC instants, the rating's own
explanation and each line's audit chain.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from meterline.audit.statement.model import Statement
from meterline.audit.statement.text import minor_text, money_text, plain_text, quantity_text
from meterline.audit.values import iso

# The customer view shows a quantity to this many decimals at most ("≈" when rounded).
CUSTOMER_QUANTITY_PLACES = 3


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("meterline.audit.statement", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = money_text
    env.filters["minor"] = minor_text
    env.filters["qty"] = quantity_text
    env.filters["plain"] = plain_text
    env.filters["percent"] = lambda value: f"{value * 100:.1f}"
    env.filters["utc"] = iso
    return env


def render(data: Statement) -> str:
    """The statement as one HTML document."""
    template = _environment().get_template("page.html.j2")
    places = CUSTOMER_QUANTITY_PLACES if data.view == "customer" else None
    return template.render(s=data, internal=data.view == "internal", places=places)
