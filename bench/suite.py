"""The side-by-side benchmark: meterline and the alternatives on the same day of events:

    python -m bench [--size 1M] [--size 10M,50M] [--out bench/out/suite]
                    [--customers 25000] [--postgres URL] [--only NAMES | --skip NAMES]
                    [--with-close]

For each size (events per day; 1M, 10M, 50M, 20k or a plain number), one day is generated
once (bench/data.py), then each contender (bench/contenders/) runs in a process of its
own on that same file, one after the other. Every contender that deduplicates must
report the same totals (resolutions, seat events, their value sum), the same events kept
and the same number of groups as each other and as the generator's manifest.json; the
engine's floor (chDB's group by without dedup) must count every row. PostgreSQL runs
when a URL is given (--postgres, else METERLINE_TEST_POSTGRES_URL) and is reachable;
otherwise it is skipped with the reason printed. With --with-close, meterline's close
of a generated month for --customers subscriptions is timed too (its own table).

Writes results.md, results.json and results.png into --out after each size, and prints
the tables. Exit codes: 0 every contender ran and the totals agree; 1 a contender failed
or the totals disagree (one line says which; the table shows all); 2 bad arguments (an
--out that is a file or cannot be written, a URL that is not PostgreSQL's included);
4 the PostgreSQL server given with --postgres cannot be reached, or another run is using
the same --out; 5 a bug (one line, the traceback in a file under --out); 130 Ctrl-C (the
contender running is stopped). Every error is one line on stderr, `python -m bench:
error: ...`, never a traceback. A day left damaged in --out (a truncated Parquet file)
is generated again.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from bench.child import RESULT_PREFIX
from bench.contenders import BY_NAME, CLOSE, CONTENDERS, Contender
from bench.data import Day, prepare_day, prepare_month
from bench.report import machine_info, markdown, write_all
from meterline.cli.exits import redact

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "out" / "suite"
POSTGRES_ENV = "METERLINE_TEST_POSTGRES_URL"
PROG = "python -m bench"
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
MAX_EVENTS = 1_000_000_000
"""The largest size (1G events a day: a hundred 10M chunks; 50M already takes an hour)."""
INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as the meterline command's."""
STOP_GRACE_S = (2.0, 15.0)
"""After Ctrl-C: seconds the running contender is given to exit by itself (it got the
Ctrl-C too when it came from the terminal), then to clean up after a SIGINT of ours
(PostgreSQL drops its scratch schema) before it is killed."""


class Refused(Exception):
    """The arguments or the --out folder cannot be used (exit 2)."""


class Unavailable(Exception):
    """A service the command was told to use cannot be reached, or the --out folder is
    in use by another run (exit 4)."""


def parse_sizes(text: str) -> list[int]:
    """'1M', '10M,50M', '20k', '250000' -> events per day. Raises ArgumentTypeError."""
    sizes = []
    for part in text.split(","):
        if not part.strip():
            raise argparse.ArgumentTypeError(f"{text!r} has an empty size: use e.g. 20k or 20k,50k")
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", part.replace("_", ""))
        if not m:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a size: use e.g. 20k, 1M, 10M")
        n = round(float(m.group(1)) * _SUFFIX[m.group(2).lower()])
        if n < 1:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a size is at least 1 event")
        if n > MAX_EVENTS:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is more than {MAX_EVENTS:,} events a day: the largest size is 1G")
        sizes.append(n)
    return sizes


def parse_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender {', '.join(unknown) or '(none)'}: choose from {', '.join(BY_NAME)}")
    return names


