"""pandas, the way a Python team would write it: read the file, drop duplicate event ids
(the first copy in file order stays), parse the timestamps (UTC) and the values (as
Arrow decimal128(38, 9), so sums are exact), then group by customer, meter, properties
and UTC hour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from bench.contenders.common import Outcome, totals_from

KEYS = ["customer_id", "meter", "properties", "hour"]


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    out = Outcome()
    with out.phase("read"):
        df = pd.read_parquet(file)
    out.rows = len(df)
    with out.phase("dedup"):
        df = df.drop_duplicates("event_id", keep="first")
    with out.phase("parse"):
        df["timestamp"] = pd.to_datetime(df["timestamp"], format="%Y-%m-%dT%H:%M:%S.%f%z", utc=True)
        df["value"] = df["value"].astype(pd.ArrowDtype(pa.decimal128(38, 9)))
        df["hour"] = df["timestamp"].dt.floor("h")
    with out.phase("group by"):
        rollup = df.groupby(KEYS, sort=False, observed=True).agg(
            events=("value", "size"), value_sum=("value", "sum"), value_max=("value", "max")
        ).reset_index()
    out.accepted = len(df)
    out.groups = len(rollup)
    by_meter = rollup.groupby("meter", observed=True).agg(events=("events", "sum"), value_sum=("value_sum", "sum"))
    out.totals = totals_from({str(m): (int(r.events), r.value_sum) for m, r in by_meter.iterrows()})
    return out
