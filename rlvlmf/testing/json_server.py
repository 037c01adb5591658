"""A scriptable JSON-over-HTTP server on 127.0.0.1 for any provider's wire format.

The provider fakes (``gemini_server``, ``anthropic_server``) are this server plus their own
response builders and default responder. It is ``openai_server.ScriptedServer`` routed by
path suffix, so it shares the OpenAI fake's recording, delays and ``FakeResponse`` faults
(status, body, headers, Retry-After, stall, drop, malformed JSON), and the same fault
scripts work against every provider::

    with ScriptedJSONServer(route=":generateContent", responder=gemini_responder) as server:
        server.push(FakeResponse.error(429, retry_after="2"))
        ...
        assert server.count == 2
"""

from __future__ import annotations

import json

from rlvlmf.testing.openai_server import FakeResponse, Responder, ScriptedServer


class ScriptedJSONServer(ScriptedServer):
    """Answers POSTs whose path ends with ``route``; 404 elsewhere.

    Args:
        route: Path suffix of the API call (``"/v1/messages"``, ``":generateContent"``).
        responder: Decides the response when the script is empty.
        delay_s: Seconds every response waits before it is sent.
    """

    def __init__(self, *, route: str, responder: Responder, delay_s: float = 0.0) -> None:
        super().__init__(responder=responder, delay_s=delay_s)
        self.route = route

    def handles(self, path: str) -> bool:
        return path.split("?", 1)[0].endswith(self.route)

    def not_found(self, path: str) -> FakeResponse:
        return FakeResponse(404, json.dumps({"error": {"message": f"no route {path}"}}).encode())