def out_folder(text: str) -> Path:
    """--out: a folder path, not empty. Raises ArgumentTypeError."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name: give a folder, e.g. bench/out/suite")
    return Path(text)


def short(n: int) -> str:
    for factor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_sizes, action="append", metavar="EVENTS",
                   help="events per day: 1M, 10M, 50M, 20k or a number; a comma list or the "
                        "option again draws a curve (default 1M)")
    p.add_argument("--customers", type=int, default=25_000, help="customers (default 25000)")
    p.add_argument("--duplicates", type=float, default=0.01,
                   help="share of events re-sent, a tenth of them with other content (default 0.01)")
    p.add_argument("--out", type=out_folder, default=DEFAULT_OUT,
                   help="folder for the data, the work and results.md/.json/.png "
                        "(default bench/out/suite)")
    p.add_argument("--postgres", metavar="URL",
                   help=f"PostgreSQL to run the PostgreSQL contender on (default ${POSTGRES_ENV}); "
                        "it works in a scratch schema it drops")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--only", type=parse_names, metavar="NAMES",
                       help=f"run only these contenders (comma list of {', '.join(BY_NAME)})")
    group.add_argument("--skip", type=parse_names, metavar="NAMES", help="skip these contenders")
    p.add_argument("--with-close", action="store_true",
                   help="also time meterline's close of a generated month for --customers "
                        "subscriptions (ingest, 31 rollups, close on SQLite; minutes at 25000)")
    p.add_argument("--keep-work", action="store_true",
                   help="keep each contender's databases (default: removed once it has run)")
    return p


def postgres_target(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(url, server version, reason it is skipped). Raises Unavailable when the URL given
    with --postgres cannot be reached."""
    url = args.postgres or os.environ.get(POSTGRES_ENV)
    if not url:
        return None, None, f"no PostgreSQL URL: pass --postgres URL or set {POSTGRES_ENV}"
    import psycopg

    from bench.contenders.postgres_sql import libpq_url

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return url, str(row[0]) if row else None, None
    except (psycopg.Error, ValueError) as exc:
        reason = f"PostgreSQL cannot be reached: {redact(str(exc).strip().splitlines()[0])}"
        if args.postgres:
            raise Unavailable(f"{reason}: start it or fix --postgres") from None
        return None, None, reason


def postgres_url_problem(url: str) -> str | None:
    """Why `url` is not a PostgreSQL URL (None: it looks like one; whether the server is
    there is postgres_target's question)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
        return "is not a PostgreSQL URL"
    try:
        _ = urlsplit(url).port  # raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a usable URL ({exc})"
    return None


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (exit 2, via parser.error) what no run can be made of, before any work."""
    if args.customers < 1:
        parser.error(f"--customers {args.customers}: at least 1 customer")
    if not (math.isfinite(args.duplicates) and 0 <= args.duplicates <= 1):
        parser.error(f"--duplicates {args.duplicates:g}: give the share of events re-sent, "
                     "a fraction from 0 to 1 (e.g. 0.01)")
    if args.postgres is not None:
        problem = "is empty" if not args.postgres.strip() else postgres_url_problem(args.postgres)
        if problem:
            parser.error(f"--postgres {redact(args.postgres)!r} {problem}: give "
                         "postgresql+psycopg://USER@HOST:PORT/DATABASE")
    if args.only and "postgres" in args.only and not (args.postgres or os.environ.get(POSTGRES_ENV)):
        parser.error(f"--only postgres needs a PostgreSQL server: pass --postgres URL or set "
                     f"{POSTGRES_ENV}")


