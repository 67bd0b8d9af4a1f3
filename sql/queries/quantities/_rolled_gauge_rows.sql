-- Fragment, included as quantities/_rolled_gauge_rows: the rollup rows of
-- quantities/_rollup_gauge_rows a live read takes from the rollup (meters/quantities.py,
-- LiveCut): before the UTC day of the instant asked, and not of the live days.
{{> quantities/_rollup_gauge_rows}}
  AND hour < {rolled_end:DateTime64(3, 'UTC')}
  AND toDate(hour, 'UTC') NOT IN {live_days:Array(Date)}
