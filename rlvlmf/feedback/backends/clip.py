"""CLIP/SigLIP scoring: frame-vs-text similarity as a preference (and as a reward signal).

``ClipScorer`` embeds frames and phrases with a contrastive image-text model and scores each
frame against the task's goal: either the cosine similarity to the goal phrase, or — as in
Baumli et al. (2023) — the probability of the goal phrase in a softmax over the goal and the
task's negative phrases. ``ClipBackend`` turns the score difference of a pair into a
preference; a later reward mode can call ``ClipScorer.scores`` directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from rlvlmf.config import from_dict
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.backends import local
from rlvlmf.feedback.base import Answer, Backend, FramePair, Label, RngLike
from rlvlmf.utils.clip_scores import baumli_probability

if TYPE_CHECKING:
    import torch

ScoreMode = Literal["auto", "cosine", "softmax"]


@dataclass(frozen=True)
class ClipConfig:
    """How frames are scored and pairs compared.

    Attributes:
        score: ``"cosine"``: cosine similarity to the main goal phrase, in [-1, 1].
            ``"softmax"``: probability of the goal phrase in a softmax over the goal and the
            task's negative phrases (Baumli et al.), in [0, 1]. ``"auto"``: softmax when the
            task has negative phrases, else cosine.
        softmax_temperature: Temperature of that softmax; ``None`` uses the model's own
            learned logit scale (0.01 for OpenAI CLIP).
        tie_margin: Pairs whose score difference is at most this are labelled "no
            preference" (in score units).
        prob_temperature: ``prob_second = sigmoid((score_2 - score_1) / prob_temperature)``.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``float32``, ``float16``, ``bfloat16``.
        batch_size: Frames per forward pass.
        max_batch: Pairs per ``label`` call (the labeler splits batches to this size).
    """

    score: ScoreMode = "auto"
    softmax_temperature: float | None = None
    tie_margin: float = 0.0
    prob_temperature: float = 0.05
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    max_batch: int = 32

    def __post_init__(self) -> None:
        if self.score not in ("auto", "cosine", "softmax"):
            raise ConfigError(f"clip score {self.score!r} is not one of auto, cosine, softmax")
        if self.softmax_temperature is not None and not self.softmax_temperature > 0:
            raise ConfigError(f"clip softmax_temperature must be > 0, got {self.softmax_temperature}")
        if not self.tie_margin >= 0:
            raise ConfigError(f"clip tie_margin must be >= 0, got {self.tie_margin}")
        if not self.prob_temperature > 0:
            raise ConfigError(f"clip prob_temperature must be > 0, got {self.prob_temperature}")
        if self.dtype not in local.DTYPES:
            raise ConfigError(f"clip dtype {self.dtype!r} is not one of {', '.join(local.DTYPES)}")
        try:
            local.check_device(self.device)
        except ValueError as exc:
            raise ConfigError(f"clip {exc}") from None
        for name in ("batch_size", "max_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"clip {name} must be >= 1, got {getattr(self, name)}")


class ClipScorer:
    """A CLIP-family model that embeds frames and phrases and scores frames against a task.

    Args:
        model_path: Hub id or local directory of a CLIP or SigLIP checkpoint.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        dtype: ``auto``, ``float32``, ``float16`` or ``bfloat16``.
        batch_size: Frames per forward pass.

    Raises:
        MissingDependencyError: A package the checkpoint needs is missing.
        UserError: The checkpoint cannot be loaded, or is not an image-text model.
    """

    def __init__(self, model_path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 32) -> None:
        from transformers import AutoModel, AutoProcessor

        self.model_path = model_path
        self.batch_size = batch_size
        self.device = local.resolve_device(device)
        self.dtype = local.resolve_dtype(dtype, self.device)
        local.check_hub(model_path)
        self.processor = local.load_pretrained(AutoProcessor, model_path, what="processor")
        model = local.load_pretrained(AutoModel, model_path, what="model", dtype=self.dtype)
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise UserError(f"{model_path!r} is a {type(model).__name__}, not a CLIP/SigLIP image-text model")
        self.model = model.to(self.device).eval()
        self.model_type: str = model.config.model_type
        # SigLIP was trained on texts padded to a fixed length; shorter padding changes its embeddings.
        self._text_kwargs: dict[str, Any] = {"padding": True, "truncation": True}
        if self.model_type.startswith("siglip"):
            self._text_kwargs = {"padding": "max_length", "truncation": True, "max_length": self._text_length()}
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    def _text_length(self) -> int:
        tokenizer_max = getattr(self.processor.tokenizer, "model_max_length", None)
        config_max = self.model.config.text_config.max_position_embeddings
        return min(tokenizer_max, config_max) if tokenizer_max and tokenizer_max < 10**6 else config_max

    def embed_images(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Embed frames.

        Args:
            frames: ``(N, H, W, 3)`` uint8 array, or a sequence of ``(H, W, 3)`` uint8 frames.

        Returns:
            ``(N, D)`` float32 unit-norm embeddings.
        """
        return self._embed_images(frames).float().cpu().numpy()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed phrases.

        Returns:
            ``(M, D)`` float32 unit-norm embeddings.
        """
        return self._embed_texts(tuple(texts)).float().cpu().numpy()

    def scores(self, frames: np.ndarray | Sequence[np.ndarray], task: TaskDescription, *, score: ScoreMode = "auto",
               softmax_temperature: float | None = None) -> np.ndarray:
        """Score frames against the task's goal (higher = closer to the goal).

        Args:
            frames: ``(N, H, W, 3)`` uint8 frames.
            task: Gives the goal phrase (``positive_phrases[0]``) and the negative phrases.
            score: ``cosine``, ``softmax`` or ``auto`` (see ``ClipConfig.score``).
            softmax_temperature: ``None`` uses the model's logit scale.

        Returns:
            ``(N,)`` float64 scores.
        """
        image_emb = self._embed_images(frames)
        return self.scores_from_embeddings(image_emb, task, score=score, softmax_temperature=softmax_temperature)

    def scores_from_embeddings(self, image_emb: np.ndarray | torch.Tensor, task: TaskDescription, *,
                               score: ScoreMode = "auto", softmax_temperature: float | None = None) -> np.ndarray:
        """Like ``scores`` but from precomputed ``(N, D)`` unit-norm image embeddings."""
        import torch

        mode = resolve_score_mode(score, task)
        phrases = (task.positive_phrases[0], *task.negative_phrases) if mode == "softmax" else task.positive_phrases[:1]
        text_emb = self._embed_texts(phrases)
        image_emb = torch.as_tensor(image_emb, device=text_emb.device).to(text_emb.dtype)
        if mode == "cosine":
            return (image_emb @ text_emb.T).float()[:, 0].cpu().numpy().astype(np.float64)
        texts = text_emb.float().cpu().numpy()
        temperature = softmax_temperature if softmax_temperature is not None else 1.0 / self.logit_scale
        return baumli_probability(image_emb.float().cpu().numpy(), texts[0], texts[1:], temperature)

    def _embed_images(self, frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        frames = _as_frame_list(frames)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                inputs = self.processor(images=frames[start:start + self.batch_size], return_tensors="pt")
                inputs = {
                    k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()
                }
                chunks.append(_normalise(_features(self.model.get_image_features(**inputs))))
        return torch.cat(chunks)

    def _embed_texts(self, texts: tuple[str, ...]) -> torch.Tensor:
        import torch

        if texts not in self._text_cache:
            with torch.inference_mode():
                inputs = self.processor.tokenizer(list(texts), return_tensors="pt", **self._text_kwargs)
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                self._text_cache[texts] = _normalise(_features(self.model.get_text_features(**inputs)))
        return self._text_cache[texts]


class ClipBackend(Backend):
    """Preferences from CLIP/SigLIP scores: the frame scoring closer to the goal wins.

    ``label`` embeds the frames of all pairs in batches, scores them against the task, and
    labels each pair by the score difference ``d = score_2 - score_1``: ``|d| <= tie_margin``
    is no preference, otherwise the higher-scoring frame; ``prob_second = sigmoid(d / T)``.
    """

    family: ClassVar[str] = "clip"
    description: ClassVar[str] = "CLIP/SigLIP frame-vs-goal-text scores (local transformers model, batched)"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    key_env: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: str, config: ClipConfig | None = None) -> None:
        self.model_name = model
        self.config = config or ClipConfig()
        self.max_batch = self.config.max_batch
        self._scorer: ClipScorer | None = None

    @classmethod
    def from_spec(cls, model: str, base_url: str | None = None, *, rng: RngLike = None, **options: Any) -> ClipBackend:
        """Build from ``clip:<model id or local path>`` and ``key=value`` options (strings are parsed).

        ``rng`` is accepted like every backend's and unused: scores are deterministic.

        Raises:
            ConfigError: A base URL was given (local models have none) or an option is invalid.
        """
        if base_url:
            raise ConfigError(f"clip backends run locally and take no URL (got @{base_url}); use clip:<model id or path>")
        if not model:
            raise ConfigError("clip backend needs a model: clip:<hub id or local path>, e.g. clip:openai/clip-vit-base-patch32")
        return cls(model, from_dict(ClipConfig, options))

    def check(self) -> None:
        """Load the processor and the model's config (not its weights) before a run starts.

        Raises:
            MissingDependencyError: A package the model needs is missing.
            UserError: No such model, or the hub is unreachable.
        """
        local.require("torch", purpose="the clip backend")
        local.require("transformers", purpose="the clip backend")
        from transformers import AutoConfig, AutoProcessor

        local.check_hub(self.model_name)
        local.load_pretrained(AutoProcessor, self.model_name, what="processor")
        local.load_pretrained(AutoConfig, self.model_name, what="config")

    @property
    def scorer(self) -> ClipScorer:
        """The loaded scorer (loaded on first use, so constructing the backend stays cheap)."""
        if self._scorer is None:
            local.require("torch", purpose="the clip backend")
            local.require("transformers", purpose="the clip backend")
            self._scorer = ClipScorer(self.model_name, device=self.config.device, dtype=self.config.dtype,
                                      batch_size=self.config.batch_size)
        return self._scorer

    def identity(self) -> dict[str, Any]:
        c = self.config
        return {"family": self.family, "model": self.model_name, "score": c.score,
                "softmax_temperature": c.softmax_temperature, "tie_margin": c.tie_margin,
                "prob_temperature": c.prob_temperature, "dtype": c.dtype}

    def label(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        import time

        if not pairs:
            return []
        start = time.perf_counter()
        frames = [frame for pair in pairs for frame in (pair.first, pair.second)]
        scores = self.scorer.scores(frames, task, score=self.config.score,
                                    softmax_temperature=self.config.softmax_temperature).reshape(-1, 2)
        latency = (time.perf_counter() - start) / len(pairs)
        mode = resolve_score_mode(self.config.score, task)
        return [self._answer(float(s1), float(s2), mode, latency) for s1, s2 in scores]

    def _answer(self, score_first: float, score_second: float, mode: str, latency: float) -> Answer:
        label, prob_second = preference_from_scores(score_first, score_second, self.config.tie_margin,
                                                    self.config.prob_temperature)
        text = f"score({mode}) image 1 = {score_first:.6f}, image 2 = {score_second:.6f}"
        return Answer(label=label, prob_second=prob_second, stages=(text,), latency_s=latency,
                      meta={"scores": [score_first, score_second], "score": mode, "model_type": self.scorer.model_type})

    async def aclose(self) -> None:
        self._scorer = None


def resolve_score_mode(score: ScoreMode, task: TaskDescription) -> Literal["cosine", "softmax"]:
    """The concrete score for a task: ``auto`` is softmax when the task has negative phrases.

    Raises:
        UserError: ``softmax`` was asked for but the task has no negative phrases.
    """
    if score == "auto":
        return "softmax" if task.negative_phrases else "cosine"
    if score == "softmax" and not task.negative_phrases:
        raise UserError(f"clip score=softmax needs negative phrases, and task {task.name!r} has none; use score=cosine")
    return score


def preference_from_scores(score_first: float, score_second: float, tie_margin: float,
                           prob_temperature: float) -> tuple[Label, float]:
    """Label and ``prob_second`` from two frame scores (a pure function).

    Returns:
        ``Label.NONE`` when ``|score_2 - score_1| <= tie_margin``, else the higher-scoring
        frame; and ``sigmoid((score_2 - score_1) / prob_temperature)``.
    """
    diff = score_second - score_first
    prob_second = _sigmoid(diff / prob_temperature)
    if abs(diff) <= tie_margin:
        return Label.NONE, prob_second
    return (Label.SECOND if diff > 0 else Label.FIRST), prob_second


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding;
    # 4.x returned the tensor itself.
    return output if hasattr(output, "dim") else output.pooler_output


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _as_frame_list(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    frames = list(frames)
    for frame in frames:
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
            raise ValueError(f"frames must be (H, W, 3) uint8 arrays, got {getattr(frame, 'shape', None)} "
                             f"{getattr(frame, 'dtype', type(frame).__name__)}")
    if not frames:
        raise ValueError("no frames to embed")
    return frames
