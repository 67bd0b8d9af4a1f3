from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meterline.settings import SettingsError, load_settings


def test_defaults_are_embedded() -> None:
    config = load_settings()
    assert config.warehouse_url.startswith("chdb://")
    assert config.ledger_url.startswith("sqlite:///")
    assert config.catalog_path.is_file()


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("METERLINE_WAREHOUSE_URL", "mysql://db/x", "unsupported scheme 'mysql'"),
        ("METERLINE_WAREHOUSE_URL", "chdb://", "needs a folder path"),
        ("METERLINE_WAREHOUSE_URL", "clickhouse:///nohost", "needs a host"),
        ("METERLINE_LEDGER_URL", "mongodb://x", "sqlite:///PATH or postgresql"),
        ("METERLINE_WAREHOUSE_LOCK_TIMEOUT_S", "-1", "greater than 0"),
        ("METERLINE_MAX_EVENT_AGE_DAYS", "soon", "valid integer"),
    ],
)
def test_invalid_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert env in str(info.value)
    assert message in str(info.value)


def test_cli_reports_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from meterline import settings as settings_module
    from meterline.cli import main

    settings_module.settings.cache_clear()
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", "mysql://db/x")
    result = CliRunner().invoke(main, ["init"])
    settings_module.settings.cache_clear()
    assert result.exit_code == 2
    assert "METERLINE_WAREHOUSE_URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("deliveries/{date}", "deliveries/2026-11-01"),
        ("/data/usage/{date}.parquet", "/data/usage/2026-11-01.parquet"),
        (
            "s3://bucket/usage/{year}/{month}/{day}/*.parquet",
            "s3://bucket/usage/2026/11/01/*.parquet",
        ),
        ("file:///srv/dt={date}", "file:///srv/dt=2026-11-01"),
    ],
)
def test_the_delivery_path_names_a_day(template: str, expected: str) -> None:
    from datetime import date

    assert load_settings(delivery_path=template).delivery_location(date(2026, 11, 1)) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("deliveries", "does not name the whole day"),
        ("deliveries/{month}-{day}", "does not name the whole day"),
        ("deliveries/{year}/{day}", "does not name the whole day"),
        ("deliveries/{dat}", "unknown field {dat}"),
        ("deliveries/{date", "is not a path template"),
        ("deliveries/{0}", "is not a path template"),
    ],
)
def test_a_delivery_path_that_cannot_tell_the_days_apart_is_refused(
    monkeypatch: pytest.MonkeyPatch, template: str, message: str
) -> None:
    monkeypatch.setenv("METERLINE_DELIVERY_PATH", template)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("invalid setting METERLINE_DELIVERY_PATH: ")
    assert message in str(info.value)


def test_an_invalid_origin_address_is_not_also_called_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERLINE_TAX_SINK", "avalara")
    monkeypatch.setenv("METERLINE_AVALARA_COMPANY_CODE", "DEFAULT")
    monkeypatch.setenv("METERLINE_AVALARA_ORIGIN_ADDRESS", '{"city": "Albany"}')
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "METERLINE_AVALARA_ORIGIN_ADDRESS" in text and "country" in text
    assert "avalara needs" not in text
    monkeypatch.delenv("METERLINE_AVALARA_ORIGIN_ADDRESS")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "avalara needs METERLINE_AVALARA_ORIGIN_ADDRESS" in str(info.value)
