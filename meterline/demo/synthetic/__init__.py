"""Synthetic Intercom-like usage data with known ground truth.

`generate(GeneratorConfig)` writes, into one folder:

- `customers.jsonl`: customers and their subscriptions (plan, currency, timezone, anchor day,
  start, discounts), one JSON object per line;
- `events/YYYY-MM-DD.parquet` (or `.jsonl`): one file per UTC day of the range, every column
  a string so that malformed values can be represented;
- `late/events-late.parquet` (or `.jsonl`): events of the range delivered after it;
- `truth.parquet`: per customer and meter, the count and value sum of the valid events;
- `manifest.json`: what was written and the exact counts an ingestion must reproduce.
  It is written last: a folder without it is an interrupted run.

Everything is a pure function of the configuration: the same arguments give byte-identical
files. Each random stream is seeded from (seed, stream, day), so the messiness options never
change which valid events exist, and days can be generated one at a time in bounded memory.

Where each part lives: `config` (the arguments, the file layout, the random streams),
`customers` (the population and the customers file), `events` (valid events: seat
readings and the resolution volume), `faults` (re-sends, conflicting copies, late and
malformed rows), `files` (formatting and writing), `generator` (one run, day by day),
`manifest` (the ground truth).
"""

from meterline.demo.synthetic.config import (
    EVENT_COLUMNS,
    FIN,
    MALFORMED_REASONS,
    METERS,
    SEATS,
    Format,
    GeneratorConfig,
    ProgressFn,
)
from meterline.demo.synthetic.customers import read_customers
from meterline.demo.synthetic.generator import generate
from meterline.demo.synthetic.manifest import FileCounts, Manifest, MeterTotal

__all__ = [
    "EVENT_COLUMNS",
    "FIN",
    "MALFORMED_REASONS",
    "METERS",
    "SEATS",
    "FileCounts",
    "Format",
    "GeneratorConfig",
    "Manifest",
    "MeterTotal",
    "ProgressFn",
    "generate",
    "read_customers",
]
