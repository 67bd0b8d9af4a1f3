"""Shared fixtures: one embedded chDB folder per test session, one database per test, and
every warehouse test on both backends.

chDB opens one folder per process, so every warehouse test in this process shares the
session's folder and gets a database of its own (dropped afterwards).

Each test that touches the warehouse (it uses the `warehouse` fixture, or `chdb_folder`
to open its own with `fresh_warehouse`) runs twice: `[chdb]` on the embedded engine and
`[clickhouse]` on the server backend (clickhouse-connect), through a ClickHouse HTTP
server driven by the same chDB engine (tests/support/chdb_http.py). METERLINE_TEST_WAREHOUSES
(`chdb`, `clickhouse` or `chdb,clickhouse`, the default) narrows the set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from billing.catalog import read_catalog
from meters.catalog import MeterCatalog
from meters.migrations import migrate
from meters.warehouse import connect
from meters.warehouse.base import Warehouse
from tests.support.chdb_http import ChdbHttpServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = ROOT / "catalog" / "intercom.yaml"

WAREHOUSES_ENV = "METERLINE_TEST_WAREHOUSES"
BACKENDS = ("chdb", "clickhouse")

# The backend of the running test, and the session's server once started.
_ACTIVE: dict[str, Any] = {"backend": "chdb", "server": None, "folder": None}


def selected_backends() -> list[str]:
    raw = os.environ.get(WAREHOUSES_ENV, ",".join(BACKENDS))
    chosen = [b.strip() for b in raw.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise pytest.UsageError(f"{WAREHOUSES_ENV}: use a comma list of {', '.join(BACKENDS)}")
    return chosen


@pytest.fixture(scope="session")
def chdb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("warehouse")
    _ACTIVE["folder"] = folder
    return folder


@pytest.fixture(scope="session")
def clickhouse_server(chdb_folder: Path) -> Iterator[ChdbHttpServer]:
    """The ClickHouse HTTP test server on a free loopback port, running on the session's
    chDB folder (so tests can look at a database through either backend)."""
    server = ChdbHttpServer(chdb_folder).start()
    _ACTIVE["server"] = server
    try:
        yield server
    finally:
        _ACTIVE["server"] = None
        server.stop()


def _touches_warehouse(metafunc: pytest.Metafunc) -> bool:
    names = set(metafunc.fixturenames)
    if metafunc.definition.get_closest_marker("single_warehouse"):
        return False
    # Tests of the server itself (clickhouse_server, server_warehouse) choose their backend.
    if "clickhouse_server" in names:
        return False
    return "warehouse" in names or "chdb_folder" in names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "single_warehouse: a warehouse test that runs on one backend only"
    )
    config.addinivalue_line(
        "markers",
        "server_subset(*ids): of a parametrized warehouse test, only the cases whose"
        " parameter ids are listed also run on the server backend (all run on chDB)",
    )


# When both warehouses and both ledgers run (METERLINE_TEST_POSTGRES_URL set), a test parametrized over both runs the two
# pairs a deployment uses, not all four: embedded (chDB with SQLite) and server (a ClickHouse
# server with PostgreSQL). Each engine still runs every such test.
CROSS_PAIRS = ({"sqlite", "clickhouse"}, {"postgresql", "chdb"})


def _deselected(item: pytest.Item, both_warehouses: bool) -> bool:
    """Whether a collected case is left out: a [clickhouse] case a `server_subset` marker
    does not list (the server backend differs from the embedded one in its transport only:
    the same engine runs the same SQL, so a long parametrized test proves it on a few
    cases), or, when both warehouses run, a cross pair of warehouse and ledger."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "warehouse_backend" not in callspec.params:
        return False
    ids = set(callspec.id.split("-"))
    marker = item.get_closest_marker("server_subset")
    if (
        marker is not None
        and callspec.params["warehouse_backend"] == "clickhouse"
        and not ids & {str(i) for i in marker.args}
    ):
        return True
    return both_warehouses and any(pair <= ids for pair in CROSS_PAIRS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the cases `_deselected` leaves out."""
    both = set(BACKENDS) <= set(selected_backends()) and bool(
        os.environ.get("METERLINE_TEST_POSTGRES_URL")
    )
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if _deselected(item, both) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# Test files whose tests share a session fixture too costly to build on every worker: the
# audit's closed month (tests/audit/conftest.py, 60-130 s). pytest-xdist's `loadfile`
# sends each file to one worker; these go to one worker together.
SHARED_SCOPES = ("tests/audit/",)
# Work units that take minutes each: handed out first, so that no worker starts one of
# them when the others are done (xdist orders units by their number of tests, which put
# the one-test seed range last: the run's last 7 minutes on one worker).
LONG_FIRST = (
    "tests/simulation/test_seeds.py",
    "tests/audit/",
    "tests/dags/test_scheduler_backfill.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the files under each of SHARED_SCOPES as one unit, and the
    LONG_FIRST units handed out before the others."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((scope for scope in SHARED_SCOPES if path.startswith(scope)), path)

        def _assign_work_unit(self, node: Any) -> None:
            waiting = next((unit for unit in LONG_FIRST if unit in self.workqueue), None)
            if waiting is not None:
                self.workqueue.move_to_end(waiting, last=False)
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _touches_warehouse(metafunc):
        metafunc.parametrize("warehouse_backend", selected_backends(), indirect=True)


@pytest.fixture(autouse=True)
def warehouse_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """`chdb` or `clickhouse` for a warehouse test (parametrized); `chdb` for the others."""
    backend = getattr(request, "param", "chdb")
    if backend == "clickhouse":
        request.getfixturevalue("clickhouse_server")
    previous = _ACTIVE["backend"]
    _ACTIVE["backend"] = backend
    try:
        yield backend
    finally:
        _ACTIVE["backend"] = previous


def open_test_warehouse(
    folder: Path, database: str, *, backend: str | None = None, **options: Any
) -> Warehouse:
    """Connect to `database` with the running test's backend (or the one named)."""
    backend = backend or _ACTIVE["backend"]
    if backend == "clickhouse":
        server: ChdbHttpServer | None = _ACTIVE["server"]
        if server is None:
            raise RuntimeError("the clickhouse backend needs the clickhouse_server fixture")
        return connect(server.url(database), **options)
    return connect(f"chdb://{folder}", database=database)


@contextmanager
def fresh_warehouse(
    folder: Path, *, backend: str | None = None, **options: Any
) -> Iterator[Warehouse]:
    """A migrated, empty database of its own in the session's chDB folder, opened with
    the running test's backend (or the one named)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    wh = open_test_warehouse(folder, database, backend=backend, **options)
    try:
        migrate(wh)
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()


def warehouse_url(wh: Warehouse) -> str:
    """The METERLINE_WAREHOUSE_URL that opens the same database with the same backend
    (for code under test that connects by itself: the CLI, DAG tasks)."""
    server: ChdbHttpServer | None = _ACTIVE["server"]
    if type(wh).__name__ == "ClickHouseWarehouse" and server is not None:
        return server.url(wh.database)
    return f"chdb://{_ACTIVE['folder']}?database={wh.database}"


@pytest.fixture
def warehouse(chdb_folder: Path) -> Iterator[Warehouse]:
    with fresh_warehouse(chdb_folder) as wh:
        yield wh


@pytest.fixture
def bare_warehouse(chdb_folder: Path) -> Iterator[Warehouse]:
    """A database of its own with no schema at all (`meterline init` never ran on it),
    opened with the running test's backend."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    wh = open_test_warehouse(chdb_folder, database)
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()


@pytest.fixture(scope="session")
def catalog() -> MeterCatalog:
    return read_catalog(DEMO_CATALOG).meters


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Counts per engine, so a run shows which combinations it covered."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if getattr(report, "when", "call") not in ("call", "setup") or (
                outcome == "passed" and report.when != "call"
            ):
                continue
            for engine in ("chdb", "clickhouse", "sqlite", "postgresql"):
                if (
                    f"[{engine}]" in nodeid
                    or f"-{engine}]" in nodeid
                    or f"[{engine}-" in nodeid
                    or f"-{engine}-" in nodeid
                ):
                    counts.setdefault(engine, {}).setdefault(outcome, 0)
                    counts[engine][outcome] += 1
    if counts:
        terminalreporter.write_sep("-", "tests per engine")
        for engine in ("chdb", "clickhouse", "sqlite", "postgresql"):
            if engine in counts:
                parts = ", ".join(f"{n} {o}" for o, n in sorted(counts[engine].items()))
                terminalreporter.write_line(f"{engine:>11}: {parts}")
