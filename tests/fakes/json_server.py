"""A scriptable JSON-over-HTTP server on 127.0.0.1 for any provider's wire format.

The provider fakes (``gemini_server``, ``anthropic_server``) are this server plus their own
response builders and default responder. It reuses ``FakeResponse`` and ``RecordedRequest``
from ``openai_server`` (status, body, headers, Retry-After, stall, drop, malformed JSON), so
the same fault scripts work against every provider::

    with ScriptedJSONServer(route=":generateContent", responder=gemini_responder) as server:
        server.push(FakeResponse.error(429, retry_after="2"))
        ...
        assert server.count == 2
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.openai_server import FakeResponse, RecordedRequest, _Server

Responder = Callable[[RecordedRequest], FakeResponse]


class ScriptedJSONServer:
    """Answers POSTs whose path ends with ``route``; 404 elsewhere.

    Args:
        route: Path suffix of the API call (``"/v1/messages"``, ``":generateContent"``).
        responder: Decides the response when the script is empty.
        delay_s: Seconds every response waits before it is sent.
    """

    def __init__(self, *, route: str, responder: Responder, delay_s: float = 0.0) -> None:
        self.route = route
        self.responder = responder
        self.delay_s = delay_s
        self.script: deque[FakeResponse | Responder] = deque()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the server (``http://127.0.0.1:PORT``), without an API version."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ScriptedJSONServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedJSONServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, *responses: FakeResponse | Responder) -> None:
        """Queue responses for the next requests, in order."""
        with self._lock:
            self.script.extend(responses)

    @property
    def count(self) -> int:
        """Requests received so far (all paths)."""
        with self._lock:
            return len(self.requests)

    def _next_response(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            self.requests.append(request)
            scripted = self.script.popleft() if self.script else self.responder
        return scripted(request) if callable(scripted) else scripted


def _make_handler(fake: ScriptedJSONServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw)
            if not self.path.split("?", 1)[0].endswith(fake.route):
                with fake._lock:
                    fake.requests.append(request)
                self._send(FakeResponse(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode()))
                return
            response = fake._next_response(request)
            delay = fake.delay_s if response.delay_s is None else response.delay_s
            if delay > 0 and fake._closing.wait(delay):
                return
            self._send(response)

        def _send(self, response: FakeResponse) -> None:
            if response.action == "stall":
                fake._closing.wait(response.stall_s)
                self.close_connection = True
                return
            try:
                self.send_response(response.status)
                for key, value in {"Content-Type": "application/json", **response.headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                if response.action == "drop":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(response.body[: len(response.body) // 2])
                    self.close_connection = True
                    return
                self.end_headers()
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler
