"""A tiny fault-injecting HTTP proxy in front of the moto server, on 127.0.0.1.

Point ``AWS_ENDPOINT_URL`` at :attr:`FaultProxy.endpoint`: every request is forwarded to
the upstream server unchanged (path-style S3, the signature is not re-checked by moto),
except those for which ``fault(method, path, n)`` — ``n`` counting the requests seen so far
for that (method, path), from 0 — returns an action:

- ``"500"``: answer ``500 InternalError`` (S3's "We encountered an internal error");
- ``"503"``: answer ``503 SlowDown`` as S3 does when throttling;
- ``"drop"``: close the connection without an answer;
- ``"short"``: forward the request, send the real status and headers with the real
  ``Content-Length``, then only half of the body, and close the connection (a body cut
  short, as a reset mid-transfer leaves it);
- ``"409"``: answer ``409 ConditionalRequestConflict`` (a concurrent conditional write).

:data:`TRANSIENT` lists the four faults S3 really produces on reads and a client must retry.

Threaded, so hundreds of requests can be in flight, as the fetchers keep them.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Fault = Callable[[str, str, int], "str | None"]

#: The read faults S3 produces that a client must retry (see PITFALLS.md, "S3").
TRANSIENT = ("500", "503", "drop", "short")

_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "409": (
        409,
        "Conflict",
        "ConditionalRequestConflict",
        "A conflicting conditional operation is currently in progress against this resource.",
    ),
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


class FaultProxy:
    """The proxy: ``seen`` counts requests per (method, path), ``injected`` faults per
    action, ``requests`` lists every (method, target) in arrival order."""

    def __init__(self, upstream: str, fault: Fault) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault = fault
        self.seen: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path with query), in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def decide(self, method: str, target: str) -> str | None:
        path = target.split("?", 1)[0]
        with self._lock:
            self.requests.append((method, target))
            n = self.seen[(method, path)]
            self.seen[(method, path)] += 1
        action = self.fault(method, path, n)
        if action is not None:
            with self._lock:
                self.injected[action] += 1
        return action

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fault_proxy(upstream: str, fault: Fault) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, fault).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _error(self, action: str) -> None:
            status, reason, code, message = _ERRORS[action]
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<Resource>{self.path}</Resource><RequestId>fault</RequestId></Error>"
            ).encode()
            self.send_response(status, reason)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            body = self._body()
            action = proxy.decide(self.command, self.path)
            if action == "drop":
                self.close_connection = True
                with suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action is not None and action != "short":
                self._error(action)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    lower = name.lower()
                    body_length = lower == "content-length" and self.command != "HEAD"
                    if lower in _HOP_BY_HOP or body_length:
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if action == "short" and data:
                    # The promised length, half the bytes, then the connection goes.
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    with suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)
            finally:
                upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler
