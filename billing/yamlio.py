"""The one reader of the YAML and JSON files people give meterline (the catalog, the
customers file, `quote` price files): every number exact, nothing expanded.

- Numbers follow one grammar (rating.decimals.NUMBER_PATTERN, JSON's number) and are read
  from their text: a whole number is an int, any other number a Decimal. No float ever
  exists: ``unit_amount: 0.99`` is the decimal 0.99, ``1e-2`` is 0.01.
- YAML scalars are resolved by the YAML 1.2 core schema, not YAML 1.1's: ``017`` is 17
  (not octal 15), ``1_000`` and ``1:30`` are text (not 1000 and 90), ``on``/``no``/``y``
  are text (not booleans), ``2026-01-01`` is text (the field that wants a date parses
  it). ``.inf`` and ``.nan`` are refused, and so is an explicit tag of a type outside
  that schema (``!!timestamp``, ``!!binary``, ``!!set``, ``!!omap``, ``!!pairs``).
- Anchors and aliases (``&name``, ``*name``) are refused: ten lines of nested aliases
  expand to billions of values ("billion laughs"), and a catalog is short enough to
  write out.
- A key given twice in one mapping (YAML or JSON) is refused: the last one would win
  silently.

Errors are InputError, whose message gives the line and column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from rating.decimals import NUMBER_PATTERN, parse_number


class InputError(ValueError):
    """A YAML or JSON text that meterline refuses to read; the message says where.
    ``problem`` is the message without the position; ``line`` and ``column`` (from 1)
    are the position when known."""

    def __init__(self, problem: str, *, line: int | None = None, column: int | None = None):
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + problem)
        self.problem = problem
        self.line = line
        self.column = column


_INT = re.compile(r"[-+]?[0-9]+\Z")


class _CoreResolver(BaseResolver):
    """The YAML 1.2 core schema's implicit types, with numbers as one grammar."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (its own, not the base's)


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(rf"^(?:{NUMBER_PATTERN}|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "here"


class _Constructor(SafeConstructor):
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if first is not key_node:
                    raise ConstructorError(
                        None,
                        None,
                        f"key {key!r} appears twice in this mapping (first at"
                        f" {_where(first.start_mark)}); give it once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _int(loader: Any, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))
    if not _INT.match(text):
        raise ConstructorError(
            None, None, f"{text!r} is not a whole number in decimal digits", node.start_mark
        )
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (thousands)
        raise ConstructorError(None, None, "number with too many digits", node.start_mark) from None


def _decimal(loader: Any, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node))
    if text.lstrip("+-").lower() in (".inf", ".nan"):
        raise ConstructorError(
            None, None, f"{text} is not a finite number (write an amount)", node.start_mark
        )
    try:
        return parse_number(text, "the number")
    except ValueError as exc:
        raise ConstructorError(None, None, str(exc), node.start_mark) from None


def _not_core(loader: Any, node: yaml.Node) -> Any:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    raise ConstructorError(
        None,
        None,
        f"the YAML tag {tag} is not accepted: write the value as text, a number, true,"
        " false, null, a list or a mapping",
        node.start_mark,
    )


_Constructor.add_constructor("tag:yaml.org,2002:int", _int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _decimal)
# YAML 1.1 types that SafeConstructor builds from an explicit tag only: refused (a date
# with no such day or a text that is no date even raised an error no caller expects).
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_core)


class _Composer(Composer):
    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML {kind}{event.anchor} is not accepted: anchors and aliases are refused"
                " (nested aliases can expand without bound); write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


class StrictLoader(Reader, Scanner, Parser, _Composer, _Constructor, _CoreResolver):
    """The YAML loader of every user file (see the module docstring)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        _Constructor.__init__(self)
        _CoreResolver.__init__(self)


def _refused(exc: BaseException, text: str, loader: StrictLoader | None) -> InputError:
    """The InputError of what the YAML reader raised, at the line and column it was
    reading."""
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "invalid YAML"
        mark = exc.problem_mark or exc.context_mark
        if mark is None:
            return InputError(problem)
        return InputError(problem, line=mark.line + 1, column=mark.column + 1)
    if isinstance(exc, ReaderError):  # a character YAML does not allow, anywhere in the text
        at = exc.position
        return InputError(
            f"the character U+{exc.character:04X} is not allowed in YAML (a control"
            " character or a noncharacter): remove it",
            line=text.count("\n", 0, at) + 1,
            column=at - text.rfind("\n", 0, at),
        )
    if isinstance(exc, RecursionError):
        mark = loader.get_mark() if loader is not None else None
        if mark is None:
            return InputError("the document is nested too deeply")
        return InputError(
            "the document is nested too deeply", line=mark.line + 1, column=mark.column + 1
        )
    return InputError(f"invalid YAML: {exc}")


def load(text: str) -> Any:
    """The whole YAML document (None when empty). Raises InputError."""
    loader = None
    try:
        loader = StrictLoader(text)  # refuses a control character at once
        return loader.get_single_data()
    except (yaml.YAMLError, RecursionError) as exc:
        raise _refused(exc, text, loader) from None
    finally:
        if loader is not None:
            loader.dispose()


def iter_sequence(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, item) for each item of a top-level YAML list. Raises InputError."""
    loader = None
    try:
        loader = StrictLoader(text)  # refuses a control character at once
        root = loader.get_single_node()
        if root is None:
            return
        if not isinstance(root, yaml.SequenceNode):
            raise InputError("the YAML document must be a list of objects")
        for node in root.value:
            yield node.start_mark.line + 1, loader.construct_object(node, deep=True)
    except (yaml.YAMLError, RecursionError) as exc:
        raise _refused(exc, text, loader) from None
    finally:
        if loader is not None:
            loader.dispose()


def _json_number(text: str) -> Decimal:
    return parse_number(text, "the number")


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number meterline accepts")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object; give it once")
        out[key] = value
    return out


def load_json(text: str) -> Any:
    """A JSON document with the same rules: numbers exact (whole numbers int, others
    Decimal), no NaN or Infinity, no key twice in an object. Raises InputError."""
    try:
        return json.loads(
            text,
            parse_float=_json_number,
            parse_constant=_json_constant,
            object_pairs_hook=_json_object,
        )
    except json.JSONDecodeError as exc:
        raise InputError(exc.msg, line=exc.lineno, column=exc.colno) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(str(exc) or "the document is nested too deeply") from None
