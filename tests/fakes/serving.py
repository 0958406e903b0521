"""What every local fake server shares: the threaded HTTP server on 127.0.0.1, starting it in a
background thread, a context manager for the pytest fixtures, and writing a response.

A fake module subclasses `FakeServer` for its own needs (where the fake keeps its address,
socket options), passes its request handler, and keeps its vendor behaviour to itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeServer(ThreadingHTTPServer):
    """Serves `fake` with `handler_class` on 127.0.0.1:`port` (0: a free port) and tells the fake
    its address: `http://127.0.0.1:PORT` + `url_path`, in its attribute `url_attribute`."""

    daemon_threads = True
    url_attribute = "url"
    url_path = ""
    thread_name: str | None = None  # None: threading's default name
    poll_interval = 0.5  # serve_forever's default

    def __init__(
        self, fake: Any, handler_class: type[BaseHTTPRequestHandler], port: int = 0
    ) -> None:
        super().__init__(("127.0.0.1", port), handler_class)
        self.fake = fake
        address = f"http://127.0.0.1:{self.server_address[1]}{self.url_path}"
        setattr(fake, self.url_attribute, address)


def start(
    fake: Any,
    handler_class: type[BaseHTTPRequestHandler],
    port: int = 0,
    *,
    server_class: type[FakeServer] = FakeServer,
) -> tuple[Any, FakeServer]:
    """Serve `fake` in a daemon thread; `server.shutdown()` stops it."""
    server = server_class(fake, handler_class, port)
    threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": server.poll_interval},
        name=server.thread_name,
        daemon=True,
    ).start()
    return fake, server


@contextmanager
def serving(
    fake: Any,
    handler_class: type[BaseHTTPRequestHandler],
    *,
    server_class: type[FakeServer] = FakeServer,
) -> Iterator[Any]:
    """The fake, served on a free port for the duration of the block (a fixture's body)."""
    fake, server = start(fake, handler_class, server_class=server_class)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """Write a whole response: status, Content-Type, Content-Length, `headers` in order, then
    `data`. A client that already hung up (its timeout) gets nothing, quietly."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


@dataclass(frozen=True)
class Seen:
    """One request as a JSON API fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float


class JsonApiHandler(BaseHTTPRequestHandler):
    """Parses a GET or POST (query, lower-cased headers, JSON body), records it in
    `fake.requests`, and writes what `fake.answer(method, path, query, headers, body)` returns:
    `(status, extra headers, payload)`, a text payload as plain text, anything else as JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake.requests.append(Seen(method, parts.path, query, body, time.monotonic()))
        status, extra, payload = fake.answer(method, parts.path, query, headers, body)
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        send_json(self, status, data, extra, content_type)
