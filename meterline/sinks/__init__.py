"""Sinks: each delivers outbox events (billing.outbox) to one outside system, with the
effect of exactly one delivery however often it is called (DESIGN.md invariant 8).

A sink takes an event document and returns the external id it produced, or raises:
``TransientSinkError`` (the other system was unreachable, overloaded or failed: try
again later) or ``PermanentSinkError`` (retrying cannot help: a person must look; the
event is parked at once). meterline.jobs.deliver claims events and records the outcome.
"""

from __future__ import annotations

from typing import Protocol

from billing.outbox import EventDoc


class SinkError(Exception):
    """A delivery failed; the message says what and what to do."""


class TransientSinkError(SinkError):
    """The other system could not take the event now (connection, timeout, 5xx, 429)."""


class PermanentSinkError(SinkError):
    """The other system refused the event, or holds a state we must not overwrite."""


class SinkRefusedCredentials(SinkError):
    """The other system refused our credentials (a wrong, revoked or restricted key):
    no event is at fault, so none is charged an attempt; the run stops."""


class Sink(Protocol):
    """What meterline.jobs.deliver needs of a sink."""

    name: str

    def deliver(self, event: EventDoc) -> str | None:
        """Bring the other system to the event's state; return the external id."""
        ...
