"""`meterline audit explain`: why a line was charged what it was, from the invoice down to
the raw events, re-rated now (DESIGN.md invariant 6).

- ``report``: the typed explanation (what the CLI, --json and the statement show);
- ``chain``: the pure explanation of one line from its facts;
- ``gather``: reads the facts, each shared one once when many lines are explained.
"""

from meterline.audit.explain.gather import LineExplainer, explain_line, explain_lines
from meterline.audit.explain.report import Explanation

__all__ = ["Explanation", "LineExplainer", "explain_line", "explain_lines"]
