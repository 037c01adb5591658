"""Local transformers VLMs (SmolVLM, Qwen2.5-VL, LLaVA, PaliGemma...) as a chat backend.

The model is loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText`` and prompted
through the processor's own chat template, on CPU or GPU. ``achat`` calls that arrive
together — ``ChatBackend.alabel`` asks about all pairs of a batch concurrently — are
generated together in one left-padded batch, so N pairs cost two ``generate`` calls (one
per stage) instead of 2N. Decoding is greedy unless the protocol sets a temperature. When
the answer must be one of a few choices, the log-probability of each choice is read off the
logits of the first answer token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.backends import local
from rlvlmf.feedback.chat import ChatBackend, ChatMessage, ChatOptions, ChatReply, ChatRequest

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack


@dataclass(eq=False)
class _Pending:
    """One ``achat`` call waiting to join a generation batch."""

    request: ChatRequest
    future: asyncio.Future[ChatReply]

    @property
    def batch_key(self) -> tuple[Any, ...]:
        # Only calls decoded the same way can share one generate(); text-only and image
        # calls are kept apart because some processors reject batches that mix them.
        return self.request.choices, self.request.max_tokens, self.request.has_images


class HFBackend(ChatBackend):
    """A local image-text-to-text model from the Hugging Face hub or a local directory.

    Args:
        model: Hub id (``HuggingFaceTB/SmolVLM-256M-Instruct``) or local checkpoint directory.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available).
        dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``float32``, ``float16``, ``bfloat16``.
        max_batch: Most conversations generated together; also the labeler's batch size.
        trust_remote_code: Allow checkpoints that ship their own modelling code.
        **common: ``base_url`` (must be ``None``: the model runs in this process), ``protocol``
            (two-stage by default; temperature 0 = greedy) and ``timeout_s`` (600 s by default;
            unused by local generation, accepted for a uniform interface); see ``ChatBackend``.

    Raises:
        ConfigError: A base URL or an invalid option was given.
    """

    family: ClassVar[str] = "hf"
    description: ClassVar[str] = "local transformers VLM (AutoModelForImageTextToText + chat template), CPU/GPU, batched"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    key_env: ClassVar[tuple[str, ...]] = ()
    priced: ClassVar[bool] = False

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch: int = 8,
        trust_remote_code: bool = False,
        **common: Unpack[ChatOptions],
    ) -> None:
        base_url = common.pop("base_url", None)
        common.setdefault("timeout_s", 600.0)
        super().__init__(model, **common)
        if base_url:
            raise ConfigError(f"hf models run locally and take no URL (got @{base_url}); "
                              "for a model served over HTTP use openai:MODEL@URL")
        try:
            local.check_device(device)
        except ValueError as exc:
            raise ConfigError(f"hf {exc}") from None
        if dtype not in local.DTYPES:
            raise ConfigError(f"hf dtype {dtype!r} is not one of {', '.join(local.DTYPES)}")
        if max_batch < 1:
            raise ConfigError(f"hf max_batch must be >= 1, got {max_batch}")
        self.device_option = device
        self.dtype_option = dtype
        self.max_batch = max_batch
        self.trust_remote_code = trust_remote_code
        self._model: Any = None
        self._processor: Any = None
        self._load_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None

    def _identity_extra(self) -> dict[str, Any]:
        # Numerics differ between dtypes, so answers do too; the device does not matter.
        return {"dtype": self.dtype_option}

    # --- loading ------------------------------------------------------------------------------

    def check(self) -> None:
        """Load the processor and the model's config (not its weights) before a run starts.

        Raises:
            MissingDependencyError: A package the model needs is missing.
            UserError: No such model (or the hub is unreachable), or it has no chat template.
        """
        local.require("torch", purpose="the hf backend")
        local.require("transformers", purpose="the hf backend")
        from transformers import AutoConfig, AutoProcessor

        local.check_hub(self.model)
        processor = local.load_pretrained(AutoProcessor, self.model, what="processor",
                                          trust_remote_code=self.trust_remote_code)
        _require_chat_template(processor, self.model)
        local.load_pretrained(AutoConfig, self.model, what="config", trust_remote_code=self.trust_remote_code)

    def load(self) -> None:
        """Load the processor and model now (otherwise done on the first call).

        Raises:
            MissingDependencyError: torch/transformers, or a package the checkpoint needs
                (torchvision for Qwen2-VL's processor), is missing.
            UserError: The checkpoint cannot be found or is not an image-text-to-text model.
        """
        with self._load_lock:
            if self._model is not None:
                return
            local.require("torch", purpose="the hf backend")
            local.require("transformers", purpose="the hf backend")
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.device = local.resolve_device(self.device_option)
            self.torch_dtype = local.resolve_dtype(self.dtype_option, self.device)
            processor = local.load_pretrained(AutoProcessor, self.model, what="processor",
                                              trust_remote_code=self.trust_remote_code)
            _require_chat_template(processor, self.model)
            try:
                model = local.load_pretrained(AutoModelForImageTextToText, self.model, what="model",
                                              dtype=self.torch_dtype, trust_remote_code=self.trust_remote_code)
            except ValueError as exc:
                raise UserError(f"{self.model!r} is not an image-text-to-text model transformers knows "
                                f"(AutoModelForImageTextToText): {str(exc).splitlines()[0]}") from exc
            # Batched generation with a decoder-only model needs the prompts right-aligned.
            processor.tokenizer.padding_side = "left"
            self._processor = processor
            self._model = model.to(self.device).eval()
            self._eos_ids = _eos_ids(model, processor.tokenizer)

    # --- the provider call, batched -----------------------------------------------------------

    async def asend(self, request: ChatRequest) -> ChatReply:
        """Queue one conversation; concurrent calls are generated together (see module doc)."""
        future: asyncio.Future[ChatReply] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def achat_many(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        choices: Sequence[str] | None = None,
        max_tokens: int = 512,
    ) -> list[ChatReply]:
        """Generate several conversations together (in batches of ``max_batch``)."""
        return list(await asyncio.gather(*(self.achat(c, choices=choices, max_tokens=max_tokens) for c in conversations)))

    async def _drain(self) -> None:
        # The first achat of a gather() schedules this task behind the gather's other
        # coroutines, so by the time it runs they have all queued their requests.
        await asyncio.sleep(0)
        while self._queue:
            key = self._queue[0].batch_key
            batch = [r for r in self._queue if r.batch_key == key][: self.max_batch]
            taken = {id(r) for r in batch}
            self._queue = [r for r in self._queue if id(r) not in taken]
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            try:
                replies = await asyncio.to_thread(self.generate, [r.request.messages for r in live],
                                                  choices=key[0], max_tokens=key[1])
            except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear of it
                for request in live:
                    if not request.future.done():
                        request.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for request, reply in zip(live, replies):
                    if not request.future.done():
                        request.future.set_result(reply)

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        choices: Sequence[str] | None = None,
        max_tokens: int = 512,
    ) -> list[ChatReply]:
        """Generate replies to several conversations in one left-padded batch (blocking).

        Args:
            conversations: Conversations whose parts are text or HxWx3 uint8 images.
            choices: Allowed answers; when given, each reply carries ``choice_logprobs``:
                the log-probability of each choice's first token at the first answer position
                (``None`` if two choices share their first token).
            max_tokens: Most new tokens per reply.

        Returns:
            One ``ChatReply`` per conversation, in order.
        """
        import torch

        self.load()
        model, processor = self._model, self._processor
        inputs = self._encode(conversations)
        prompt_len = inputs["input_ids"].shape[1]
        temperature = self.protocol.temperature
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=max_tokens, return_dict_in_generate=True, output_logits=bool(choices),
                pad_token_id=processor.tokenizer.pad_token_id, **sampling,
            )
        new_tokens = out.sequences[:, prompt_len:]
        lengths = self._generated_lengths(new_tokens)
        texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
        input_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        logprobs = self._choice_logprobs(out.logits[0], choices) if choices else [None] * len(texts)
        replies = []
        for i, text in enumerate(texts):
            finish = "length" if lengths[i] >= max_tokens and not self._ends_with_eos(new_tokens[i]) else "stop"
            replies.append(ChatReply(
                text=text.strip(), input_tokens=int(input_tokens[i]), output_tokens=int(lengths[i]),
                choice_logprobs=logprobs[i], meta={"finish_reason": finish, "batch_size": len(texts)},
            ))
        return replies

    def _encode(self, conversations: Sequence[Sequence[ChatMessage]]) -> dict[str, torch.Tensor]:
        from PIL import Image

        hf_conversations = [
            [
                {"role": message.role, "content": [
                    {"type": "text", "text": part} if isinstance(part, str) else {"type": "image", "image": Image.fromarray(part)}
                    for part in message.parts
                ]}
                for message in conversation
            ]
            for conversation in conversations
        ]
        kwargs: dict[str, Any] = {"padding": True}
        inputs = self._processor.apply_chat_template(
            hf_conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            **({"processor_kwargs": kwargs} if _takes_processor_kwargs(self._processor) else kwargs),
        )
        return {
            k: v.to(self.device, self.torch_dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items() if hasattr(v, "to")
        }

    def _generated_lengths(self, new_tokens: torch.Tensor) -> list[int]:
        """Tokens each row really generated: up to and including its first end-of-sequence token."""
        lengths = []
        for row in new_tokens.tolist():
            end = next((i for i, token in enumerate(row) if token in self._eos_ids), None)
            lengths.append(len(row) if end is None else end + 1)
        return lengths

    def _ends_with_eos(self, row: torch.Tensor) -> bool:
        return any(int(t) in self._eos_ids for t in row.tolist())

    def _choice_logprobs(self, first_logits: torch.Tensor, choices: Sequence[str]) -> list[dict[str, float] | None]:
        """Per row, ``{choice: log p(first token of choice)}`` at the first answer position."""
        import torch

        token_ids = [_first_token(self._processor.tokenizer, choice) for choice in choices]
        if None in token_ids or len(set(token_ids)) < len(token_ids):
            return [None] * first_logits.shape[0]
        logprobs = torch.log_softmax(first_logits.float(), dim=-1)[:, token_ids].cpu().tolist()
        return [dict(zip(choices, row)) for row in logprobs]

    async def aclose(self) -> None:
        self._model = None
        self._processor = None


def _require_chat_template(processor: Any, model: str) -> None:
    if not hasattr(processor, "apply_chat_template") or getattr(processor, "chat_template", None) is None:
        raise UserError(f"{model!r} has no chat template; the hf backend needs an instruction-tuned VLM "
                        "whose processor ships one")


def _first_token(tokenizer: Any, text: str) -> int | None:
    """The id a choice's answer starts with: the choice itself when it is one token."""
    token_id = tokenizer.convert_tokens_to_ids(text)
    if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
        return token_id
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if ids else None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _takes_processor_kwargs(processor: Any) -> bool:
    # transformers 5 wants processor call options under processor_kwargs; 4.x took them flat.
    import inspect

    return "processor_kwargs" in inspect.signature(processor.apply_chat_template).parameters
