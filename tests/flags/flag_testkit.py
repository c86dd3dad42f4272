"""Helpers of the flag tests: a local configuration server (127.0.0.1 only, no internet)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def document(**flags: Any) -> str:
    return json.dumps({"schema": 1, "flags": flags}, indent=2)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class ConfigServer:
    """Serves ``body`` at any path with an ETag and Last-Modified; answers 304 to a request
    that already has them. ``delay`` makes it answer late; ``requests`` counts what came."""

    body: str | bytes = field(default_factory=document)
    delay: float = 0.0
    fail_with: int | None = None  # answer every request with this HTTP error status
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    last_modified: str = field(default_factory=lambda: formatdate(time.time(), usegmt=True))

    @property
    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else self.body.encode()

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.payload).hexdigest()[:16] + '"'

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/flags.json"

    def publish(self, body: str | bytes) -> None:
        self.body = body
        # a later second, as a real server would say for a newer file
        self.last_modified = formatdate(time.time() + len(self.requests) + 1, usegmt=True)

    def start(self) -> None:
        config = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if config.delay:
                    time.sleep(config.delay)
                headers = {k: v for k, v in self.headers.items()}
                inm = self.headers.get("If-None-Match")
                ims = self.headers.get("If-Modified-Since")
                not_modified = (
                    (inm == config.etag)
                    if inm is not None
                    else (ims is not None and ims == config.last_modified)
                )
                status = 304 if not_modified else 200
                if config.fail_with is not None:
                    status = config.fail_with
                config.requests.append(Seen(self.path, headers, status))
                try:
                    if status >= 400:
                        self.send_error(status)
                        return
                    self.send_response(status)
                    self.send_header("ETag", config.etag)
                    self.send_header("Last-Modified", config.last_modified)
                    if status == 200:
                        payload = config.payload
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    else:
                        self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
