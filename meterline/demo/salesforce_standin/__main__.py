"""python -m meterline.demo.salesforce_standin [--port 8443] [--example]: serve a CPQ org
(empty, or with ``--example``'s records) with one session until interrupted (the session
id and the certificate's path are printed)."""

from __future__ import annotations

import argparse

from meterline.demo.standin_main import serve_until_interrupted

from . import SalesforceStandIn, define_cpq, example_org


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterline.demo.salesforce_standin",
        description="A local stand-in for the part of Salesforce meterline's sync reads.",
    )
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--example",
        action="store_true",
        help="a few accounts and CPQ subscriptions that docs/examples/salesforce-cpq.yaml syncs",
    )
    args = parser.parse_args(argv)

    def announce(standin: SalesforceStandIn) -> None:
        define_cpq(standin.store)
        if args.example:
            example_org(standin.store)
        for name, value in standin.session_env().items():
            print(f"{name}={value}", flush=True)

    return serve_until_interrupted(
        lambda: SalesforceStandIn(args.port, verbose=not args.quiet).start(), args.port, announce
    )


if __name__ == "__main__":
    raise SystemExit(main())
