"""`python -m bench`: the side-by-side benchmark suite (bench/suite.py)."""

from bench.suite import main

raise SystemExit(main())
