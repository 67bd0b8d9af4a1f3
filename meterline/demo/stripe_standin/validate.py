"""Request validation for the Stripe stand-in: Stripe's form encoding, decoded, checked
against the pinned `stripe` SDK's own parameter TypedDicts.

The SDK types every endpoint's parameters (`stripe.params.InvoiceCreateParams`, ...).
Each one is rebuilt here into a stricter twin that pydantic validates in lax mode (form
values arrive as text, so "123" is an integer and "true" a boolean, as on Stripe):

* unknown keys are refused at every nesting level (`extra="forbid"` on every rebuilt
  TypedDict, not only the top one);
* the request options the SDK's classes inherit (`api_key`, `idempotency_key`, ...) are not
  parameters: they travel as headers, so a form field of that name is unknown;
* an enum the SDK types as `Literal[...] | str` (open, so that a newer server cannot break
  an older SDK) is the closed set of its literals: the server knows its own enums;
* an empty string is accepted only where the SDK says the field is emptyable
  (`Literal[''] | ...`): Stripe reads an empty value as "unset" and refuses it elsewhere;
* `UntypedStripeObject` alternatives are dropped: a form cannot carry one.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typing_extensions
from pydantic import ConfigDict, StringConstraints, TypeAdapter, ValidationError
from stripe._request_options import RequestOptions
from stripe._stripe_object import UntypedStripeObject

# The functional TypedDict form, with names known at run time only.
_make_typeddict: Any = typing_extensions.TypedDict
_dict_of: Any = dict
_list_of: Any = list

_REQUEST_OPTIONS = frozenset(RequestOptions.__annotations__)
_STRICT = ConfigDict(extra="forbid")
_NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]

# Stripe's metadata limits (docs.stripe.com/api/metadata): 50 keys, keys up to 40
# characters without square brackets, values up to 500 characters.
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


class ParamError(Exception):
    """A request parameter Stripe would refuse: answered 400 invalid_request_error."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# ---------------------------------------------------------------------------------------
# Form decoding
# ---------------------------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def format_param(parts: Iterable[object]) -> str:
    """("lines", 0, "amount") -> "lines[0][amount]", Stripe's name for a nested param."""
    items = [str(p) for p in parts]
    if not items:
        return ""
    return items[0] + "".join(f"[{p}]" for p in items[1:])


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding to nested dicts and lists.

    `metadata[k]=v` is a hash, `lines[0][amount]=1` a list of hashes, `expand[]=a` (or
    `expand[0]=a`) a list. Indexes order a list's items. A hash whose keys are all digits
    is a list, except under a key ending in "metadata" (metadata keys may be digits).
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise ParamError(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for depth, part in enumerate(parts[:-1]):
            if part == "":
                raise ParamError(
                    f"Invalid parameter name: {key} (an empty index is only allowed last)",
                    param=key,
                )
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ParamError("Invalid hash", param=format_param(parts[: depth + 1]))
            node = child
        last = parts[-1]
        if last == "":
            last = str(len(node))
        if isinstance(node.get(last), dict):
            raise ParamError(
                f"Invalid value for {format_param(parts)}: it is also sent as a hash",
                param=format_param(parts),
            )
        node[last] = value
    return _listify(root, None)


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    is_metadata = key is not None and key.endswith("metadata")
    if converted and not is_metadata and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


# ---------------------------------------------------------------------------------------
# The SDK's TypedDicts, rebuilt strict
# ---------------------------------------------------------------------------------------

_rebuilt: dict[tuple[type, bool], Any] = {}


def _is_not_required(tp: Any) -> bool:
    return get_origin(tp) in (typing.NotRequired, typing_extensions.NotRequired)


def _strict_typeddict(cls: Any, *, top: bool) -> Any:
    """The SDK TypedDict `cls`, rebuilt with strict field types and extra="forbid"."""
    cached = _rebuilt.get((cls, top))
    if cached is not None:
        return cached
    annotations = dict(cls.__annotations__)
    if top:
        # Request options are headers (Idempotency-Key, Stripe-Account, ...), not params.
        annotations = {k: v for k, v in annotations.items() if k not in _REQUEST_OPTIONS}
    # Evaluate the SDK's forward references in the SDK module that wrote them.
    shell = _make_typeddict(cls.__name__, annotations)
    shell.__module__ = cls.__module__
    hints = typing_extensions.get_type_hints(
        shell, globalns=vars(sys.modules[cls.__module__]), include_extras=True
    )
    fields: dict[str, Any] = {}
    for name, hint in hints.items():
        if _is_not_required(hint):
            fields[name] = typing.NotRequired[_strict(get_args(hint)[0], field=True)]
        else:
            fields[name] = _strict(hint, field=True)
    strict = _make_typeddict(cls.__name__, fields)
    strict.__pydantic_config__ = _STRICT
    _rebuilt[(cls, top)] = strict
    return strict


def _is_untyped_object(tp: Any) -> bool:
    return tp is UntypedStripeObject or get_origin(tp) is UntypedStripeObject


def _strict(tp: Any, *, field: bool) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if not _is_untyped_object(a)]
        literals = [v for a in args if get_origin(a) is Literal for v in get_args(a)]
        if str in args and literals and all(isinstance(v, str) and v for v in literals):
            # `Literal['a', 'b'] | str`: an enum left open for newer servers; the server
            # itself accepts its literals only.
            args = [a for a in args if a is not str]
        rebuilt = [_strict(a, field=field) for a in args]
        if len(rebuilt) == 1:
            return rebuilt[0]
        return Union[tuple(rebuilt)]  # noqa: UP007 (built at run time from a tuple)
    if origin in (list, typing.List):  # noqa: UP006 (the SDK's own annotations)
        (item,) = get_args(tp)
        return _list_of[_strict(item, field=False)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        key, value = get_args(tp)
        return _dict_of[key, _strict(value, field=False)]
    if typing_extensions.is_typeddict(tp):
        return _strict_typeddict(tp, top=False)
    if tp is str and field:
        # An empty value means "unset" to Stripe; a field that cannot be unset refuses it.
        return _NonEmptyStr
    return tp


_adapters: dict[type, TypeAdapter[Any]] = {}


def adapter_for(params_class: type) -> TypeAdapter[Any]:
    adapter = _adapters.get(params_class)
    if adapter is None:
        adapter = _adapters[params_class] = TypeAdapter(_strict_typeddict(params_class, top=True))
    return adapter


def strict_type(params_class: type) -> Any:
    """The rebuilt TypedDict used to validate `params_class` (for tests and docs)."""
    return _strict_typeddict(params_class, top=True)


# ---------------------------------------------------------------------------------------
# Validation and Stripe's error wording
# ---------------------------------------------------------------------------------------

_TYPE_TAG = re.compile(r"[\[\](),'\"-]")
_PLAIN_TYPES = {"str", "int", "bool", "float", "decimal", "list", "dict", "none", "literal"}


def _clean_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    """pydantic's error location without its union-branch tags ("dict[str,str]", ...)."""
    cleaned: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            _TYPE_TAG.search(part) or part in _PLAIN_TYPES or part[:1].isupper()
        ):
            continue
        cleaned.append(part)
    return cleaned


