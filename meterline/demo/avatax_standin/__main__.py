"""python -m meterline.demo.avatax_standin [--port 12112]: serve until interrupted, with
a small US rate table (New York State 4% + New York City 4.5%; Ireland's VAT 23%)."""

from __future__ import annotations

import argparse
from decimal import Decimal

from meterline.demo.standin_main import serve_until_interrupted

from .server import AvaTaxStandIn
from .store import Jurisdiction, RateTable

DEMO_RATES = RateTable(
    places={
        ("US", "NY"): (
            Jurisdiction("NEW YORK", "STA", Decimal("0.04"), "NY STATE TAX"),
            Jurisdiction("NEW YORK CITY", "CIT", Decimal("0.045"), "NY CITY TAX"),
        ),
        ("IE", None): (Jurisdiction("IRELAND", "CNT", Decimal("0.23"), "IE VAT", "VAT"),),
    }
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterline.demo.avatax_standin",
        description="A local stand-in for the part of AvaTax REST v2 meterline uses.",
    )
    parser.add_argument("--port", type=int, default=12112, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    return serve_until_interrupted(
        lambda: AvaTaxStandIn(args.port, rates=DEMO_RATES, verbose=not args.quiet).start(),
        args.port,
        lambda standin: print(
            f"AvaTax stand-in at {standin.base_url} (account 2000000001, license key"
            " standin-license-key, company DEFAULT)",
            flush=True,
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
