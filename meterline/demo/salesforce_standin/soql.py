"""The part of SOQL the Salesforce stand-in answers: parsing and evaluating

    SELECT path, ... FROM Object [WHERE condition] [ORDER BY path [ASC|DESC], ...] [LIMIT n]

A condition is ``path op literal`` (op: = != <> < <= > >=), ``path [NOT] IN (literal,
...)``, joined by AND, OR, NOT and parentheses. A literal is a quoted string (``\\'`` and
``\\\\`` escaped), a dateTime (``2026-11-04T00:00:00Z``, ``...+01:00``, a fraction of a
second allowed), a date, a number, ``null``, ``true`` or ``false``. A path is a field or
relationships then a field (``SBQQ__Product__r.ProductCode``). Keywords and names are
case-insensitive, as in SOQL.

Anything else SOQL has (aggregates, GROUP BY, subqueries, date literals such as TODAY,
LIKE, INCLUDES, OFFSET, FOR ...) is refused as MALFORMED_QUERY saying the stand-in does
not model it. Fields and objects are checked by the store (INVALID_FIELD, INVALID_TYPE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_NOT_MODELLED = {
    "GROUP", "HAVING", "LIKE", "INCLUDES", "EXCLUDES", "OFFSET", "FOR", "WITH", "TYPEOF",
    "USING", "UPDATE", "COUNT", "TODAY", "YESTERDAY", "TOMORROW", "SELECT",
}  # fmt: skip
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "LIMIT",
             "ASC", "DESC", "NULL", "TRUE", "FALSE", "NULLS", "FIRST", "LAST"}  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "'": "'", '"': '"', "\\": "\\"}


class SoqlError(Exception):
    """A query the stand-in refuses: ``code`` is Salesforce's errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    value: Any = None


@dataclass(frozen=True)
class Compare:
    path: str
    op: str
    value: Any


@dataclass(frozen=True)
class InList:
    path: str
    values: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class Bool:
    op: str  # AND, OR, NOT
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    object: str
    where: Any | None
    order: tuple[tuple[str, bool], ...]  # (path, descending)
    limit: int | None


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def tokens(soql: str) -> list[Token]:
    out: list[Token] = []
    position = 0
    text = soql.rstrip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            rest = text[position:].strip()
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{rest.split()[0]}'")
        position = found.end()
        kind = found.lastgroup or ""
        raw = found.group(kind)
        if kind == "datetime":
            value: Any = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        elif kind == "date":
            value = date.fromisoformat(raw)
        elif kind == "number":
            value = Decimal(raw)
        elif kind == "string":
            value = _unquote(raw)
        elif kind == "name" and raw.upper() in _KEYWORDS:
            kind, value = "keyword", raw.upper()
        else:
            value = raw
        out.append(Token(kind, raw, value))
    return out


