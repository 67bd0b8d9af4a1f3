"""One contender in a process of its own (started by bench/suite.py):

    python -m bench.child '{"contender": NAME, "file": PATH, "work": FOLDER}'

Imports the contender's module, runs it, and prints one line `RESULT_PREFIX {json}`:
its Outcome (bench/contenders/common.py) and this process's own peak resident memory
(`peak_rss_mb`, see peak_rss_mb()).
An exception ends the process with its traceback on stderr and exit code 1. Once the
result line is out, the process ends at once (os._exit), without the interpreter's
teardown: a native library's threads torn down at exit have aborted a finished contender
("terminate called without an active exception", exit -6) after its result was printed.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
from pathlib import Path

from bench.contenders import ALL

RESULT_PREFIX = "BENCH-RESULT"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM, the high-water mark of its own
    address space. Not ru_maxrss: Linux carries the parent's peak into a child's across
    fork and exec, so a child of a parent that held 600 MB would report at least 600 MB
    (ru_maxrss is the fallback where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    contender = ALL[request["contender"]]
    module = importlib.import_module(contender.module)
    work = Path(request["work"])
    work.mkdir(parents=True, exist_ok=True)
    options = {**contender.options, **request.get("options", {})}
    outcome = module.run(Path(request["file"]), work, options)
    doc = outcome.to_dict()
    doc["peak_rss_mb"] = peak_rss_mb()
    print(f"{RESULT_PREFIX} {json.dumps(doc)}", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
