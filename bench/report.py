"""What a suite run writes: the machine it ran on (read at run time), a markdown table per
size, the JSON document of everything measured, and a chart of seconds against events
per day, one line per contender."""

from __future__ import annotations

import os
import platform
import subprocess
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chdb", "duckdb", "pandas", "pyarrow", "psycopg", "numpy")
# Targets of issue 15: meterline's time at most this many times each contender's.
TARGETS = {"duckdb_file": 1.0, "pandas": 1 / 3, "postgres": 1 / 10}


def machine_info() -> dict[str, Any]:
    """CPUs, memory, load, system, package versions and the checkout measured."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info["packages"][name] = None
    info["git"] = _git()
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short", "HEAD"),
                "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_changes": None}


def machine_line(info: dict[str, Any]) -> str:
    load = info.get("load_average")
    parts = [f"{info['cpus']} CPUs ({info['cpu_model'] or 'model unknown'})",
             f"{info['memory_gb']} GB RAM" if info.get("memory_gb") else "RAM unknown",
             info["system"], f"Python {info['python']}"]
    if load:
        parts.append("load average at start " + " / ".join(f"{x:.2f}" for x in load))
    return ", ".join(parts)


def versions_line(info: dict[str, Any]) -> str:
    git = info.get("git") or {}
    head = f"meterline at {git.get('commit') or 'an unknown commit'}"
    if git.get("uncommitted_changes"):
        head += " (with uncommitted changes)"
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    server = info.get("postgres_server")
    return f"{head}; {packages}" + (f"; PostgreSQL server {server}" if server else "")


def _seconds(x: float) -> str:
    return f"{x:,.1f}" if x >= 1 else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f}x" if x < 10 else f"{x:.0f}x")


def size_markdown(size: dict[str, Any]) -> str:
    """The table of one size, the totals line, the targets and what was skipped or failed."""
    day = size["day"]
    dup_share = (day["exact_duplicates"] + day["conflicting_duplicates"]) / max(day["rows"], 1)
    lines = [f"### {size['events_per_day']:,} events per day",
             "",
             f"{day['rows']:,} rows ({day['customers']:,} customers, {dup_share:.1%} re-sent copies: "
             f"{day['exact_duplicates']:,} exact, {day['conflicting_duplicates']:,} conflicting) "
             f"in one Parquet file of string columns; generated in {_seconds(size['generate_s'])} s.",
             "",
             "| contender | work | wall s | phases (s) | peak RSS MB | time ÷ meterline's | time ÷ DuckDB file's |",
             "|---|---|---:|---|---:|---:|---:|"]
    ok = {r["contender"]: r for r in size["results"] if r["status"] == "ok"}
    ref = {name: ok[name]["wall_s"] for name in ("meterline", "duckdb_file") if name in ok}
    for r in size["results"]:
        if r["status"] != "ok":
            continue
        phases = ", ".join(f"{k} {_seconds(v)}" for k, v in r["phases"].items())
        wall = _seconds(r["wall_s"])
        if r["contender"] == "meterline":
            wall = f"**{wall}**"
        ratios = [_ratio(r["wall_s"] / ref[n]) if n in ref else "–" for n in ("meterline", "duckdb_file")]
        lines.append(f"| {r['label']} | {r['work']} | {wall} | {phases} | {r['peak_rss_mb']:,.0f} | "
                     f"{ratios[0]} | {ratios[1]} |")
    lines.append("")
    t = day["totals"]
    agreeing = [r["contender"] for r in size["results"] if r["status"] == "ok" and r["compared"]]
    verdict = "agree" if size["agree"] else "DISAGREE"
    lines.append(f"Totals ({verdict}: {', '.join(agreeing)} and the generator's manifest.json): "
                 f"{t['resolutions']:,} resolutions, {t['seat_events']:,} seat events summing to "
                 f"{Decimal(t['seat_value_sum']):,}; {day['accepted']:,} events kept of {day['rows']:,} rows"
                 + (f"; {size['groups']:,} (customer, meter, properties, hour) groups." if size.get("groups") else "."))
    for problem in size["problems"]:
        lines.append(f"- **{problem}**")
    if "meterline" in ok:
        said = []
        for name, target in TARGETS.items():
            if name in ok:
                said.append(f"{ok['meterline']['wall_s'] / ok[name]['wall_s']:.2f}x the time of "
                            f"{ok[name]['label']} (target: at most {target:.2g}x)")
        if said:
            lines.append("")
            lines.append("meterline takes " + "; ".join(said) + ".")
    for r in size["results"]:
        if r["status"] != "ok":
            lines.append(f"- {r['label']} ({r['contender']}) {r['status']}: {r['reason']}")
    notes = [f"{r['label']}: {n}" for r in size["results"] if r["status"] == "ok" for n in r["notes"]]
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    info = doc["machine"]
    head = ["## Benchmark: meterline and the alternatives, side by side", "",
            f"`{doc['command']}`, started {doc['started_at']}.", "",
            f"Machine: {machine_line(info)}.", "", f"Versions: {versions_line(info)}.", "",
            "Wall seconds of the work itself (after the interpreter and imports started), each "
            "contender in a process of its own, one run each, on the same file; peak RSS is "
            "that process's peak resident memory (PostgreSQL: the client's only).", "", ""]
    return "\n".join(head) + "\n".join(size_markdown(s) for s in doc["sizes"])


CHART_SUFFIX = {"chdb_floor": " (no dedup)", "chdb_dedup": " (dedup)"}


def _short(n: int) -> str:
    for factor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= factor:
            return f"{n / factor:g}{suffix}"
    return str(n)


def chart(doc: dict[str, Any], path: Path) -> None:
    """Seconds against events per day, one line per contender that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for size in doc["sizes"]:
        for r in size["results"]:
            if r["status"] == "ok":
                label = r["label"] + CHART_SUFFIX.get(r["contender"], "")
                series.setdefault(label, []).append((size["events_per_day"], r["wall_s"]))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                linewidth=2.5 if label == "meterline" else 1.5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({size["events_per_day"] for size in doc["sizes"]})
    ax.set_xticks(sizes, [_short(n) for n in sizes])
    ax.minorticks_off()
    if len(sizes) == 1:
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    ax.set_xlabel("events per day")
    ax.set_ylabel("wall seconds (lower is better)")
    info = doc["machine"]
    ax.set_title(f"One day of usage events, each contender alone\n{info['cpus']} CPUs, "
                 f"{info['cpu_model'] or ''}".strip(), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write results.md, results.json and results.png into `out`; their paths."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "results.md", "json": out / "results.json", "png": out / "results.png"}
    paths["md"].write_text(markdown(doc), encoding="utf-8")
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    chart(doc, paths["png"])
    return paths