class _Parser:
    def __init__(self, soql: str) -> None:
        self.tokens = tokens(soql)
        self.at = 0

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.at += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "keyword" and token.value in words:
            self.at += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.keyword(word):
            token = self.peek()
            shown = token.text if token else "end of query"
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{shown}' (expected {word})")

    def name(self) -> str:
        token = self.take()
        if token.kind != "name":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
        if token.text.upper() in _NOT_MODELLED or (
            self.peek() is not None and self.peek().text == "("  # type: ignore[union-attr]
        ):
            _refuse(token.text)
        return token.text

    def query(self) -> Query:
        self.expect("SELECT")
        fields = [self.name()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take()
            fields.append(self.name())
        self.expect("FROM")
        obj = self.name()
        where = self.disjunction() if self.keyword("WHERE") else None
        order: list[tuple[str, bool]] = []
        if self.keyword("ORDER"):
            self.expect("BY")
            while True:
                path = self.name()
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                if self.keyword("NULLS"):
                    self.keyword("FIRST", "LAST")
                order.append((path, descending))
                if self.peek() is None or self.peek().text != ",":  # type: ignore[union-attr]
                    break
                self.take()
        limit = None
        if self.keyword("LIMIT"):
            token = self.take()
            if token.kind != "number" or not token.value == token.value.to_integral():
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
            limit = int(token.value)
        rest = self.peek()
        if rest is not None:
            if rest.text.upper() in _NOT_MODELLED:
                _refuse(rest.text)
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{rest.text}'")
        return Query(tuple(fields), obj, where, tuple(order), limit)

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Bool("OR", tuple(parts))

    def conjunction(self) -> Any:
        parts = [self.negation()]
        while self.keyword("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Bool("AND", tuple(parts))

    def negation(self) -> Any:
        if self.keyword("NOT"):
            return Bool("NOT", (self.negation(),))
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.disjunction()
            closing = self.take()
            if closing.text != ")":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{closing.text}'")
            return inner
        return self.comparison()

    def comparison(self) -> Any:
        path = self.name()
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            opening = self.take()
            if opening.text != "(":
                if opening.text.upper() == "SELECT":
                    _refuse("a subquery")
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{opening.text}'")
            if self.peek() is not None and self.peek().text.upper() == "SELECT":  # type: ignore[union-attr]
                _refuse("a subquery")
            values = [self.literal()]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                values.append(self.literal())
            closing = self.take()
            if closing.text != ")":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{closing.text}'")
            return InList(path, tuple(values), negated)
        if negated:
            raise SoqlError("MALFORMED_QUERY", "unexpected token: 'NOT'")
        op = self.take()
        if op.kind != "op":
            if op.text.upper() in _NOT_MODELLED:
                _refuse(op.text)
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{op.text}'")
        return Compare(path, "!=" if op.text == "<>" else op.text, self.literal())

    def literal(self) -> Any:
        token = self.take()
        if token.kind in ("datetime", "date", "number", "string"):
            return token.value
        if token.kind == "keyword" and token.value in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[token.value]
        if token.kind == "name" and token.text.upper() in _NOT_MODELLED:
            _refuse(token.text)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")


def _refuse(what: str) -> None:
    raise SoqlError(
        "MALFORMED_QUERY",
        f"{what}: the Salesforce stand-in does not model this part of SOQL"
        " (docs/salesforce.md, 'The stand-in')",
    )


def parse(soql: str) -> Query:
    """The query of a SOQL text. Raises SoqlError (MALFORMED_QUERY)."""
    return _Parser(soql).query()


def paths(node: Any) -> list[str]:
    """The field paths a condition reads."""
    if node is None:
        return []
    if isinstance(node, (Compare, InList)):
        return [node.path]
    return [p for part in node.parts for p in paths(part)]


def _comparable(value: Any, literal: Any) -> tuple[Any, Any]:
    """A stored value and a literal made comparable (text case-insensitively, as SOQL
    compares it)."""
    if isinstance(literal, str) and isinstance(value, str):
        return value.lower(), literal.lower()
    if isinstance(literal, datetime) and isinstance(value, datetime):
        return value, literal
    if (
        isinstance(literal, date)
        and isinstance(value, date)
        and not isinstance(literal, datetime)
        and not isinstance(value, datetime)
    ):
        return value, literal
    if isinstance(literal, Decimal) and isinstance(value, (int, Decimal)):
        return Decimal(value), literal
    if isinstance(literal, bool) and isinstance(value, bool):
        return value, literal
    raise SoqlError(
        "INVALID_FIELD",
        f"value of filter criterion of type {type(literal).__name__} does not match the"
        f" field's type ({type(value).__name__})",
    )


def matches(node: Any, value_of: Any) -> bool:
    """Whether a record matches a condition; ``value_of(path)`` gives its values."""
    if node is None:
        return True
    if isinstance(node, Bool):
        if node.op == "NOT":
            return not matches(node.parts[0], value_of)
        results = (matches(part, value_of) for part in node.parts)
        return all(results) if node.op == "AND" else any(results)
    value = value_of(node.path)
    if isinstance(node, InList):
        found = any(_equal(value, literal) for literal in node.values)
        return found != node.negated
    if node.value is None or value is None:
        if node.op == "=":
            return value is None and node.value is None
        if node.op == "!=":
            return (value is None) != (node.value is None)
        return False
    if node.op in ("=", "!="):
        return _equal(value, node.value) == (node.op == "=")
    left, right = _comparable(value, node.value)
    return bool(
        {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[node.op]
    )


def _equal(value: Any, literal: Any) -> bool:
    if value is None or literal is None:
        return value is None and literal is None
    left, right = _comparable(value, literal)
    return bool(left == right)
