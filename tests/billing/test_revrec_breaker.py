"""`meterline revrec`, `revrec waterfall` and `journal` against bad input (docs/revrec.md):
each fault a tester found kept as a test with the right value.

Every refusal is one error line with the README's exit code, never a traceback, and
nothing partially written; every identity holds to the minor unit."""

from __future__ import annotations

import pytest

from meterline.settings import SettingsError, load_settings

# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METERLINE_JOURNAL_ACCOUNTS", "{bad"),
        ("METERLINE_JOURNAL_ACCOUNTS", ""),
        ("METERLINE_JOURNAL_ACCOUNTS", " "),
        ("METERLINE_JOURNAL_REVENUE_ACCOUNTS", '{"fin_resolution": "4100"'),
    ],
)
def test_a_json_setting_that_is_not_json_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Was pydantic-settings' own SettingsError: an internal error (exit code 5).
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"invalid setting {variable}: is not JSON"):
        load_settings()


@pytest.mark.parametrize("value", ["Parent\nChild", " Parent", "Parent\t:US", "   "])
def test_a_subsidiary_that_netsuite_cannot_match_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Was written into every CSV row as given (a line break inside a field, spaces).
    monkeypatch.setenv("METERLINE_JOURNAL_SUBSIDIARY", value)
    with pytest.raises(
        SettingsError, match=r"METERLINE_JOURNAL_SUBSIDIARY: .* is not a subsidiary"
    ):
        load_settings()
    monkeypatch.setenv("METERLINE_JOURNAL_SUBSIDIARY", "")
    assert load_settings().journal_subsidiary is None
