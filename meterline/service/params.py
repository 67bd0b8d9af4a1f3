"""Path and query values the routes check themselves, with the ledger's rules, so a value
the ledger cannot hold is a 400 naming what is wrong instead of a lookup (a NUL in a
text parameter is an error of PostgreSQL's own: a 500 where SQLite answered 404).

A customer id is matched with the ``customer`` convertor (``{customer_id:customer}``):
any text, a ``/`` included (the customers file allows one: a client sends it as ``%2F``,
which the server receives decoded) and a line break too (Starlette's own ``path``
convertor is ``.*``, which stops at one: the route did not match, a 404 'no such
endpoint'), so that every id reaches ``customer_param`` and is judged there. Each route's
path goes on with a fixed word (``/invoices``, ``/findings``, ...) that tells where the id
ends; the console's customer page, which has none, is registered after the others.
"""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor

from meterline.jobs.ids import customer_id_problem
from meterline.service.problems import Problem


class CustomerConvertor(PathConvertor):
    """Any text, line breaks included (``path`` with the dot matching every character)."""

    regex = "(?s:.*)"


register_url_convertor("customer", CustomerConvertor())


def invalid(where: str, problem: str) -> Problem:
    """The 400 of one parameter that does not validate (as FastAPI's own are answered)."""
    return Problem(
        400,
        "invalid-request",
        "Invalid request",
        f"{where}: {problem}",
        extra={"errors": [{"where": where, "problem": problem}]},
    )


def customer_param(customer_id: str) -> str:
    """``customer_id`` when the ledger could hold it; a 400 Problem otherwise."""
    problem = customer_id_problem(customer_id)
    if problem is not None:
        raise invalid("path.customer_id", problem)
    return customer_id
