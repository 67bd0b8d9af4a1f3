"""`meterline serve`: the HTTP service under uvicorn (docs/service.md).

The stores are opened and checked before the port is bound, so a missing store, a schema
that is not this code's or a ledger that cannot be reached is one error line with its
exit code (2, 4), as for every command; then uvicorn serves until SIGINT or SIGTERM, and
the events waiting in the buffer are stored before the process ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from meterline.cli.exits import Refused

# uvicorn's own loggers at warning, ours (a line per request, a line per stored batch)
# at info, on stderr.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "meterline": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface, as in a container).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65_535),
    help="Port to listen on (0: any free port, printed at start).",
)
def serve(host: str, port: int) -> None:
    """Run the HTTP service: events in; invoices, explanations out (docs/service.md).

    Every /v1 endpoint needs an API key (`meterline apikeys create`). While it runs, the
    service holds the warehouse: an embedded chDB folder is this process's alone, so
    other meterline commands on it wait until it stops."""
    from meterline.service.app import create_app, open_stores
    from meterline.settings import settings

    config = settings()
    stores = open_stores(config)
    try:
        app = create_app(config, stores=stores)
    except BaseException:
        stores.close()
        raise
    run_server(app, host, port)


def run_server(
    app: Any, host: str, port: int, *, on_ready: Callable[[int], None] | None = None
) -> None:
    """Serve `app` under uvicorn on `host`:`port` (0: any free port) until SIGINT or
    SIGTERM, logging as LOG_CONFIG says; `on_ready` is called with the port once it
    listens (`meterline demo --serve` prints the console's address then). Raises Refused
    (exit code 2) when it cannot listen: the address in use, or not this host's (uvicorn
    logs why first)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if on_ready is not None and self.started and self.servers:
                on_ready(int(self.servers[0].sockets[0].getsockname()[1]))

    server = Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=LOG_CONFIG,
            access_log=False,
            server_header=False,
        )
    )
    try:
        server.run()
    except SystemExit as exc:
        if exc.code:
            raise Refused(f"cannot serve on {host}:{port} (the line above says why)") from None
        raise
    if not server.started:
        raise Refused(f"cannot serve on {host}:{port} (the line above says why)")
