"""A real uvicorn server in a thread of the test process, for tests that reach into the app's adapters."""

import threading
import time

import uvicorn
from starlette.types import ASGIApp

from tests.support.service_process import LOOPBACK, free_port


class ThreadedServer:
    """Serves ``app`` with uvicorn on a free loopback port until stop()."""

    def __init__(self, app: ASGIApp) -> None:
        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
