"""A real uvicorn server for one test: started in a thread on a free port, stopped on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def live_server(app: Any, host: str = "127.0.0.1", **config: Any) -> Iterator[str]:
    """Serve ``app`` on ``host`` (port 0: the OS picks a free one); yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.02):
        if server.started:
            started.set()
        elif not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if config.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
