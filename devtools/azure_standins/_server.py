"""A small threaded HTTP(S) server on 127.0.0.1 that the stand-ins share."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .certificate import LocalCertificate

_JOIN_SECONDS = 10.0


class JsonHandler(BaseHTTPRequestHandler):
    """Answers one request per connection, so stopping the server leaves no idle
    keep-alive connection (and no thread) behind."""

    protocol_version = "HTTP/1.1"
    # An unresponsive client cannot pin a handler thread for long.
    timeout = 10

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry tokens' targets and test noise; the stand-ins keep their own stats.
        pass


class LocalServer:
    """Starts `handler_class` on 127.0.0.1 with an ephemeral port, over TLS when `tls`."""

    def __init__(self, handler_class: type[JsonHandler], *, owner: object, tls: bool) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self._server.daemon_threads = True
        self._server.owner = owner  # type: ignore[attr-defined]  # how handlers reach their stand-in
        self.certificate: LocalCertificate | None = None
        if tls:
            self.certificate = LocalCertificate()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate.certificate_path, self.certificate.key_path)
            # The handshake then happens in the handler's thread, not in the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(owner).__name__}-{self.port}", daemon=True)
        self._thread.start()
        self._running = True

    @property
    def base_url(self) -> str:
        scheme = "https" if self.certificate is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop listening, as an outage would: later connections are refused.

        The certificate stays, so a client trusting it fails on the connection, as it
        would against a real vault that is down. Safe to call twice."""
        if not self._running:
            return
        self._running = False
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_JOIN_SECONDS)

    def close(self) -> None:
        """Stop, and delete the certificate files (clients must not connect after this)."""
        self.stop()
        if self.certificate is not None:
            self.certificate.close()
