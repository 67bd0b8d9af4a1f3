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
or the totals disagree (one line says which; the table shows all); 2 bad arguments;
4 the PostgreSQL server given with --postgres cannot be reached.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.child import RESULT_PREFIX
from bench.contenders import BY_NAME, CLOSE, CONTENDERS, Contender
from bench.data import Day, prepare_day, prepare_month
from bench.report import machine_info, markdown, write_all

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "out" / "suite"
POSTGRES_ENV = "METERLINE_TEST_POSTGRES_URL"
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class Unavailable(Exception):
    """A service the command was told to use cannot be reached (exit 4)."""


def parse_sizes(text: str) -> list[int]:
    """'1M', '10M,50M', '20k', '250000' -> events per day. Raises ArgumentTypeError."""
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", part.replace("_", ""))
        if not m:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a size: use e.g. 20k, 1M, 10M")
        n = round(float(m.group(1)) * _SUFFIX[m.group(2).lower()])
        if n < 1:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a size is at least 1 event")
        sizes.append(n)
    return sizes


def parse_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender {', '.join(unknown) or '(none)'}: choose from {', '.join(BY_NAME)}")
    return names


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
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
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
        reason = f"PostgreSQL cannot be reached: {str(exc).strip().splitlines()[0]}"
        if args.postgres:
            raise Unavailable(f"{reason}: start it or fix --postgres") from None
        return None, None, reason


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
        proc.wait()
    row["process_s"] = time.perf_counter() - started
    if not keep_work:
        shutil.rmtree(folder, ignore_errors=True)
    result = None
    for line in logs[0].read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX + " "):
            result = json.loads(line[len(RESULT_PREFIX) + 1:])
    if proc.returncode != 0 or result is None:
        errors = [x for x in logs[1].read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
        last = errors[-1].strip() if errors else "no error output"
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    sizes = [n for group in (args.size or [[1_000_000]]) for n in group]
    if args.customers < 1:
        print("--customers must be at least 1", file=sys.stderr)
        return 2
    chosen = [c for c in CONTENDERS
              if (args.only is None or c.name in args.only)
              and (args.skip is None or c.name not in args.skip)]
    try:
        pg_url, pg_version, pg_skip = postgres_target(args) if any(
            c.name == "postgres" for c in chosen) else (None, None, None)
    except Unavailable as exc:
        print(exc, file=sys.stderr)
        return 4
    info = machine_info()
    if pg_version:
        info["postgres_server"] = pg_version
    doc: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": info,
        "sizes": [],
    }
    out: Path = args.out.resolve()
    failed: list[str] = []
    paths: dict[str, Path] = {}
    for n in sizes:
        started = time.perf_counter()
        tag = f"[{short(n)}]"
        try:
            day = prepare_day(out / "data", n, args.customers, args.duplicates,
                              say=functools.partial(print, tag, flush=True))
        except ValueError as exc:
            print(f"cannot generate {n:,} events: {exc}", file=sys.stderr)
            return 2
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
