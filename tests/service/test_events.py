"""POST /v1/events: the same validation, dedup and accounting as file ingest (the same
rows stored), each event's outcome, idempotency, the body's limits, group commit."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from meters.catalog import MeterCatalog
from meters.ingest.ingestor import Ingestor
from meters.warehouse.base import Warehouse
from tests.conftest import fresh_warehouse
from tests.service.conftest import Service, StartService

pytestmark = pytest.mark.single_warehouse

NOW = datetime.now(UTC)
RECENT = (NOW - timedelta(days=1)).replace(microsecond=0)


def event(eid: str, **over: Any) -> dict[str, Any]:
    base = {
        "event_id": eid,
        "customer_id": "cus_00001",
        "meter": "fin_resolution",
        "timestamp": RECENT.isoformat().replace("+00:00", "Z"),
        "properties": {"channel": "chat"},
    }
    base.update(over)
    return base


def ndjson(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


# Every outcome: accepted, a duplicate in the batch, a conflicting copy, and a rejection
# for each kind of defect a row can have.
MIXED: list[Any] = [
    event("e1"),
    event("e2", value="2.5"),
    event("e1"),
    event("e2", value="3"),
    "not json at all",
    {"event_id": "e3"},
    event("e4", meter="no_such_meter"),
    event("e5", timestamp=(NOW - timedelta(days=400)).isoformat()),
    event("e6", value="-1"),
    event("e7", customer_id=" padded"),
    event("e8"),
]


def outcomes(response: Any) -> list[tuple[Any, ...]]:
    return [(e["index"], e["event_id"], e["status"], e["reason"]) for e in response["events"]]


def stored(wh: Warehouse, source_of: dict[str, str]) -> tuple[Any, ...]:
    """The rows an ingest left, with the sources named as `source_of` maps them."""

    def name(source: str) -> str:
        return source_of.get(source, source)

    events = wh.query_rows(
        "SELECT event_id, customer_id, meter, timestamp, value, properties, source, source_line,"
        " content_hash FROM usage_events ORDER BY event_id"
    )
    rejected = wh.query_rows(
        "SELECT source, source_line, event_id, customer_id, meter, reason, detail, raw"
        " FROM usage_events_rejected ORDER BY source_line"
    )
    log = wh.query_rows(
        "SELECT source, received, accepted, duplicates, rejected, rejected_by_reason"
        " FROM ingest_log ORDER BY source"
    )
    return (
        [(*r[:6], name(r[6]), *r[7:]) for r in events],
        [(name(r[0]), *r[1:]) for r in rejected],
        [(name(r[0]), *r[1:]) for r in log],
    )


@pytest.mark.parametrize("ndjson_body", [True, False], ids=["ndjson", "json-array"])
def test_outcomes_and_stored_rows_equal_file_ingest_of_the_same_events(
    service: Service,
    catalog: MeterCatalog,
    chdb_folder: Path,
    tmp_path: Path,
    ndjson_body: bool,
) -> None:
    body = ndjson(MIXED) if ndjson_body else None
    if not ndjson_body:
        # The JSON array of the same rows; the unreadable one stays a string element.
        body = json.dumps([r for r in MIXED]).encode()
    response = service.post_events(body, ndjson=ndjson_body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert outcomes(doc) == [
        (0, "e1", "accepted", None),
        (1, "e2", "accepted", None),
        (2, "e1", "duplicate", None),
        (3, "e2", "rejected", "conflicting_duplicate"),
        (4, None, "rejected", "malformed_row"),
        (5, "e3", "rejected", "missing_field"),
        (6, "e4", "rejected", "unknown_meter"),
        (7, "e5", "rejected", "timestamp_too_old"),
        (8, "e6", "rejected", "negative_value"),
        (9, "e7", "rejected", "bad_customer_id"),
        (10, "e8", "accepted", None),
    ]
    assert [e["line"] for e in doc["events"]] == list(range(1, 12))
    assert (doc["received"], doc["accepted"], doc["duplicates"], doc["rejected"]) == (11, 3, 1, 7)
    assert doc["rejected_by_reason"]["conflicting_duplicate"] == 1
    assert doc["ingest_id"] and doc["source"].startswith("api:test-ingest:")

    # The same events as a JSON-lines file, ingested by `meterline ingest`'s code.
    path = tmp_path / "events.jsonl"
    path.write_bytes(ndjson(MIXED) if ndjson_body else _array_as_jsonl(body))
    with fresh_warehouse(chdb_folder) as other:
        # At the API's ingest time: the same accepted window, and the same words.
        at = datetime.fromisoformat(doc["ingested_at"])
        summary = Ingestor(other, catalog, ingested_at=at).ingest_files([path])
        from_file = stored(other, {str(path): "SOURCE"})
    assert summary.to_json()["rejected_by_reason"] == doc["rejected_by_reason"]
    from_api = stored(service.warehouse, {doc["source"]: "SOURCE"})
    assert from_api[0] == from_file[0]  # usage_events, content hashes included
    assert from_api[1] == [
        (*r[:6], r[6].replace(str(path), doc["source"]), r[7]) for r in from_file[1]
    ]
    assert from_api[2] == from_file[2]  # ingest_log: received = accepted + dup + rejected


def _array_as_jsonl(body: bytes) -> bytes:
    """The JSON-lines file a JSON array stands for: one element per line, as written."""
    return b"".join(json.dumps(element).encode() + b"\n" for element in json.loads(body))


def test_sending_a_batch_again_changes_nothing(service: Service) -> None:
    body = ndjson([event("a1"), event("a2"), event("a3", meter="nope")])
    first = service.post_events(body).json()
    second = service.post_events(body).json()
    assert [e["status"] for e in first["events"]] == ["accepted", "accepted", "rejected"]
    assert [e["status"] for e in second["events"]] == ["duplicate", "duplicate", "rejected"]
    assert second["ingest_id"] != first["ingest_id"]
    ((events,),) = service.warehouse.query_rows("SELECT count() FROM usage_events")
    assert events == 2


def test_a_pretty_printed_array_is_read_as_its_elements(service: Service) -> None:
    body = json.dumps([event("p1"), event("p2", value=7)], indent=2)
    doc = service.post_events(body, ndjson=False).json()
    assert [e["status"] for e in doc["events"]] == ["accepted", "accepted"]
    assert service.warehouse.query_rows(
        "SELECT event_id, value FROM usage_events ORDER BY event_id"
    ) == [("p1", 1), ("p2", 7)]


def test_an_empty_batch_is_no_ingest(service: Service) -> None:
    for body, is_ndjson in ((b"[]", False), (b"", True), (b"\n\n", True)):
        doc = service.post_events(body, ndjson=is_ndjson).json()
        assert (doc["received"], doc["ingest_id"], doc["events"]) == (0, None, [])
    assert service.warehouse.query_rows("SELECT count() FROM ingest_log") == [(0,)]


def assert_problem(response: Any, status: int, slug: str, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert {"type", "title", "status", "detail"} <= set(doc)
    assert doc["type"] == f"urn:meterline:problem:{slug}" and doc["status"] == status
    for fragment in fragments:
        assert fragment in doc["detail"], doc["detail"]
    return doc


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"event_id": "x"}', "not a JSON array"),
        (b'[{"event_id": "x"}', "expected ',' or ']'"),
        (b"[1] 2", "more after its JSON array"),
    ],
)
def test_a_body_that_is_not_an_array_is_refused_and_nothing_stored(
    service: Service, body: bytes, fragment: str
) -> None:
    assert_problem(service.post_events(body, ndjson=False), 400, "bad-body", fragment)
    assert service.warehouse.query_rows("SELECT count() FROM ingest_log") == [(0,)]


def test_another_content_type_is_refused(service: Service) -> None:
    response = service.client.post(
        "/v1/events",
        content=b"x",
        headers={**service.auth("ingest"), "Content-Type": "text/csv"},
    )
    assert_problem(response, 415, "unsupported-media-type", "application/x-ndjson")


def test_a_body_over_the_limit_is_refused_with_413(start_service: StartService) -> None:
    service = start_service(service_max_body_bytes=2048)
    rows = [event(f"big{i}") for i in range(40)]
    body = ndjson(rows)
    assert len(body) > 2048
    assert_problem(service.post_events(body), 413, "too-large", "2,048 bytes")

    # Without a Content-Length (chunked), counted as it arrives.
    def chunks() -> Any:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    assert_problem(service.post_events(chunks()), 413, "too-large")
    # Just under the limit is taken.
    small = ndjson(rows[:10])
    assert len(small) <= 2048
    assert service.post_events(small).json()["accepted"] == 10
    assert service.warehouse.query_rows("SELECT count() FROM usage_events") == [(10,)]


def test_many_small_requests_are_stored_in_few_batches(start_service: StartService) -> None:
    service = start_service(service_flush_ms=500, service_rate_burst=100)
    results: list[Any] = []

    def send(i: int) -> None:
        results.append(service.post_events(ndjson([event(f"s{i}")])).json())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["events"][0]["event_id"] for r in results) == sorted(f"s{i}" for i in range(24))
    assert all(r["accepted"] == 1 for r in results)
    runs = {r["ingest_id"] for r in results}
    intake = service.client.app.state.intake  # type: ignore[attr-defined]
    # Group commit: each run stored many requests at once.
    assert intake.flushes == len(runs) and len(runs) <= 6, (intake.flushes, len(runs))
    # Each request is still a source of its own in the accounting.
    ((sources, ingests),) = service.warehouse.query_rows(
        "SELECT count(DISTINCT source), count(DISTINCT ingest_id) FROM ingest_log"
    )
    assert (sources, ingests) == (24, len(runs))


def test_a_run_that_fails_stores_nothing_and_says_send_again(service: Service) -> None:
    intake = service.client.app.state.intake  # type: ignore[attr-defined]
    real = intake._catalog

    def broken() -> Any:
        raise RuntimeError("the catalog could not be read")

    intake._catalog = broken
    try:
        response = service.post_events(ndjson([event("f1"), event("f2")]))
    finally:
        intake._catalog = real
    assert_problem(response, 503, "unavailable", "nothing of this request was stored")
    assert response.headers["retry-after"] == "5"
    assert service.warehouse.query_rows("SELECT count() FROM ingest_log") == [(0,)]
    # sent again, it is stored
    assert service.post_events(ndjson([event("f1"), event("f2")])).json()["accepted"] == 2


def test_another_method_is_405(service: Service) -> None:
    response = service.client.get("/v1/events", headers=service.auth("ingest"))
    assert_problem(response, 405, "method-not-allowed", "allowed: POST")
