"""An S3 API server on loopback for the tests: moto's S3 backend, as s3fs's own tests use it, behind a WSGI layer that
can answer 503 Slow Down to some requests, and a restart that drops the listening socket for a while. Importing this
module needs nothing beyond the standard library (conftest.py sets the environment from it for every Ray test).

Clients find it through the standard variables (`endpoint_environment`): AWS_ENDPOINT_URL_S3 and fake credentials.
moto keeps the buckets in this process's memory, so they survive a restart as a real store's objects do.
"""

from __future__ import annotations

import threading
import time

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate (injected by the test).</Message></Error>"
)


def endpoint_environment(port: int) -> dict[str, str]:
    """What botocore, s3fs and pyarrow read to reach the server: an endpoint, fake credentials, a region, and no
    instance-metadata probing."""
    return {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class Faults:
    """Which requests get a 503: every `every`-th one while on. Counts what it did, for the test to check."""

    def __init__(self) -> None:
        self.every = 0
        self.requests = 0
        self.injected = 0
        self._lock = threading.Lock()

    def should_fail(self) -> bool:
        with self._lock:
            self.requests += 1
            if self.every and self.requests % self.every == 0:
                self.injected += 1
                return True
            return False


class S3Server:
    """moto's S3 on 127.0.0.1:`port`, in a thread; `faults.every = n` answers every n-th request with 503."""

    def __init__(self, port: int):
        from moto.server import DomainDispatcherApplication, create_backend_app

        self.port = port
        self.faults = Faults()
        self.restarts = 0
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self, environ, start_response):
        if self.faults.should_fail():
            headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(SLOW_DOWN)))]
            start_response("503 Slow Down", headers)
            return [SLOW_DOWN]
        return self._moto(environ, start_response)

    def start(self) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # free the port: clients now get "connection refused"
            self._thread.join()
            self._server = None

    def restart(self, down_seconds: float) -> None:
        """Go away for `down_seconds`, then come back on the same port with the same buckets."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1
