-- The current state of one ingest run ('' when it was never recorded).
SELECT argMax(state, version) FROM ingest_runs WHERE ingest_id = {ingest_id:String}
