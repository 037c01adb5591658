"""``HttpChatBackend``: the set-up every chat backend that posts JSON over HTTP shares.

The OpenAI-compatible, Gemini and Anthropic backends differ in their wire format (payload,
response, how a structured answer is asked for) and in how the key travels, not in how they
are set up. That set-up is here, once:

- the base URL (``@URL``, else the provider's variable, else its default) and its check;
- the API key, read from the environment when the backend is built, kept in memory only,
  sent in the header the provider names, and scrubbed from every error message;
- ``httpx`` clients per event loop (``LoopLocalClient``), sharing one TLS context;
- ``_post``: one JSON request with the shared error policy of ``rlvlmf.feedback.http``;
- structured answers (a JSON schema, an enum, a forced tool call: whatever the provider
  offers) with one fallback: a server that rejects them is asked in plain text from then on,
  for the life of the backend (the parser reads both forms).

A provider subclass sets ``api`` (its ``ApiEndpoint``, which names the provider and the
variables its key is read from; the class takes ``family`` and ``key_env`` from it) and
``structured_rejected``, and writes ``_endpoint`` (the URL posted to),
``_key_headers`` and ``asend`` (with ``_wants_structured`` and ``_post_structured``). Its own
options are keyword arguments of its ``__init__``, which passes ``**common`` on.
"""

from __future__ import annotations

import abc
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx

from rlvlmf import __version__
from rlvlmf.feedback.base import BackendError
from rlvlmf.feedback.chat import ChatBackend, ChatOptions
from rlvlmf.feedback.http import ApiEndpoint, LoopLocalClient, default_limits, post_json

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class HttpChatOptions(ChatOptions, total=False):
    """The keywords every HTTP chat backend takes besides its own (its ``**common``)."""

    structured_output: bool
    api_key_env: str


def usage_count(value: Any) -> int:
    """A token count from a provider's usage block: a non-negative int, else 0 (absent, null, junk)."""
    return value if type(value) is int and value >= 0 else 0


_Json = TypeVar("_Json", dict, list)


def json_field(data: dict[str, Any], key: str, kind: type[_Json]) -> _Json:
    """``data[key]`` when it is a ``kind`` (``dict`` or ``list``), else an empty one (absent, null, junk)."""
    value = data.get(key)
    return value if isinstance(value, kind) else kind()


class HttpChatBackend(ChatBackend, abc.ABC):
    """Base class of chat backends that call a provider's HTTP API.

    Args:
        model: The provider's model name.
        base_url: API root; ``None`` -> the endpoint's variable or default (no trailing ``/``).
        protocol: How to ask; defaults to the RL-VLM-F two-stage protocol.
        timeout_s: Per-request timeout in seconds.
        structured_output: Ask for a structured answer on choice questions (the label question).
        api_key_env: Variable holding the key; empty = the provider's ``key_env`` (first set wins).

    Raises:
        ConfigError: The base URL is not http(s), a key variable name is invalid, or no key
            is set for the provider's own API.
    """

    base_url: str
    """API root the endpoint is built from (resolved, never ``None``)."""
    api: ClassVar[ApiEndpoint]
    """The provider's endpoint defaults and key rules; ``family`` and ``key_env`` are taken from it."""
    client_shards: ClassVar[int] = 1
    """``httpx`` clients per event loop (see ``LoopLocalClient``)."""
    connections_per_shard: ClassVar[int] = 256
    """Connection-pool size of each client."""
    structured_rejected: ClassVar[re.Pattern[str]]
    """Error text (of a 400 to a structured request) meaning the server does not do structured answers."""
    structured_rejection_statuses: ClassVar[frozenset[int]] = frozenset({400})
    structured_kind: ClassVar[str] = "structured output"
    """What the structured answer is called in the fallback warning."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The endpoint is the one place that names the provider and its key variables, so the
        # registry name, the error messages and the key look-up cannot disagree.
        api = cls.__dict__.get("api")
        if api is not None:
            cls.family = api.provider
            cls.key_env = api.key_env

    def __init__(
        self,
        model: str,
        *,
        structured_output: bool = True,
        api_key_env: str = "",
        **common: Unpack[ChatOptions],
    ) -> None:
        common["base_url"] = base_url = self.api.base_url(common.get("base_url"))
        super().__init__(model, **common)
        self.api.check_url(base_url)
        key = self.api.read_key(base_url, (api_key_env,) if api_key_env else self.key_env)
        self._api_key = key.value
        self._key_hint = key.env_hint
        self.endpoint = self._endpoint(base_url)
        self.structured_output = structured_output
        self._structured_supported = True
        self._ssl_context: ssl.SSLContext | None = None
        self._client = LoopLocalClient(self._make_client, shards=self.client_shards)

    @abc.abstractmethod
    def _endpoint(self, base_url: str) -> str:
        """The URL every request is posted to, from the base URL (``self.model`` is set)."""

    @abc.abstractmethod
    def _key_headers(self, key: str) -> dict[str, str]:
        """The header(s) carrying the API key (``Authorization: Bearer ...``, ``x-api-key``...)."""

    def _headers(self) -> dict[str, str]:
        """Headers of every request: user agent, key (when one is set)."""
        headers = {"User-Agent": f"rlvlmf/{__version__}"}
        if self._api_key is not None:
            headers.update(self._key_headers(self._api_key))
        return headers

    def _client_options(self) -> dict[str, Any]:
        """Extra ``httpx.AsyncClient`` arguments (e.g. ``event_hooks``)."""
        return {}

    def _make_client(self) -> httpx.AsyncClient:
        if self._ssl_context is None:  # loading the CA bundle costs ~0.1 s: once, not per client
            self._ssl_context = httpx.create_ssl_context()
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            limits=default_limits(self.connections_per_shard),
            headers=self._headers(),
            verify=self._ssl_context,
            **self._client_options(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one JSON request to ``endpoint`` on this loop's client; failures mapped as in ``post_json``."""
        return await post_json(
            self._client.get(),
            self.endpoint,
            payload,
            provider=self.api.provider,
            secrets=(self._api_key,),
            auth_hint=f"check {self._key_hint}",
        )

    def _wants_structured(self, choices: Sequence[str] | None) -> bool:
        """Whether to ask for a structured answer: a choice question, the option on, not rejected before."""
        return bool(choices) and self.structured_output and self._structured_supported

    async def _post_structured(
        self, payload: dict[str, Any], structured: bool, to_plain: Callable[[dict[str, Any]], None]
    ) -> tuple[dict[str, Any], bool]:
        """``_post``; if the server rejects the structured part, ask in plain text, now and from then on.

        Args:
            payload: The request, with its structured part when ``structured``.
            structured: Whether the payload asks for a structured answer.
            to_plain: Removes the structured part from a payload (in place).

        Returns:
            The response body, and whether it answers a structured request.
        """
        try:
            return await self._post(payload), structured
        except BackendError as exc:
            rejected = exc.status in self.structured_rejection_statuses and self.structured_rejected.search(str(exc))
            if not (structured and rejected):
                raise
        log.warning("%s: %s rejected %s; asking in plain text from now on", self.family, self.base_url, self.structured_kind)
        self._structured_supported = False
        to_plain(payload)
        return await self._post(payload), False
