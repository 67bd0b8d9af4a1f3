"""`meterline alerts list|history` as a person reads them: spend thresholds and amounts
are money in the alert's currency (the jobs give them in minor units: `USD at 10000,
25050 (minor units)` for thresholds typed as 100 and 250.50), usage ones quantities.
The jobs are stubbed: only the text is under test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from meterline.cli.alerts import alerts
from meterline.jobs import alerts as jobs
from meterline.jobs.alerts import AlertView, StateView

T = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _view(alert_id: int, **values: object) -> AlertView:
    base: dict[str, object] = {
        "alert_id": alert_id,
        "customer": "cus_00002",
        "plan": None,
        "metric": "spend",
        "meter": None,
        "currency": "USD",
        "thresholds": ("10000", "25050"),
        "created_at": T,
    }
    return AlertView.model_validate({**base, **values})


VIEWS = [
    _view(1),
    _view(
        2,
        customer=None,
        plan="standard",
        metric="usage",
        meter="fin_resolution",
        currency=None,
        thresholds=("1", "2500.5"),
    ),
    _view(3, currency="JPY", thresholds=("5000",)),
]


def _state(alert_id: int, threshold: str, fired: str, retracted: str | None) -> StateView:
    return StateView(
        alert_id=alert_id,
        subscription="sub_00002",
        customer="cus_00002",
        threshold=threshold,
        period_start=datetime(2026, 11, 1, 7, tzinfo=UTC),
        period_end=datetime(2026, 12, 1, 8, tzinfo=UTC),
        state="retracted" if retracted is not None else "fired",
        fired_amount=fired,
        fired_at=T,
        fired_event_id=6,
        retracted_amount=retracted,
        retracted_at=T if retracted is not None else None,
        retracted_event_id=10 if retracted is not None else None,
    )


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "list_alerts", lambda customer=None: VIEWS)
    monkeypatch.setattr(
        jobs,
        "alert_history",
        lambda alert_id=None, customer=None: [
            _state(1, "25050", "26855", "12175"),
            _state(2, "2500.5", "2600", None),
            _state(3, "5000", "123456", None),
        ],
    )


def test_list_shows_spend_thresholds_as_money(stubbed: None) -> None:
    result = CliRunner().invoke(alerts, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("customer cus_00002, spend at USD 100.00, USD 250.50")
    assert lines[1].endswith("plan standard, usage of fin_resolution at 1, 2,500.5")
    assert lines[2].endswith("spend at JPY 5,000")
    assert "minor units" not in result.output


def test_history_shows_spend_amounts_as_money(stubbed: None) -> None:
    result = CliRunner().invoke(alerts, ["history"])
    assert result.exit_code == 0, result.output
    spend, usage, yen = result.output.splitlines()
    assert "threshold USD 250.50: fired at USD 268.55" in spend
    assert "retracted at USD 121.75" in spend
    assert "threshold 2,500.5: fired at 2,600" in usage
    assert "threshold JPY 5,000: fired at JPY 123,456" in yen


def test_the_webhook_summary_names_no_invoice_or_item() -> None:
    """`outbox deliver --sink webhook` said '(0 invoice(s) finalized, 0 item(s) added, 0
    removed)', Stripe's counts, about alert events."""
    from meterline.jobs.deliver import DeliveryReport

    report = DeliveryReport(sink="webhook", delivered=4, requests={"webhook": 4})
    assert report.summary() == "webhook: delivered 4 event(s) in 4 request(s)"
    stripe = DeliveryReport(sink="stripe", delivered=1, invoices_finalized=1, items_added=2)
    assert stripe.summary().startswith("stripe: delivered 1 event(s) (1 invoice(s) finalized")
