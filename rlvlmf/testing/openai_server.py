"""A real HTTP server on 127.0.0.1 speaking the Chat Completions wire format, for tests.

It runs ``http.server.ThreadingHTTPServer`` in a background thread (one thread per
connection, HTTP/1.1 keep-alive, a deep listen backlog), so it takes 64+ requests in flight
and is used by benchmarks too. Behaviour is scripted:

- ``delay_s``: every answer waits this long first (a fixed model latency);
- ``script``: a queue of ``FakeResponse`` (or callables) consumed one per request; when it
  is empty, ``responder(request)`` decides (default: a canned analysis for image requests
  and a label for text requests, as JSON when ``response_format`` asks for it);
- ``reject_response_format``: answer 400 to any request that carries ``response_format``;
- ``FakeResponse`` helpers: ``reply``, ``error`` (status, optional Retry-After), ``stall``
  (hold the connection past the client's timeout), ``drop`` (close mid-body),
  ``malformed`` (truncated JSON), ``not_json`` (a web page).

``ScriptedServer`` is the part every provider fake shares (recording, scripting, delays,
faults); ``FakeOpenAIServer`` adds the Chat Completions routes, and ``json_server`` the
route-by-suffix server the Gemini and Anthropic fakes use.

Every request is recorded (path, headers, parsed JSON body) for assertions::

    with FakeOpenAIServer(delay_s=0.2) as server:
        backend = OpenAIBackend("fake-vlm", base_url=server.url)
        ...
        assert server.count == 2
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+; rlvlmf supports 3.10

ANALYSIS_TEXT = (
    "1. Image 1 shows a robot arm next to a closed drawer.\n"
    "2. Image 2 shows the drawer pulled half open.\n"
    "3. Yes: the drawer is more open in Image 2, so Image 2 is closer to the goal."
)


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body (``None`` if it was not JSON)."""
    raw: bytes

    @property
    def has_images(self) -> bool:
        """Whether any message carries an ``image_url`` part."""
        return bool(self.image_urls())

    def image_urls(self) -> list[str]:
        """The ``image_url.url`` of every image part, in order."""
        urls = []
        for message in (self.body or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                urls += [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
        return urls

    def text(self) -> str:
        """All text of all messages, joined."""
        texts = []
        for message in (self.body or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts += [p.get("text", "") for p in content if p.get("type") == "text"]
        return "\n".join(texts)


@dataclass
class FakeResponse:
    """What the server does for one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float | None = None
    """Overrides the server's ``delay_s`` for this response."""
    action: str = "send"
    """``send``; ``stall`` (wait ``stall_s`` or until shutdown, then close); ``drop`` (send
    headers and half the body, then close the connection)."""
    stall_s: float = 30.0

    @classmethod
    def reply(
        cls,
        text: str | None,
        *,
        prompt_tokens: int = 100,
        completion_tokens: int = 10,
        finish_reason: str = "stop",
        refusal: str | None = None,
        model: str = "fake-vlm",
        logprobs: Any = None,
    ) -> FakeResponse:
        """A successful Chat Completions response with this message content."""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if refusal is not None:
            message["refusal"] = refusal
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return cls(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    @classmethod
    def error(
        cls, status: int, message: str = "error", *, retry_after: str | None = None, type_: str = "server_error"
    ) -> FakeResponse:
        """An OpenAI-style error body, with a ``Retry-After`` header when given."""
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
        return cls(status, json.dumps(body).encode(), headers)

    @classmethod
    def stall(cls, seconds: float = 30.0) -> FakeResponse:
        """Hold the request without answering (to trip the client's timeout)."""
        return cls(action="stall", stall_s=seconds)

    @classmethod
    def drop(cls) -> FakeResponse:
        """Promise a body, send half of it, close the connection."""
        return cls(200, FakeResponse.reply("1").body, {"Content-Type": "application/json"}, action="drop")

    @classmethod
    def malformed(cls) -> FakeResponse:
        """A 200 whose JSON is cut off."""
        return cls(200, b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "1"', {"Content-Type": "application/json"})

    @classmethod
    def not_json(cls) -> FakeResponse:
        """A 200 web page, as when the base URL points at a site instead of the API."""
        return cls(200, b"<html><body>Welcome</body></html>", {"Content-Type": "text/html"})


Responder = Callable[[RecordedRequest], FakeResponse]


LABEL_PROBS = {"1": 0.7, "0": 0.2, "-": 0.1}
"""Probabilities behind the default label answer's logprobs (the answer is the likeliest)."""


def default_responder(request: RecordedRequest, label: str = "1") -> FakeResponse:
    """Analysis text for requests with images, a label for text-only ones.

    The label comes as ``{"answer": ...}`` when ``response_format`` is sent, with token
    logprobs (from ``LABEL_PROBS``) when ``logprobs`` is requested.
    """
    if request.has_images:
        return FakeResponse.reply(ANALYSIS_TEXT, prompt_tokens=900, completion_tokens=60)
    body = request.body if isinstance(request.body, dict) else {}
    structured = "response_format" in body
    logprobs = label_logprobs(label, structured) if body.get("logprobs") else None
    text = json.dumps({"answer": label}) if structured else label
    return FakeResponse.reply(text, prompt_tokens=150, completion_tokens=5, logprobs=logprobs)


def label_logprobs(label: str, structured: bool) -> dict[str, Any]:
    """Chat Completions ``logprobs`` for a label reply, tokenised as a BPE model would.

    "-1" is two tokens ("-", "1"); the JSON form wraps the answer in its own tokens.
    """
    import math

    def token(text: str, logprob: float = 0.0, top: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": None, "top_logprobs": top or []}

    first = label[:1] if label.startswith("-") else label
    alternatives = [token(t, math.log(p)) for t, p in LABEL_PROBS.items()]
    answer = [token(first, math.log(LABEL_PROBS.get(first, 0.5)), alternatives)]
    if label.startswith("-"):
        answer.append(token(label[1:]))
    if structured:
        answer = [token('{"'), token("answer"), token('":"'), *answer, token('"}')]
    return {"content": answer}


class ScriptedServer:
    """A scripted JSON-over-HTTP server on 127.0.0.1: the core every provider fake builds on.

    It records every request, answers the API call's POSTs from ``script`` (then
    ``responder``) after ``delay_s``, and plays ``FakeResponse`` faults (stall, drop). A
    provider fake says which paths are its API call (``handles``), what other paths get
    (``not_found``), and may answer GETs (``get``).

    Args:
        responder: Decides the response when the script is empty.
        delay_s: Seconds every response waits before it is sent.
    """

    def __init__(self, *, responder: Responder, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.responder = responder
        self.script: deque[FakeResponse | Responder] = deque()
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    # --- what a provider fake decides ---------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a POST to ``path`` is the API call (others get ``not_found``)."""
        raise NotImplementedError

    def not_found(self, path: str) -> FakeResponse:
        """The answer to a POST to any other path."""
        raise NotImplementedError

    def get(self, path: str) -> FakeResponse | None:
        """The answer to a GET, or ``None`` for 501 (no GETs by default)."""
        return None

    def default_response(self, request: RecordedRequest) -> FakeResponse:
        """The answer when the script is empty."""
        return self.responder(request)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL of the server (``http://127.0.0.1:PORT``), without an API version."""
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # the bound socket's own address: text, not the bytes the stub allows
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- scripting and inspection -----------------------------------------------------------

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
            scripted = self.script.popleft() if self.script else None
        if scripted is None:
            return self.default_response(request)
        return scripted(request) if callable(scripted) else scripted


class FakeOpenAIServer(ScriptedServer):
    """A scriptable Chat Completions server on 127.0.0.1 (see the module docstring).

    Args:
        delay_s: Seconds every response waits before it is sent.
        responder: Decides the response when the script is empty.
        reject_response_format: Answer 400 to requests carrying ``response_format``.
    """

    def __init__(
        self, *, delay_s: float = 0.0, responder: Responder = default_responder, reject_response_format: bool = False
    ) -> None:
        super().__init__(responder=responder, delay_s=delay_s)
        self.reject_response_format = reject_response_format

    @property
    def url(self) -> str:
        """Base URL to give the backend (ends in ``/v1``)."""
        return f"{super().url}/v1"

    def handles(self, path: str) -> bool:
        return path.split("?")[0].rstrip("/") == "/v1/chat/completions"

    def not_found(self, path: str) -> FakeResponse:
        return FakeResponse.error(404, f"no route {path}", type_="invalid_request_error")

    def get(self, path: str) -> FakeResponse | None:
        if path.split("?")[0].rstrip("/") == "/v1/models":
            return FakeResponse(200, json.dumps({"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]}).encode())
        return FakeResponse.error(404, f"no route {path}")

    def default_response(self, request: RecordedRequest) -> FakeResponse:
        if self.reject_response_format and isinstance(request.body, dict) and "response_format" in request.body:
            return FakeResponse.error(
                400,
                "Unsupported parameter: 'response_format' of type json_schema is not supported with this model.",
                type_="invalid_request_error",
            )
        return self.responder(request)

    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded POSTs to ``/v1/chat/completions``."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 resets connections under bursts
    allow_reuse_address = True


def _make_handler(fake: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits
        # for the client's delayed ACK (~40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            response = fake.get(self.path)
            if response is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            else:
                self._send(response)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw)
            with fake._lock:
                fake._in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
            try:
                if not fake.handles(self.path):
                    with fake._lock:
                        fake.requests.append(request)
                    self._send(fake.not_found(self.path))
                    return
                response = fake._next_response(request)
                delay = fake.delay_s if response.delay_s is None else response.delay_s
                if delay > 0 and fake._closing.wait(delay):
                    return
                self._send(response)
            finally:
                with fake._lock:
                    fake._in_flight -= 1

        def _send(self, response: FakeResponse) -> None:
            if response.action == "stall":
                fake._closing.wait(response.stall_s)
                self.close_connection = True
                return
            try:
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                if response.action == "drop":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(response.body[: len(response.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout); fine
                self.close_connection = True

    return Handler


def serve(**kwargs: Any) -> Iterator[FakeOpenAIServer]:
    """Generator for a pytest fixture: ``yield from serve(delay_s=...)``."""
    with FakeOpenAIServer(**kwargs) as server:
        yield server