def claim_out(out: Path) -> IO[str]:
    """Make `out` (a folder that can be written) and lock it for this run: the open lock
    file, held until it is closed or the process ends. Raises Refused when `out` is a
    file or cannot be written, Unavailable when another run holds it."""
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file, not a folder: give a folder (it is made if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = (out / ".lock").open("w", encoding="utf-8")
    except OSError as exc:
        raise Refused(f"--out {out} cannot be written ({exc.strerror or exc}): "
                      "give a folder you can write to") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise Unavailable(f"another benchmark run is using --out {out}: wait for it to "
                          "finish or pass another --out") from None
    return lock


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a contender's process after Ctrl-C: let it exit (a Ctrl-C at the terminal
    reached it too), else send it SIGINT so it cleans up, else kill it."""
    first, second = STOP_GRACE_S
    try:
        try:
            proc.wait(timeout=first)
            return
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=second)
            return
        except subprocess.TimeoutExpired:
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C again: do not wait any longer
    proc.kill()
    proc.wait()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def failure_line(stderr: str) -> str:
    """The line of a contender's stderr that says why it failed: the last line naming an
    exception (a traceback's last line), else the last line that is not only the ^^^
    markers under a source line, else 'no error output'."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    named = [x for x in lines if _EXCEPTION_LINE.match(x)]
    if named:
        return named[-1]
    text = [x for x in lines if x.strip("^~ ")]
    return text[-1] if text else "no error output"


def run_contender(contender: Contender, file: Path, work: Path, options: dict[str, Any],
                  keep_work: bool) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its result row for the JSON document."""
    row: dict[str, Any] = {"contender": contender.name, "label": contender.label,
                           "work": contender.work, "compared": contender.compared}
    folder = work / contender.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    logs = work / f"{contender.name}.stdout", work / f"{contender.name}.stderr"
    request = {"contender": contender.name, "file": str(file), "work": str(folder),
               "options": options}
    started = time.perf_counter()
    with logs[0].open("wb") as stdout, logs[1].open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bench.child", json.dumps(request)],
                                cwd=ROOT, stdout=stdout, stderr=stderr)
        try:
            proc.wait()
        except KeyboardInterrupt:
            stop(proc)
            raise
    row["process_s"] = time.perf_counter() - started
    if not keep_work:
        shutil.rmtree(folder, ignore_errors=True)
    result = None
    for line in logs[0].read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX + " "):
            result = json.loads(line[len(RESULT_PREFIX) + 1:])
    if proc.returncode != 0 or result is None:
        last = failure_line(logs[1].read_text(encoding="utf-8", errors="replace"))
        row.update(status="failed",
                   reason=f"exit code {proc.returncode}: {last} (log: {logs[1]})")
        return row
    row.update(status="ok", reason=None, **result)
    return row


def check(day: Day, results: list[dict[str, Any]]) -> tuple[list[str], int | None]:
    """Problems with the results of one size (none: they agree), and the groups the
    deduplicating contenders made."""
    problems = []
    expected = day.totals.to_dict()
    groups: dict[str, int] = {}
    for r in results:
        if r["status"] == "failed":
            problems.append(f"{r['label']} ({r['contender']}) failed: {r['reason']}")
            continue
        if r["status"] != "ok":
            continue
        name = f"{r['label']} ({r['contender']})"
        if r["rows"] != day.rows:
            problems.append(f"{name} read {r['rows']:,} rows, the file has {day.rows:,}")
        if not r["compared"]:
            counted = r["totals"]["resolutions"] + r["totals"]["seat_events"]
            if counted != day.rows:
                problems.append(f"{name} counted {counted:,} rows in its groups, the file has {day.rows:,}")
            continue
        if r["totals"] != expected:
            diff = ", ".join(f"{k} {r['totals'][k]} (manifest.json {v})"
                             for k, v in expected.items() if r["totals"][k] != v)
            problems.append(f"{name} disagrees: {diff}")
        if r["accepted"] != day.accepted:
            problems.append(f"{name} kept {r['accepted']:,} events, manifest.json says {day.accepted:,}")
        groups[name] = r["groups"]
    if len(set(groups.values())) > 1:
        problems.append("group counts differ: " + ", ".join(f"{k} {v:,}" for k, v in groups.items()))
    return problems, (next(iter(groups.values())) if groups else None)


def error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def report_internal(exc: BaseException, argv: list[str], out: Path | None) -> None:
    """One line for a bug, with the file that holds the traceback (in --out, else the
    system's temporary folder)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    body = redact(f"{PROG} {' '.join(argv)}\n\n" + "".join(traceback.format_exception(exc)))
    where = "the traceback could not be written"
    for folder in ([out] if out else []) + [Path(tempfile.gettempdir())]:
        try:
            path = folder / f"bench-error-{stamp}-{os.getpid()}.log"
            path.write_text(body, encoding="utf-8")
            where = f"the traceback is in {path}"
            break
        except OSError:
            continue
    summary = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else "(no message)"
    error(f"internal error (a bug): {type(exc).__name__}: {summary}; {where}. Please report it")


def main(argv: list[str] | None = None) -> int:
    """The command: exit code per the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    state: dict[str, Path] = {}
    try:
        return run(argv, state)
    except Refused as exc:
        error(str(exc))
        return 2
    except Unavailable as exc:
        error(str(exc))
        return 4
    except KeyboardInterrupt:
        return interrupted(state.get("out"))
    except Exception as exc:
        if caused_by_ctrl_c(exc):
            return interrupted(state.get("out"))
        report_internal(exc, argv, state.get("out"))
        return 5


def caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind `exc` (a Ctrl-C during a native module's
    import surfaces as ImportError('initialization failed') caused by it)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def interrupted(out: Path | None) -> int:
    error("interrupted (Ctrl-C); the contender running was stopped"
          + (f" (the sizes that finished are in {out / 'results.md'})" if out else "")
          + "; run the command again to measure (generated days are reused)")
    return INTERRUPTED


def run(argv: list[str], state: dict[str, Path]) -> int:
    """main's work; `state["out"]` is set once the --out folder is known."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    sizes = [n for group in (args.size or [[1_000_000]]) for n in group]
    out: Path = args.out.resolve()
    lock = claim_out(out)
    state["out"] = out
    try:
        return measure(args, argv, sizes, out)
    finally:
        lock.close()


def measure(args: argparse.Namespace, argv: list[str], sizes: list[int], out: Path) -> int:
    """Generate each size's day, run the contenders on it, write and print the results."""
    chosen = [c for c in CONTENDERS
              if (args.only is None or c.name in args.only)
              and (args.skip is None or c.name not in args.skip)]
    pg_url, pg_version, pg_skip = postgres_target(args) if any(
        c.name == "postgres" for c in chosen) else (None, None, None)
    info = machine_info()
    if pg_version:
        info["postgres_server"] = pg_version
    doc: dict[str, Any] = {
        "command": redact(f"{PROG} " + " ".join(argv)),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": info,
        "sizes": [],
    }
    failed: list[str] = []
    paths: dict[str, Path] = {}
    for n in sizes:
        started = time.perf_counter()
        tag = f"[{short(n)}]"
        try:
            day = prepare_day(out / "data", n, args.customers, args.duplicates,
                              say=functools.partial(print, tag, flush=True))
        except ValueError as exc:
            raise Refused(f"cannot generate {n:,} events: {exc}") from None
        generate_s = time.perf_counter() - started
        results = []
        for c in chosen:
            if c.name == "postgres" and pg_url is None:
                print(f"{tag} {c.label}: skipped ({pg_skip})", flush=True)
                results.append({"contender": c.name, "label": c.label, "work": c.work,
                                 "compared": c.compared, "status": "skipped", "reason": pg_skip})
                continue
            print(f"{tag} {c.label}: {c.work} ...", flush=True)
            row = run_contender(c, day.file, out / "work" / str(n), {"url": pg_url} if c.name == "postgres" else {},
                                args.keep_work)
            if row["status"] == "ok":
                print(f"{tag}   {row['wall_s']:.2f} s, peak RSS {row['peak_rss_mb']:,.0f} MB",
                      flush=True)
            else:
                print(f"{tag}   failed: {row['reason']}", flush=True)
            results.append(row)
        problems, groups = check(day, results)
        doc["sizes"].append({"events_per_day": n, "day": day.to_dict(), "generate_s": generate_s,
                             "results": results, "agree": not problems, "problems": problems,
                             "groups": groups})
        paths = write_all(doc, out)
        failed.extend(f"at {n:,} events per day: {p}" for p in problems)
    if args.with_close:
        started = time.perf_counter()
        month = prepare_month(out / "data", args.customers,
                              say=functools.partial(print, "[close]", flush=True))
        generate_s = time.perf_counter() - started
        print(f"[close] {CLOSE.label}: {CLOSE.work} ...", flush=True)
        row = run_contender(CLOSE, month, out / "work" / "close", {}, args.keep_work)
        row.update(customers=args.customers, generate_s=generate_s)
        doc["close"] = row
        if row["status"] == "ok":
            print(f"[close]   {row['wall_s']:.2f} s, peak RSS {row['peak_rss_mb']:,.0f} MB", flush=True)
        else:
            failed.append(f"the close: {row['reason']}")
        paths = write_all(doc, out)
    print()
    print(markdown(doc))
    print(f"written: {paths['md']}, {paths['json']}, {paths['png']}")
    if failed:
        print(f"benchmark failed {failed[0]}"
              + (f" (and {len(failed) - 1} more problems in {paths['md']})" if len(failed) > 1 else ""),
              file=sys.stderr)
        return 1
    return 0
