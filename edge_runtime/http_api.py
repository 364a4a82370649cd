"""The service's HTTP side: /healthz, /readyz, /metrics (Prometheus), /status (JSON), /latest.jpg.

    >>> api = HttpApi("127.0.0.1:8080", view)   # view: an object with the methods of `ServiceView`
    >>> api.start(); ...; api.close()            # doctest: +SKIP

The server runs in its own threads and only reads what the service loop publishes.
"""
from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from edge_runtime.errors import EdgeError


class ServiceView(Protocol):
    registry: object  # prometheus_client.CollectorRegistry

    def healthz(self) -> tuple[bool, str]: ...
    def readyz(self) -> tuple[bool, str]: ...
    def status(self) -> dict: ...
    def latest_jpeg(self) -> bytes | None: ...


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT', '[::1]:PORT') -> (host, port); EdgeError for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise EdgeError(f"--http {text}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


class HttpApi:
    def __init__(self, address: str, view: ServiceView):
        host, port = parse_host_port(address)
        self.view = view
        try:
            self.server = ThreadingHTTPServer((host, port), _handler(view))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise EdgeError(f"--http {address}: port {port} is already in use (another edge-qwq?); "
                                "stop it or choose another port") from None
            raise EdgeError(f"--http {address}: cannot listen there ({e.strerror})") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)

    def start(self) -> "HttpApi":
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def _handler(view: ServiceView) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = self.path.split("?", 1)[0]
            try:
                if route in ("/healthz", "/readyz"):
                    ok, why = view.healthz() if route == "/healthz" else view.readyz()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", (why + "\n").encode())
                elif route == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(view.registry))
                elif route == "/status":
                    body = json.dumps(view.status(), indent=1, default=str).encode()
                    self._send(200, "application/json", body)
                elif route == "/latest.jpg":
                    jpg = view.latest_jpeg()
                    if jpg is None:
                        self._send(503, "text/plain; charset=utf-8", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpg)
                else:
                    self._send(404, "text/plain; charset=utf-8",
                               b"not found; try /healthz /readyz /metrics /status /latest.jpg\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args) -> None:  # no per-request lines in the journal
            pass

    return Handler
