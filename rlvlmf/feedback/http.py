"""Shared HTTP plumbing for API backends: endpoint and key set-up, one error policy,
Retry-After, key redaction.

Every API backend (OpenAI-compatible, Gemini, Anthropic) posts JSON through ``post_json``,
so failures mean the same thing everywhere:

- timeouts, connection errors, a body cut off mid-way, HTTP 408/409/429/5xx, and a 200
  whose JSON is truncated -> ``TransientBackendError`` (the labeler retries with backoff,
  honouring ``retry_after`` from ``Retry-After`` / ``retry-after-ms``);
- any other 4xx, a bad URL, and a 200 whose body is not JSON at all (usually a base URL
  pointing at a web page rather than the API) -> ``BackendError`` with the provider's own
  message.

API keys come only from environment variables, read once when a backend is built
(``ApiEndpoint.read_key``), and never appear in an error: messages are passed through
``redact``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.base import BackendError, TransientBackendError

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
"""Non-5xx statuses worth retrying (5xx always are). 409 is OpenAI's 'lock timeout'."""

_MAX_MESSAGE = 500
# Key-shaped tokens some providers echo back, partly masked ("sk-proj-****abcd", "AIza...").
_KEY_LIKE = re.compile(r"\b(?:sk-[A-Za-z0-9_\-*]{6,}|AIza[A-Za-z0-9_\-]{20,})")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ApiKey:
    """An API key read from the environment, and where it is looked for.

    Attributes:
        value: The key, or ``None`` when none of the variables is set (kept out of ``repr``).
        env_hint: The variable name(s) to set, for messages (``"GEMINI_API_KEY or GOOGLE_API_KEY"``).
    """

    value: str | None = field(repr=False)
    env_hint: str


@dataclass(frozen=True)
class ApiEndpoint:
    """A provider's endpoint defaults and key rules, as data; one set-up for every API backend.

    Attributes:
        provider: Name used in messages (``"openai"``).
        default_url: Base URL used when none is given.
        official_host: Host name of the provider's own API, which needs a key (its
            subdomains count too: ``googleapis.com`` covers ``generativelanguage.googleapis.com``).
        key_help: Where to get a key (or how to avoid needing one), appended to the
            missing-key message in parentheses.
        key_env: Environment variables the key is read from, first set wins (the backend's
            ``api_key_env`` option replaces them).
        url_env: Environment variable read for the base URL before ``default_url`` ("" = none).
        url_example: Appended to the bad-scheme message (``" (e.g. http://localhost:8000/v1)"``).
    """

    provider: str
    default_url: str
    official_host: str
    key_help: str
    key_env: tuple[str, ...] = ()
    url_env: str = ""
    url_example: str = ""

    def is_official(self, base_url: str) -> bool:
        """Whether a base URL is the provider's own API (which needs a key)."""
        host = (urlsplit(base_url).hostname or "").lower()
        return host == self.official_host or host.endswith(f".{self.official_host}")

    def base_url(self, given: str | None) -> str:
        """The base URL to use: ``given``, else ``$url_env``, else the default; no trailing ``/``."""
        from_env = os.environ.get(self.url_env) if self.url_env else None
        return (given or from_env or self.default_url).rstrip("/")

    def check_url(self, base_url: str) -> None:
        """Refuse a base URL that is not http(s).

        Raises:
            ConfigError: The scheme is not ``http`` or ``https``.
        """
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"{self.provider}: base URL {base_url!r} must start with http:// or https://{self.url_example}")

    def read_key(self, base_url: str, env_names: Sequence[str]) -> ApiKey:
        """Read the key from the first of ``env_names`` that is set (and not empty).

        Args:
            base_url: The backend's base URL; the provider's own API refuses to run keyless.
            env_names: Variables to look in, in order (the ``api_key_env`` option, or the
                provider's defaults).

        Raises:
            ConfigError: A name is not an environment variable name, or no key is set for
                the provider's official endpoint.
        """
        for name in env_names:
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(f"{self.provider}: api_key_env {name!r} is not an environment variable name")
        key = ApiKey(next((os.environ[name] for name in env_names if os.environ.get(name)), None), " or ".join(env_names))
        if key.value is None and self.is_official(base_url):
            raise ConfigError(f"{self.provider}: set {key.env_hint} to use {base_url} ({self.key_help})")
        return key


def redact(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Remove the given secrets, and anything shaped like an API key, from text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value.

    Args:
        value: Delay in seconds (``"7"``, ``"1.5"``) or an HTTP date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: Current POSIX time, for dates (defaults to ``time.time()``).

    Returns:
        A non-negative delay, or ``None`` when the value is missing or unreadable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return None
    return max(0.0, seconds)


def retry_after_of(response: httpx.Response) -> float | None:
    """The server's requested delay: ``retry-after-ms`` (OpenAI) or ``Retry-After``."""
    millis = response.headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(response.headers.get("retry-after"))


def error_message(response: httpx.Response, secrets: Sequence[str | None] = ()) -> str:
    """The provider's error text: ``error.message`` / ``error`` / ``message`` / raw body, redacted."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error", data.get("message", data.get("detail")))
        if isinstance(err, dict):
            message = err.get("message") or json.dumps(err)[:_MAX_MESSAGE]
        elif err is not None:
            message = err if isinstance(err, str) else json.dumps(err)
    elif isinstance(data, list) and data and isinstance(data[0], dict):  # Gemini wraps errors in a list
        return error_message(httpx.Response(response.status_code, json=data[0]), secrets)
    if message is None:
        message = response.text.strip() or response.reason_phrase
    return redact(str(message)[:_MAX_MESSAGE], secrets)


def raise_for_status(response: httpx.Response, *, provider: str, secrets: Sequence[str | None] = (), auth_hint: str = "") -> None:
    """Raise the backend error a non-2xx response means.

    Args:
        response: The provider's response.
        provider: Name used in messages (``"openai"``).
        secrets: Keys to scrub from the message.
        auth_hint: Appended to 401/403 messages, e.g. "check OPENAI_API_KEY".

    Raises:
        TransientBackendError: 408, 409, 425, 429, 5xx (with ``retry_after``).
        BackendError: Any other non-2xx status.
    """
    status = response.status_code
    if status < 400:
        return
    message = f"{provider}: HTTP {status}: {error_message(response, secrets)}"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientBackendError(message, status=status, retry_after=retry_after_of(response))
    if status in (401, 403) and auth_hint:
        message += f" ({auth_hint})"
    raise BackendError(message, status=status)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: Mapping[str, Any],
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    secrets: Sequence[str | None] = (),
    auth_hint: str = "",
) -> dict[str, Any]:
    """POST a JSON body and return the JSON object answered, mapping every failure.

    Raises:
        TransientBackendError: Timeout, connection error, truncated body, retryable status.
        BackendError: Other statuses, bad URL, a body that is not a JSON object.
    """
    try:
        response = await client.post(url, json=payload, headers=dict(headers or {}))
    except httpx.TimeoutException as exc:
        raise TransientBackendError(f"{provider}: request timed out ({type(exc).__name__})") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BackendError(f"{provider}: bad URL {redact(url, secrets)!r}: {redact(str(exc), secrets)}") from None
    except httpx.TransportError as exc:
        raise TransientBackendError(
            f"{provider}: connection failed ({type(exc).__name__}: {redact(str(exc), secrets)})"
        ) from None
    raise_for_status(response, provider=provider, secrets=secrets, auth_hint=auth_hint)
    return decode_json_object(response, provider=provider, secrets=secrets)


def decode_json_object(response: httpx.Response, *, provider: str, secrets: Sequence[str | None] = ()) -> dict[str, Any]:
    """The JSON object in a successful response.

    A body that starts like JSON but does not parse was most likely cut off on the way
    (proxy, overloaded server) and is transient; a body that is not JSON at all means the
    URL points at something other than the API, which retrying will not fix.
    """
    body = response.content
    try:
        try:
            data = json.loads(body)
        except UnicodeDecodeError:
            # Whole JSON with bytes that are not UTF-8 is a server bug, not a cut-off body:
            # asking again would pay for the same bytes. Keep the text, U+FFFD in their place.
            data = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, UnicodeDecodeError):
        snippet = redact(body[:200].decode("utf-8", "replace"), secrets)
        if body.lstrip()[:1] in (b"{", b"["):
            raise TransientBackendError(
                f"{provider}: malformed JSON in the response: {snippet!r}", status=response.status_code
            ) from None
        raise BackendError(
            f"{provider}: the response is not JSON ({snippet!r}); check that the base URL points at the API",
            status=response.status_code,
        ) from None
    if not isinstance(data, dict):
        raise BackendError(f"{provider}: expected a JSON object, got {type(data).__name__}", status=response.status_code)
    return data


class LoopLocalClient:
    """``httpx.AsyncClient``s reused across calls, made per running event loop.

    A client's connections belong to the loop that opened them; a caller that runs
    ``asyncio.run`` per batch would otherwise hit "event loop is closed". The clients are
    made on first use inside a loop, and remade when the running loop changes.

    With ``shards`` > 1, requests go round-robin to that many clients: httpcore's pool scans
    every connection for every queued request, which costs O(in-flight^2) per request at
    high concurrency; several small pools keep that scan short.
    """

    def __init__(self, factory: Callable[[], httpx.AsyncClient], *, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self._factory = factory
        self._shards = shards
        self._clients: list[httpx.AsyncClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0

    def get(self) -> httpx.AsyncClient:
        """A client for the running loop (call from inside a coroutine)."""
        loop = asyncio.get_running_loop()
        if not self._clients or self._loop is not loop:
            # Clients left on a finished loop cannot be closed from here; dropping them lets
            # their sockets be collected.
            self._clients = [self._factory() for _ in range(self._shards)]
            self._loop = loop
        self._next = (self._next + 1) % self._shards
        return self._clients[self._next]

    async def aclose(self) -> None:
        """Close the clients if they belong to the running loop; safe to call twice."""
        clients, loop = self._clients, self._loop
        self._clients, self._loop = [], None
        if clients and loop is asyncio.get_running_loop():
            await asyncio.gather(*(client.aclose() for client in clients))


def default_limits(max_connections: int = 256) -> httpx.Limits:
    """Connection limits roomy enough for the labeler's highest concurrency."""
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)

