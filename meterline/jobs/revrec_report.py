"""What `meterline revrec` shows and writes (docs/revrec.md): a month as JSON data, and the
waterfall as CSV and as a PNG chart. Amounts leave as text in major units with the
currency's decimals (and as integer minor units in JSON), never floats; the chart's
bar heights are the one place numbers become floats, for drawing only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from billing.money import exponent, minor_text
from billing.revrec import Balance, Waterfall
from billing.revrec.waterfall import UNBILLED
from meterline.jobs.revrec import RevrecPeriod

__all__ = [
    "ChartUnavailable",
    "balance_doc",
    "billing_colours",
    "revrec_doc",
    "waterfall_csv",
    "waterfall_doc",
    "waterfall_png",
]


class ChartUnavailable(RuntimeError):
    """The PNG chart cannot be drawn here: matplotlib is not installed."""


def balance_doc(b: Balance) -> dict[str, Any]:
    """One balance as JSON data: amounts in major units as text, the identity's gap."""
    cur = b.currency
    return {
        "customer": b.customer,
        "currency": cur,
        "day": b.day.isoformat(),
        "billed": minor_text(b.billed, cur),
        "recognized": minor_text(b.recognized, cur),
        "deferred": minor_text(b.deferred, cur),
        "unbilled": minor_text(b.unbilled, cur),
        "deferred_commitments": minor_text(b.deferred_commitments, cur),
        "balanced": b.gap == 0,
    }


def revrec_doc(found: RevrecPeriod, *, detail: bool = False) -> dict[str, Any]:
    """A month as JSON data: per currency its opening and closing balances, what it
    recognized (by category and product line) and billed; each customer's closing
    balances; the identity's failures and the problems. With `detail` (one customer),
    also the balances of every day and every schedule row."""
    doc: dict[str, Any] = {
        "period": found.period,
        "customer": found.customer,
        "first_day": found.first.isoformat(),
        "last_day": found.last.isoformat(),
        "ok": not found.failures and not found.problems,
        "currencies": [
            {
                "currency": s.currency,
                "opening": balance_doc(s.opening),
                "closing": balance_doc(s.closing),
                "recognized": {k: minor_text(v, s.currency) for k, v in s.recognized.items()},
                "recognized_by_product": {
                    k: minor_text(v, s.currency) for k, v in s.by_product.items()
                },
                "invoices_billed": s.invoices_billed,
                "invoices_billed_amount": minor_text(s.invoices_billed_minor, s.currency),
                "commitments_billed_amount": minor_text(s.commitments_billed_minor, s.currency),
            }
            for s in found.summaries()
        ],
        "customers": [balance_doc(b) for b in found.closing()],
        "failures": [balance_doc(b) for b in found.failures],
        "problems": list(found.problems),
    }
    if detail:
        doc["days"] = [balance_doc(b) for b in found.balances]
        doc["rows"] = [
            {
                "key": r.key,
                "customer": r.customer,
                "currency": r.currency,
                "day": r.day.isoformat(),
                "amount": minor_text(r.amount_minor, r.currency),
                "amount_minor": r.amount_minor,
                "category": r.category,
                "rule": r.rule,
                "product": r.product,
                "line_id": r.line_id,
                "invoice_id": r.invoice_id,
                "grant_id": r.grant_id,
                "billed_on": r.billed_on.isoformat() if r.billed_on else None,
            }
            for r in found.rows
        ]
    return doc


def waterfall_doc(found: Waterfall) -> dict[str, Any]:
    """The waterfall as JSON data: per currency, a row per billing month (then
    "unbilled") with the amount recognized in each month, and the column totals."""
    return {
        "months": found.months,
        "currencies": [
            {
                "currency": cur,
                "rows": [
                    {
                        "billed": billed,
                        "recognized": {
                            m: minor_text(found.cells[cur].get((billed, m), 0), cur)
                            for m in found.months
                        },
                    }
                    for billed in found.billing_months(cur)
                ],
                "totals": {m: minor_text(found.recognized(cur, m), cur) for m in found.months},
            }
            for cur in found.cells
        ],
    }


def waterfall_csv(found: Waterfall) -> str:
    """The waterfall as CSV: `currency`, `billed` (the billing month, or "unbilled"),
    one column per month of recognition, `total`; a `total` row per currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["currency", "billed", *found.months, "total"])
    for cur, cells in found.cells.items():
        for billed in found.billing_months(cur):
            amounts = [cells.get((billed, m), 0) for m in found.months]
            writer.writerow(
                [cur, billed, *(minor_text(a, cur) for a in amounts), minor_text(sum(amounts), cur)]
            )
        totals = [found.recognized(cur, m) for m in found.months]
        writer.writerow(
            [cur, "total", *(minor_text(a, cur) for a in totals), minor_text(sum(totals), cur)]
        )
    return out.getvalue()


#: The bars' colours: matplotlib's tab10 (its default cycle), then tab20's lighter
#: shades, both without their grey, which is "unbilled"'s.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#dbdb8d", "#9edae5",
)  # fmt: skip
UNBILLED_COLOUR = "#999999"


def billing_colours(found: Waterfall) -> dict[str, str]:
    """The chart's colour of each billing month (and "unbilled"), the same in every
    currency's panel: a month's bars are told apart by colour alone. After 18 months the
    colours repeat."""
    months = {b for cur in found.cells for b in found.billing_months(cur)}
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(months - {UNBILLED}))}
    colours[UNBILLED] = UNBILLED_COLOUR
    return colours


def _grouped(value: float, _position: object) -> str:
    """An axis tick in major units with grouped digits (30,000; 2.5)."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


def waterfall_png(found: Waterfall, path: Path) -> None:
    """The waterfall as a PNG chart: per currency, a bar per month of recognition,
    stacked by month of billing. Raises ChartUnavailable when matplotlib is not
    installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartUnavailable(
            "the PNG chart needs matplotlib (pip install matplotlib, as requirements.lock"
            " pins it); --csv writes the same numbers"
        ) from None
    from matplotlib.ticker import FuncFormatter

    currencies = list(found.cells) or ["-"]
    colours = billing_colours(found)
    fig, axes = plt.subplots(len(currencies), 1, figsize=(10, 4 * len(currencies)), squeeze=False)
    for ax, cur in zip(axes[:, 0], currencies, strict=True):
        cells = found.cells.get(cur, {})
        scale = 10 ** exponent(cur) if cur != "-" else 1
        bottoms = [0.0] * len(found.months)
        for billed in found.billing_months(cur) if cur != "-" else []:
            # Major units for drawing only; the amounts themselves stay exact elsewhere.
            heights = [cells.get((billed, m), 0) / scale for m in found.months]
            label = billed if billed == UNBILLED else f"billed {billed}"
            ax.bar(found.months, heights, bottom=bottoms, label=label, color=colours[billed])
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        if cur == "-":  # nothing recognized: the months, empty, and saying so
            ax.bar(found.months, [0] * len(found.months))
            span = f"{found.months[0]}..{found.months[-1]}" if found.months else ""
            ax.set_title(f"Revenue recognized by month: nothing in {span}")
            ax.set_ylim(0, 1)
            ax.set_yticks([])
        else:
            ax.set_title(f"Revenue recognized by month, by month billed ({cur})")
            ax.set_ylabel(f"{cur} recognized")
        ax.set_xlabel("month recognized")
        ax.yaxis.set_major_formatter(FuncFormatter(_grouped))
        ax.tick_params(axis="x", labelrotation=45)
        if cells:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
