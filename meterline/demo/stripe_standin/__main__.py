"""python -m meterline.demo.stripe_standin [--port 12111]: serve until interrupted."""

from __future__ import annotations

import argparse

from meterline.demo.standin_main import serve_until_interrupted

from .server import API_VERSION, StripeStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterline.demo.stripe_standin",
        description="A local stand-in for the part of Stripe's API meterline uses.",
    )
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    return serve_until_interrupted(
        lambda: StripeStandIn(args.port, verbose=not args.quiet).start(),
        args.port,
        lambda standin: print(
            f"Stripe stand-in (API {API_VERSION}) at {standin.base_url}", flush=True
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
