"""The Salesforce stand-in's state: objects with typed fields, records with Salesforce
ids and modification stamps, users and sessions, open query cursors, and injected
faults. Every method runs under ``lock`` (the server holds it for a whole request).

Field types: ``id``, ``string``, ``boolean``, ``number`` (exact decimals: currency,
percent, double), ``date``, ``datetime``, and ``reference:Object`` (a lookup; its
relationship is the field's name with ``__c`` -> ``__r``, or without a trailing ``Id``:
``AccountId`` -> ``Account``). Every object also has Id, CreatedDate, LastModifiedDate
and SystemModstamp, set by the store: a write stamps the record with the store's clock,
which moves one second per write (``advance`` moves it further).
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .soql import Query, SoqlError, matches, parse, paths

#: Key prefixes of the standard objects the stand-in knows (an Id's first 3 characters).
KEY_PREFIXES = {"account": "001", "contract": "800", "order": "801", "product2": "01t"}
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TYPES = ("id", "string", "boolean", "number", "date", "datetime")
SYSTEM_FIELDS = {
    "Id": "id",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
START = datetime(2026, 11, 1, tzinfo=UTC)
MAX_BATCH = 2000
MIN_BATCH = 200


#: A field path resolved: (object, canonical field, relationship name or '') per step.
Steps = list[tuple["SObject", str, str]]


class ApiError(Exception):
    """An answer in Salesforce's REST error shape: HTTP ``status``, a list of one
    ``{"message", "errorCode"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> list[dict[str, str]]:
        return [{"message": self.message, "errorCode": self.code}]


@dataclass
class Fault:
    """An answer given instead of the next ``times`` requests of ``on`` (``query``,
    ``query_more``, ``login`` or ``any``)."""

    status: int
    code: str
    message: str
    on: str = "any"
    times: int = 1


@dataclass
class SObject:
    name: str
    prefix: str
    fields: dict[str, str]  # canonical name -> type
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def field_named(self, name: str) -> str | None:
        return next((f for f in self.fields if f.lower() == name.lower()), None)

    def relationship(self, name: str) -> tuple[str, str] | None:
        """(lookup field, relationship's canonical name) of a relationship name."""
        for f, kind in self.fields.items():
            if not kind.startswith("reference:"):
                continue
            rel = f[:-3] + "__r" if f.endswith("__c") else f.removesuffix("Id")
            if rel.lower() == name.lower():
                return f, rel
        return None


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id: 15 case-sensitive characters and the 3-character
    suffix Salesforce computes from their upper-case letters."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    base = (prefix + "5e000" + digits.rjust(7, "0"))[:15]
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, c in enumerate(chunk) if "A" <= c <= "Z")
        suffix += _SUFFIX[bits]
    return base + suffix