def _describe(error: Mapping[str, Any], param: str) -> ParamError:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return ParamError(f"Received unknown parameter: {param}", param, "parameter_unknown")
    if kind == "missing":
        return ParamError(f"Missing required param: {param}.", param, "parameter_missing")
    if value == "":
        return ParamError(
            f"You passed an empty string for '{param}'. We assume empty values are an "
            f"attempt to unset a parameter; however '{param}' cannot be unset. You should "
            f"remove '{param}' from your request or supply a non-empty value.",
            param,
            "parameter_invalid_empty",
        )
    if kind.startswith("int_"):
        return ParamError(f"Invalid integer: {value}", param, "parameter_invalid_integer")
    if kind.startswith("bool_"):
        return ParamError(f"Invalid boolean: {value}", param)
    if kind.startswith(("decimal_", "float_")):
        return ParamError(f"Invalid decimal: {value}", param)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return ParamError(f"Invalid {param}: must be one of {expected}", param)
    if kind in ("list_type",):
        return ParamError(f"Invalid array: {param}", param)
    if kind in ("dict_type", "typed_dict_type", "model_type"):
        return ParamError(f"Invalid hash: {param}", param)
    if kind == "string_type":
        return ParamError(f"Invalid string: {value}", param)
    return ParamError(f"Invalid value for {param}: {error.get('msg')}", param)


def validate_params(params_class: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` validated against the SDK's `params_class`; raises ParamError as Stripe would."""
    try:
        validated = adapter_for(params_class).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A union reports one error per branch: the deepest location names the field.
        best = max(errors, key=lambda e: len(_clean_loc(e["loc"])))
        raise _describe(best, format_param(_clean_loc(best["loc"]))) from None
    check_metadata(validated)
    return dict(validated)


def check_metadata(node: Any, path: tuple[int | str, ...] = ()) -> None:
    """Stripe's metadata limits, on every `metadata`/`invoice_metadata` hash in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            if isinstance(key, str) and key.endswith("metadata") and isinstance(value, dict):
                _check_one_metadata(value, format_param(here))
            else:
                check_metadata(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_metadata(value, (*path, index))


def _check_one_metadata(metadata: dict[str, Any], param: str) -> None:
    if len(metadata) > METADATA_MAX_KEYS:
        raise ParamError(
            f"Invalid {param}: metadata can have at most {METADATA_MAX_KEYS} keys.", param
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_LENGTH or "[" in key or "]" in key:
            raise ParamError(
                f"Invalid {param}: metadata keys can be at most {METADATA_MAX_KEY_LENGTH} "
                f"characters long and cannot contain square brackets ('{key}').",
                f"{param}[{key}]",
            )
        if isinstance(value, str) and len(value) > METADATA_MAX_VALUE_LENGTH:
            raise ParamError(
                f"Invalid {param}[{key}]: metadata values can be at most "
                f"{METADATA_MAX_VALUE_LENGTH} characters long.",
                f"{param}[{key}]",
            )


def check_modelled(
    data: Mapping[str, Any], modelled: Mapping[str, Any], endpoint: str, prefix: tuple = ()
) -> None:
    """Refuse a valid Stripe parameter the stand-in does not model, naming it.

    `modelled` maps each modelled top-level key to None (a value) or to the mapping of
    modelled keys of the hashes it holds (a hash, or a list of hashes).
    """
    for key, value in data.items():
        here = (*prefix, key)
        if key not in modelled:
            param = format_param(here)
            raise ParamError(
                f"The Stripe stand-in does not model the parameter {param} of {endpoint} "
                "(Stripe accepts it); see docs/stripe-standin.md.",
                param,
            )
        inner = modelled[key]
        if inner is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                where = (*here, index) if isinstance(value, list) else here
                check_modelled(item, inner, endpoint, where)
