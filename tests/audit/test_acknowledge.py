"""Acknowledgements are kept in the ledger (who, when, why), on SQLite and PostgreSQL;
the latest one of a finding is the one shown; a malformed id or an empty reason is
refused before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from meterline.audit.findings import Acknowledgement, acknowledge, acknowledgements
from meterline.settings import load_settings
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)

AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def test_acknowledgements_are_recorded_and_read_back(ledger_url: str) -> None:  # noqa: F811
    upgrade(ledger_url)
    config = load_settings(ledger_url=ledger_url)
    first = acknowledge(
        "f-0123456789ab", reason="  prospect test traffic ", by="ana", at=AT, config=config
    )
    assert first == Acknowledgement(
        finding_id="f-0123456789ab", reason="prospect test traffic", by="ana", at=AT
    )
    later = datetime(2026, 12, 6, tzinfo=UTC)
    acknowledge("F-0123456789AB", reason="still known", by="bo", at=later, config=config)
    acknowledge("f-ba9876543210", reason="other", by="ana", at=AT, config=config)
    engine = create_ledger_engine(ledger_url)
    try:
        with session_factory(engine)() as session:
            found = acknowledgements(
                session, ["f-0123456789ab", "f-ba9876543210", "f-ffffffffffff"]
            )
    finally:
        engine.dispose()
    assert found == {
        "f-0123456789ab": Acknowledgement(
            finding_id="f-0123456789ab", reason="still known", by="bo", at=later
        ),
        "f-ba9876543210": Acknowledgement(
            finding_id="f-ba9876543210", reason="other", by="ana", at=AT
        ),
    }


@pytest.mark.parametrize(
    ("finding_id", "reason", "message"),
    [
        ("f-123", "r", "is not a finding id"),
        ("0123456789ab", "r", "is not a finding id"),
        ("f-0123456789ab", "   ", "give the reason"),
    ],
)
def test_bad_acknowledgements_are_refused(finding_id: str, reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        acknowledge(finding_id, reason=reason, by="ana", at=AT, config=load_settings())