def render(value: Any) -> Any:
    """A stored value as the REST API's JSON writes it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{value.microsecond // 1000:03d}+0000"
        )
    if isinstance(value, date):
        return value.isoformat()
    return value


class Store:
    """The stand-in's org (module docstring)."""

    def __init__(self, *, page_size: int = MAX_BATCH, api_version: str = "59.0") -> None:
        self.lock = threading.RLock()
        self.page_size = page_size
        self.api_version = api_version
        self.objects: dict[str, SObject] = {}
        self.users: dict[str, str] = {}
        self.sessions: set[str] = set()
        #: Open query cursors: locator -> (the query's records, its page size).
        self.locators: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self.faults: list[Fault] = []
        #: Requests served, by kind (login, query, query_more, not_found).
        self.requests: Counter[str] = Counter()
        #: Every SOQL text received, in order.
        self.queries: list[str] = []
        self.now = START
        self._numbers = itertools.count(1)
        self._custom = itertools.count(0)

    # --- setting up -----------------------------------------------------------------

    def define(self, name: str, fields: dict[str, str]) -> None:
        """An object and its fields (name -> type; module docstring)."""
        with self.lock:
            for f, kind in fields.items():
                if kind not in TYPES and not kind.startswith("reference:"):
                    raise ValueError(f"{name}.{f}: unknown type {kind!r}")
            prefix = KEY_PREFIXES.get(name.lower())
            if prefix is None:
                n = next(self._custom)
                prefix = "a0" + _BASE62[10 + n % 26]
            self.objects[name.lower()] = SObject(name, prefix, {**SYSTEM_FIELDS, **fields})

    def object(self, name: str) -> SObject:
        found = self.objects.get(name.lower())
        if found is None:
            raise ApiError(
                400,
                "INVALID_TYPE",
                f"sObject type '{name}' is not supported. If you are attempting to use a"
                " custom object, be sure to append the '__c' after the entity name. Please"
                " reference your WSDL or the describe call for the appropriate names.",
            )
        return found

    def _stamp(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock (the next write's stamp is one second after it)."""
        with self.lock:
            self.now += timedelta(seconds=seconds)

    def _values(self, obj: SObject, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in values.items():
            canonical = obj.field_named(name)
            if canonical is None or canonical in SYSTEM_FIELDS:
                raise ValueError(f"{obj.name} has no writable field {name!r}")
            if isinstance(value, float):
                raise TypeError(f"{obj.name}.{name}: give a Decimal, not a float")
            out[canonical] = value
        return out

    def insert(self, name: str, values: dict[str, Any]) -> str:
        """A new record; its Id."""
        with self.lock:
            obj = self.object(name)
            record_id = salesforce_id(obj.prefix, next(self._numbers))
            stamp = self._stamp()
            record: dict[str, Any] = dict.fromkeys(obj.fields)
            record.update(
                Id=record_id, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp
            )
            record.update(self._values(obj, values))
            obj.records[record_id] = record
            return record_id

    def update(self, name: str, record_id: str, values: dict[str, Any]) -> None:
        """Change fields of a record; its LastModifiedDate and SystemModstamp move."""
        with self.lock:
            obj = self.object(name)
            record = obj.records[record_id]
            record.update(self._values(obj, values))
            record["LastModifiedDate"] = record["SystemModstamp"] = self._stamp()

    def add_user(self, username: str, password: str, security_token: str) -> None:
        """A user the SOAP login accepts with ``password + security_token``."""
        with self.lock:
            self.users[username] = password + security_token

    def new_session(self) -> str:
        """A session id the REST API accepts (what a login returns)."""
        with self.lock:
            session = "00D5e0000000001!" + secrets.token_urlsafe(24)
            self.sessions.add(session)
            return session

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def expire_locators(self) -> None:
        """Every open query cursor expires (Salesforce's after 15 minutes unused)."""
        with self.lock:
            self.locators.clear()

    def fail_next(
        self, status: int, code: str, message: str, *, on: str = "any", times: int = 1
    ) -> None:
        """Answer the next ``times`` requests of kind ``on`` with this error."""
        with self.lock:
            self.faults.append(Fault(status, code, message, on, times))

    def take_fault(self, kind: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.on in (kind, "any") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
            return None

    # --- querying -------------------------------------------------------------------

    def _resolve(self, obj: SObject, path: str, soql: str) -> list[tuple[SObject, str, str]]:
        """The steps of a field path: (object, canonical field, relationship name or
        ''), each relationship then the field. Raises ApiError INVALID_FIELD."""
        steps: list[tuple[SObject, str, str]] = []
        current = obj
        *relations, last = path.split(".")
        for rel in relations:
            found = current.relationship(rel)
            if found is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"\n{soql}\nERROR at Row:1:Column:1\nDidn't understand relationship"
                    f" '{rel}' in field path. If you are attempting to use a custom"
                    " relationship, be sure to append the '__r' after the custom"
                    " relationship name. Please reference your WSDL or the describe call for"
                    " the appropriate names.",
                )
            lookup, rel_name = found
            steps.append((current, lookup, rel_name))
            current = self.object(current.fields[lookup].split(":", 1)[1])
        canonical = current.field_named(last)
        if canonical is None:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"\n{soql}\nERROR at Row:1:Column:1\nNo such column '{last}' on entity"
                f" '{current.name}'. If you are attempting to use a custom field, be sure to"
                " append the '__c' after the custom field name. Please reference your WSDL or"
                " the describe call for the appropriate names.",
            )
        steps.append((current, canonical, ""))
        return steps

    def _value(self, record: dict[str, Any] | None, steps: list[tuple[SObject, str, str]]) -> Any:
        for obj, name, rel in steps:
            if record is None:
                return None
            if not rel:
                return record.get(name)
            target = obj.fields[name].split(":", 1)[1]
            record = self.object(target).records.get(record.get(name) or "")
        return None

    def _rendered(
        self, obj: SObject, record: dict[str, Any], selected: list[list[tuple[SObject, str, str]]]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": self._attributes(obj, record["Id"])}
        for steps in selected:
            node: dict[str, Any] | None = out
            current: dict[str, Any] | None = record
            for step_obj, name, rel in steps:
                if node is None:
                    break
                if not rel:
                    node[name] = render(current.get(name)) if current is not None else None
                    break
                target = self.object(step_obj.fields[name].split(":", 1)[1])
                current = target.records.get((current or {}).get(name) or "")
                if current is None:
                    node[rel] = None
                    break
                child = node.get(rel)
                if not isinstance(child, dict):
                    child = {"attributes": self._attributes(target, current["Id"])}
                    node[rel] = child
                node = child
        return out

    def _attributes(self, obj: SObject, record_id: str) -> dict[str, str]:
        return {
            "type": obj.name,
            "url": f"/services/data/v{self.api_version}/sobjects/{obj.name}/{record_id}",
        }

    def query(self, soql: str, batch_size: int | None = None) -> dict[str, Any]:
        """The first page of a query's answer (``totalSize``, ``done``,
        ``nextRecordsUrl`` when not done, ``records``). Raises ApiError."""
        with self.lock:
            self.queries.append(soql)
            try:
                parsed: Query = parse(soql)
            except SoqlError as exc:
                raise ApiError(400, exc.code, exc.message) from None
            obj = self.object(parsed.object)
            selected = [self._resolve(obj, p, soql) for p in parsed.fields]
            conditions = {p: self._resolve(obj, p, soql) for p in paths(parsed.where)}
            order = [(self._resolve(obj, p, soql), desc) for p, desc in parsed.order]
            try:
                found = [
                    r
                    for r in obj.records.values()
                    if matches(parsed.where, lambda p, r=r: self._value(r, conditions[p]))
                ]
            except SoqlError as exc:
                raise ApiError(400, exc.code, exc.message) from None
            for steps, desc in reversed(order):

                def key(record: dict[str, Any], steps: Steps = steps) -> tuple[bool, Any]:
                    value = self._value(record, steps)
                    return value is not None, value

                found.sort(key=key, reverse=desc)
            if parsed.limit is not None:
                found = found[: parsed.limit]
            rendered = [self._rendered(obj, r, selected) for r in found]
            size = self.page_size
            if batch_size is not None:
                size = min(max(batch_size, MIN_BATCH), MAX_BATCH, self.page_size)
            locator = "01g5e" + secrets.token_hex(6).upper()[:10]
            return self._page(locator, rendered, 0, size)

    def _page(
        self, locator: str, records: list[dict[str, Any]], start: int, size: int
    ) -> dict[str, Any]:
        page = records[start : start + size]
        done = start + size >= len(records)
        answer: dict[str, Any] = {"totalSize": len(records), "done": done}
        if not done:
            self.locators[locator] = (records, size)
            answer["nextRecordsUrl"] = (
                f"/services/data/v{self.api_version}/query/{locator}-{start + size}"
            )
        answer["records"] = page
        return answer

    def query_more(self, locator: str) -> dict[str, Any]:
        """The page of an open cursor (``01g...-OFFSET``). Raises ApiError
        INVALID_QUERY_LOCATOR for one that does not exist (or expired)."""
        with self.lock:
            key, _, offset = locator.partition("-")
            found = self.locators.get(key)
            if found is None or not offset.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            records, size = found
            answer = self._page(key, records, int(offset), size)
            if answer["done"]:
                self.locators.pop(key, None)
            return answer
