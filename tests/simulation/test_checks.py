"""The simulator's checks fail where the books are wrong: a world is played with no fault,
then the ledger and Stripe are tampered with, and each check must name what changed.
Runs in a subprocess (the simulator opens a chDB folder of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from pathlib import Path
from sqlalchemy import create_engine, text
from meterline.simulation.checks import check_all
from meterline.simulation.faults import PipelinePlan
from meterline.simulation.play import Player, merged_deliveries
from meterline.simulation.runner import stripe_endpoint
from meterline.simulation.world import Shape, make_world

root = Path(sys.argv[1])
world = make_world(7, Shape(customers=3, input_faults=()))
deliveries = merged_deliveries([world])
with stripe_endpoint(7, ()) as base:
    played = Player([world], PipelinePlan(()), root, "tamper", base).run()
    clean = check_all(played, deliveries)
    engine = create_engine(played.settings["ledger_url"])
    with engine.begin() as db:
        line = db.execute(text(
            "SELECT l.id, l.invoice_id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
            " WHERE l.kind = 'usage' AND l.amount_minor > 0 AND i.status = 'finalized'"
            " AND i.currency <> 'KWD' ORDER BY l.id LIMIT 1")).one()
        db.execute(text("DROP TRIGGER IF EXISTS invoice_lines_no_update_finalized"))
        for name, in db.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
            db.execute(text(f'DROP TRIGGER "{name}"'))
        db.execute(text("UPDATE invoice_lines SET amount_minor = amount_minor + 1 WHERE id = :i"),
                   {"i": line.id})
        db.execute(text("UPDATE invoices SET total_minor = total_minor + 1 WHERE id = :i"),
                   {"i": line.invoice_id})
    tampered = check_all(played, deliveries)
print(json.dumps({"clean": [clean.run, dict(clean.worlds)],
                  "tampered": [tampered.run, dict(tampered.worlds)], "line": line.id,
                  "invoice": line.invoice_id}))
"""


def test_a_tampered_ledger_fails_the_model_the_finalized_and_stripe_checks(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    clean_run, clean_worlds = found["clean"]
    assert clean_run == [] and all(not f for f in clean_worlds.values()), found["clean"]
    run, worlds = found["tampered"]
    failures = [*run, *(f for fs in worlds.values() for f in fs)]
    text = "\n".join(failures)
    # the model check: the line differs from what the model says
    assert "the model says" in text, text
    # the finalized invoice changed after the first close
    assert f"invoice {found['invoice']} changed after finalization" in text, text
    # Stripe no longer holds the ledger's amount
    assert any(f.startswith("stripe ") for f in failures), text
    # audit reconcile re-rates from raw events and sees the line differ
    assert "audit reconcile" in text, text
