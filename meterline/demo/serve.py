"""`meterline demo --serve`: after the demo, the HTTP service and its support console on
the demo's own stores, until Ctrl-C.

An API key with scopes read and support is created in the demo's ledger for the run (the
console's sign-in takes its token; support may acknowledge reconcile findings), then
`meterline serve`'s app (meterline.service) runs under uvicorn on a loopback port. The
console's address and the token are printed once the port is listening. The service
holds the demo's embedded warehouse while it runs, as `meterline serve` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from meterline.demo.run import DemoConfig, demo_settings

#: The scopes of the key the demo prints: the console's pages, and its acknowledge form.
DEMO_SCOPES = ("read", "support")
DEMO_KEY_NAME = "demo console"


@dataclass(frozen=True)
class DemoService:
    """What the demo prints once the service listens: its base URL and the token of the
    key created for it (scopes DEMO_SCOPES)."""

    base_url: str
    token: str

    @property
    def console_url(self) -> str:
        return f"{self.base_url}/console"


def announce(service: DemoService, console: Console) -> None:
    """The lines a person needs to open the console (what `--serve` prints)."""
    console.print(
        f"the support console: {service.console_url} (the service: {service.base_url},"
        f" its API at {service.base_url}/docs)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"sign in with this API key (scopes {', '.join(DEMO_SCOPES)}, created for the demo's"
        f" ledger): {service.token}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print("Ctrl-C stops the service", markup=False, highlight=False)


def serve_demo(
    config: DemoConfig,
    console: Console,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[DemoService], None] | None = None,
) -> None:
    """Serve the demo's stores (those of `config.folder`, which `run_demo` built) on
    `host`:`port` (0: any free port) until SIGINT or SIGTERM: an API key with DEMO_SCOPES
    is created in its ledger, then `announce` prints the console's address and the token
    once the port listens (and `on_ready` is called with them). The stores are opened and
    checked before the port is bound, as by `meterline serve`: a demo folder that was not
    built is one error line (exit code 2).

    Raises meterline.cli.exits.Refused when the port cannot be bound (exit code 2)."""
    from meterline.cli.serve import run_server
    from meterline.jobs.apikeys import create_api_key
    from meterline.service.app import create_app, open_stores

    settings = demo_settings(config)
    stores = open_stores(settings)
    try:
        token = create_api_key(DEMO_KEY_NAME, DEMO_SCOPES, config=settings).token
        app = create_app(settings, stores=stores)
    except BaseException:
        stores.close()
        raise

    def ready(bound: int) -> None:
        service = DemoService(f"http://{host}:{bound}", token)
        announce(service, console)
        if on_ready is not None:
            on_ready(service)

    run_server(app, host, port, on_ready=ready)
