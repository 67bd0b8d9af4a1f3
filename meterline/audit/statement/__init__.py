"""`meterline statement`: one customer's billing period(s) as a self-contained HTML page.

What a customer (or their account manager) asks about a usage invoice, on one page that
needs nothing else: the invoices of the period asked, line by line, with their totals;
the usage per local day and meter as a stacked bar chart per dimension group; the tier
table of each tiered price; in the internal view, the audit chain of every line.

- ``periods``: which periods `--period` means, in the subscription's timezone;
- ``model``: the typed statement, its lines and tier tables; ``chart``: the daily usage;
  ``text``: amounts, quantities and the rating's arithmetic as text;
- ``render``: the page from the model (Jinja2 templates in ``templates/``);
- ``gather``: reads the ledger and the warehouse into the model, and writes the page.
"""

from meterline.audit.statement.gather import statement_data, write_statement
from meterline.audit.statement.model import (
    DEFAULT_VIEW,
    VIEWS,
    Statement,
    StatementInvoice,
    StatementLine,
    TierTable,
    View,
    tier_table,
)
from meterline.audit.statement.periods import (
    LocalPeriod,
    PeriodQuery,
    StatementNotFound,
    not_found_message,
    parse_period,
)
from meterline.audit.statement.render import render
from meterline.audit.statement.text import minor_text, money_text, quantity_text, working

__all__ = [
    "DEFAULT_VIEW",
    "VIEWS",
    "LocalPeriod",
    "PeriodQuery",
    "Statement",
    "StatementInvoice",
    "StatementLine",
    "StatementNotFound",
    "TierTable",
    "View",
    "minor_text",
    "money_text",
    "not_found_message",
    "parse_period",
    "quantity_text",
    "render",
    "statement_data",
    "tier_table",
    "working",
    "write_statement",
]
