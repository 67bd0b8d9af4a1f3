"""`meterline demo --serve` wiring, without running the demo (it takes minutes): the flag
calls the service starter with the demo's folder and port after the demo, and only then;
--port without --serve is refused. The starter itself runs on a real demo's output in
tests/meterline/test_demo.py (test_serve_runs_the_console_on_the_demo_ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from meterline.cli import main
from meterline.demo import run as demo_run
from meterline.demo import serve as demo_serve
from meterline.demo.serve import DemoService, announce


class Called:
    def __init__(self) -> None:
        self.demo: list[Any] = []
        self.serve: list[tuple[Any, int]] = []


@pytest.fixture
def called(monkeypatch: pytest.MonkeyPatch) -> Called:
    seen = Called()

    class Result:
        matches_manifest = True

    def run_demo(config: Any, console: Any) -> Result:
        seen.demo.append(config)
        return Result()

    def serve_demo(config: Any, console: Any, *, port: int) -> None:
        assert seen.demo, "the service started before the demo ran"
        seen.serve.append((config, port))

    monkeypatch.setattr(demo_run, "run_demo", run_demo)
    monkeypatch.setattr(demo_serve, "serve_demo", serve_demo)
    return seen


def test_serve_starts_the_service_after_the_demo(called: Called, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    result = CliRunner().invoke(main, ["demo", "--dir", str(folder), "--serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    ((config, port),) = called.serve
    assert (config.folder, port) == (folder, 0)
    result = CliRunner().invoke(main, ["demo", "--dir", str(folder), "--serve"])
    assert result.exit_code == 0 and called.serve[-1][1] == 8080


def test_without_serve_nothing_is_served(called: Called, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert len(called.demo) == 1 and called.serve == []
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "d"), "--port", "9000"])
    assert result.exit_code == 2 and "--port is for --serve" in result.output
    assert len(called.demo) == 1  # refused before the demo ran


def test_what_serve_prints(tmp_path: Path) -> None:
    console = Console(width=80, record=True)
    token = "mlk_" + "x" * 60  # longer than a line: printed whole, never folded
    announce(DemoService("http://127.0.0.1:8080", token), console)
    text = console.export_text()
    assert "the support console: http://127.0.0.1:8080/console" in text
    assert f"scopes read, support, created for the demo's ledger): {token}" in text
    assert "Ctrl-C stops the service" in text
