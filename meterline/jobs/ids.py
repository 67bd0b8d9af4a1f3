"""Whether a text can be a customer id of the ledger, for the edges that take one from
outside (the HTTP service's paths, the console's search): an id the ledger cannot hold is
refused as what it is, before any query (PostgreSQL refuses a NUL in a text parameter
with an error of its own, SQLite looks it up and finds nothing)."""

from __future__ import annotations

from billing.customers.rows import ID_MAX, NAME_MAX, printable_problem

__all__ = ["ID_MAX", "NAME_MAX", "customer_id_problem", "search_text_problem"]


def _shown(text: str, limit: int) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def customer_id_problem(text: str) -> str | None:
    """Why ``text`` is no customer id (None when it may be one): the rule of the
    customers file (billing.customers.rows): 1 to ID_MAX (64) printable characters, no
    space at either end."""
    if not text:
        return "a customer id is not empty"
    if len(text) > ID_MAX:
        return (
            f"{_shown(text, 40)} has {len(text):,} characters: a customer id has at most {ID_MAX}"
        )
    problem = printable_problem(text)
    if problem is not None:
        return f"{_shown(text, 40)} is no customer id: it {problem}"
    return None


def search_text_problem(text: str) -> str | None:
    """Why ``text`` (stripped) cannot find a customer by id or name (None when it can):
    at most NAME_MAX (200) printable characters, as names and ids are."""
    if len(text) > NAME_MAX:
        return f"the search has {len(text):,} characters: a name has at most {NAME_MAX}"
    problem = printable_problem(text)
    if problem is not None:
        return f"the search {_shown(text, 40)} {problem}: no id or name holds one"
    return None
