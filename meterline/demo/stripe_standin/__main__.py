"""python -m meterline.demo.stripe_standin [--port 12111]: serve until interrupted."""

from __future__ import annotations

import argparse
import threading

from .server import API_VERSION, StripeStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterline.demo.stripe_standin",
        description="A local stand-in for the part of Stripe's API meterline uses.",
    )
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    try:
        standin = StripeStandIn(args.port, verbose=not args.quiet).start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}")
        return 4
    print(f"Stripe stand-in (API {API_VERSION}) at {standin.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
