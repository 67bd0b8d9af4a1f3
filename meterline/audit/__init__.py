"""The audit (DESIGN.md invariant 6): every posted amount re-derived from raw events.

One package per use case: ``explain`` (a line down to its raw events), ``reconcile``
(every link of a month's chain), ``rerate`` (what re-rating a month changes, and posting
it), ``statement`` (the customer's HTML page). Each keeps its pure logic (typed facts in,
typed report out) apart from the one module that reads the ledger and the warehouse.
Shared: ``values`` and ``facts`` (the types), ``compare`` (billed vs re-rated),
``levels`` (gauges), ``findings`` (ids, severities, acknowledgements), ``rerating``,
``ledger`` and ``warehouse`` (the reads). docs/audit.md says where each rule lives.
"""
