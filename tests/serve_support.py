"""Shared by test_serve.py and test_web.py: a live uvicorn server on loopback."""

from __future__ import annotations

import threading
import time

import uvicorn


class LiveServer:
    """``with LiveServer(app) as server: server.url`` runs uvicorn in a thread on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, app, start_timeout: float = 60.0):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout
        self.url = ""

    def __enter__(self) -> LiveServer:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
