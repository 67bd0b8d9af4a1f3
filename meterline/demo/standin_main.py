"""What each stand-in's ``python -m`` entry point shares: start the server on its port, say
where it is, serve until Ctrl-C, stop. Exit code 4 (README) when the port cannot be taken."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


def serve_until_interrupted(
    start: Callable[[], S], port: int, announce: Callable[[S], None]
) -> int:
    """Run `start()` (a stand-in listening on 127.0.0.1:`port`), `announce` it, then block
    until KeyboardInterrupt and stop it. Returns the exit code: 0, or 4 when listening failed."""
    try:
        standin = start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{port}: {exc}")
        return 4
    try:
        announce(standin)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0
