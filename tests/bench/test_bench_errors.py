"""`python -m bench` given bad input: one line on stderr saying what is wrong and what to
do, never a traceback, and the exit code of the table in bench/suite.py (2 refused, 4
unavailable, 5 a bug, 130 Ctrl-C). Also: a damaged day in --out is generated again, a
failed contender's reason is its exception line, a password never reaches results.md."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench import data, suite

ROOT = Path(__file__).resolve().parents[2]
PROG = "python -m bench: error: "


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main's exit code (argparse's own exit included) and its stderr."""
    try:
        code = suite.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The error line; the usage lines argparse prints above it are allowed."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(PROG)]
    assert len(errors) == 1, err
    return errors[0][len(PROG):]


@pytest.mark.parametrize("argv, expected", [
    (["--size", "99999999999999999999999"], "the largest size is 1G"),
    (["--size", "20k,,"], "has an empty size"),
    (["--size", "abc"], "is not a size"),
    (["--size", "0"], "at least 1 event"),
    (["--customers", "0"], "--customers 0: at least 1 customer"),
    (["--duplicates", "2"], "a fraction from 0 to 1"),
    (["--duplicates", "-1"], "a fraction from 0 to 1"),
    (["--duplicates", "nan"], "a fraction from 0 to 1"),
    (["--out="], "an empty folder name"),
    (["--only", "nosuch"], "unknown contender nosuch"),
    (["--only", "meterline", "--skip", "pandas"], "not allowed with argument --only"),
    (["--postgres=not a url"], "is not a PostgreSQL URL"),
    (["--postgres", "mysql://x@127.0.0.1/test"], "is not a PostgreSQL URL"),
    (["--postgres", "postgresql+psycopg://u:secret@127.0.0.1:99999/t"], "is not a usable URL"),
    (["--postgres="], "is empty"),
])
def test_bad_arguments_are_refused_before_any_work(
        argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, err = run_main([*argv, "--out", str(out)] if argv != ["--out="] else argv, capsys)
    assert code == 2
    line = one_error_line(err)
    assert expected in line
    assert "secret" not in err
    assert not out.exists(), "nothing is generated for a refused command"


def test_only_postgres_without_a_url_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(suite.POSTGRES_ENV, raising=False)
    code, err = run_main(["--size", "20k", "--only", "postgres", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--only postgres needs a PostgreSQL server" in one_error_line(err)


def test_unreachable_postgres_is_unavailable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["--size", "20k", "--only", "postgres", "--out", str(tmp_path / "o"),
                          "--postgres", "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"], capsys)
    assert code == 4
    line = one_error_line(err)
    assert "PostgreSQL cannot be reached" in line and "fix --postgres" in line
    assert "secret" not in err


def test_out_that_is_a_file_or_under_one_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "a_file"
    file.write_text("x")
    code, err = run_main(["--size", "20k", "--out", str(file)], capsys)
    assert code == 2
    assert "is a file, not a folder" in one_error_line(err)
    code, err = run_main(["--size", "20k", "--out", str(file / "sub")], capsys)
    assert code == 2
    assert "cannot be written" in one_error_line(err)
    assert file.read_text() == "x"


def test_out_in_use_by_another_run_is_unavailable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path.joinpath(".lock").touch()
    with tmp_path.joinpath(".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, err = run_main(["--size", "20k", "--customers", "200", "--out", str(tmp_path)], capsys)
    assert code == 4
    assert "another benchmark run is using --out" in one_error_line(err)
    assert not (tmp_path / "data").exists()


def test_a_bug_is_one_line_and_a_log_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(suite, "measure", broken)
    code, err = run_main(["--size", "20k", "--out", str(tmp_path)], capsys)
    assert code == 5
    line = one_error_line(err)
    assert line.startswith("internal error (a bug): RuntimeError: boom; the traceback is in ")
    log = Path(line.split("the traceback is in ", 1)[1].split(". Please", 1)[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text()


def test_ctrl_c_inside_a_native_import_is_an_interrupt(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while matplotlib's extension initialises surfaced as ImportError('initialization
    failed') from KeyboardInterrupt, and was reported as a bug (exit 5)."""
    def interrupted_import(*_: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(suite, "measure", interrupted_import)
    code, err = run_main(["--size", "20k", "--out", str(tmp_path)], capsys)
    assert code == suite.INTERRUPTED
    assert one_error_line(err).startswith("interrupted (Ctrl-C)")


def _bench_processes(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("whole_group", [True, False], ids=["terminal-ctrl-c", "sigint-to-parent"])
def test_ctrl_c_stops_the_contender_and_exits_130(tmp_path: Path, whole_group: bool) -> None:
    """Ctrl-C at the terminal (SIGINT to the process group) printed a traceback (exit -2);
    SIGINT to the parent alone also left its contender running."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--size", "200k", "--customers", "200", "--only", "meterline",
         "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:
        if "meterline: ingest" in line:
            break
    time.sleep(1.0)  # the contender's process is running
    if whole_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == suite.INTERRUPTED, err
    assert one_error_line(err).startswith("interrupted (Ctrl-C)")
    assert _bench_processes(str(out)) == []


def test_failure_line_is_the_exception_not_the_markers() -> None:
    """DuckDB's errors end with a source line and ^^^ markers: the reason was '^^^^'."""
    stderr = """Traceback (most recent call last):
  File "bench/contenders/duckdb_sql.py", line 51, in run
_duckdb.InvalidInputException: Invalid Input Error: No magic bytes found at end of file 'x.parquet'

LINE 4: FROM read_parquet($file, file_row_number = true) AS f
              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
"""
    assert suite.failure_line(stderr).startswith("_duckdb.InvalidInputException: Invalid Input")
    assert suite.failure_line("  ^^^^\n") == "no error output"
    assert suite.failure_line("terminate called\n") == "terminate called"


def test_damaged_day_is_generated_again(tmp_path: Path) -> None:
    """A truncated cached Parquet file made every contender fail (exit 1); a manifest cut
    short was a traceback."""
    day = data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None)
    assert day.generated
    assert not data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None).generated
    size = day.file.stat().st_size
    with day.file.open("r+b") as f:
        f.truncate(size // 2)
    again = data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None)
    assert again.generated and pq.ParquetFile(again.file).metadata.num_rows == day.rows
    (day.file.parent.parent / "manifest.json").write_text('{"seed": 1')
    assert data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None).generated


def test_damaged_chunk_or_joined_file_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk generated again was not joined again (the marker named the same paths)."""
    monkeypatch.setattr(data, "CHUNK_EVENTS", 10_000)
    day = data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None)
    assert day.chunks == 2 and pq.ParquetFile(day.file).metadata.num_rows == day.rows
    chunk0 = day.file.parent / "chunk0"
    (chunk0_file,) = (chunk0 / "events").glob("*.parquet")
    chunk0_file.write_bytes(b"PAR1 damaged")
    day.file.write_bytes(b"damaged too")
    again = data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None)
    assert again.generated and pq.ParquetFile(again.file).metadata.num_rows == day.rows
    day.file.write_bytes(b"damaged")
    third = data.prepare_day(tmp_path, 20_000, 200, 0.01, say=lambda _: None)
    assert third.generated and pq.ParquetFile(third.file).metadata.num_rows == day.rows


def test_password_is_not_written_into_the_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line was recorded verbatim in results.md/.json, password and all."""
    code, _ = run_main(["--size", "20k", "--customers", "200", "--only", "pandas", "--out", str(tmp_path),
                        "--postgres", "postgresql+psycopg://u:secret@127.0.0.1:1/t"], capsys)
    assert code == 0
    for name in ("results.md", "results.json"):
        text = (tmp_path / name).read_text()
        assert "secret" not in text and "u:***@127.0.0.1" in text, name
    assert json.loads((tmp_path / "results.json").read_text())["sizes"][0]["agree"]
