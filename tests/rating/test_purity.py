"""rating/ is pure: it imports nothing of meterline's other packages and nothing that
does I/O, reads a clock or the environment (DESIGN.md, invariant 4)."""

from __future__ import annotations

import ast
from pathlib import Path

RATING = Path(__file__).resolve().parents[2] / "rating"

ALLOWED_IMPORTS = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",  # types of Discount's validity window only; never now()/today()
    "decimal",
    "enum",
    "functools",
    "iso4217",
    "itertools",  # pure iteration helpers (pairwise)
    "pydantic",
    "re",
    "typing",
    "rating",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "open", "getenv", "print", "input"}


def _modules() -> list[Path]:
    files = sorted(RATING.rglob("*.py"))
    assert len(files) >= 12
    return files


def test_rating_imports_only_the_standard_library_pydantic_and_iso4217() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


def test_rating_reads_no_clock_no_files_no_environment() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
            if isinstance(node, ast.Attribute):
                assert node.attr != "environ", f"{path.name}:{node.lineno} reads the environment"


def test_one_module_per_price_model() -> None:
    names = {p.stem for p in (RATING / "models").glob("*.py")}
    assert {"per_unit", "graduated", "volume", "package", "percentage", "flat", "base"} <= names
