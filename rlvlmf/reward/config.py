"""The reward model's configuration: what it sees, how big it is, how it is fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlvlmf.errors import ConfigError

InputKind = Literal["image", "state", "both"]
StateKind = Literal["obs_action", "obs", "next_obs"]
NoPreference = Literal["soft", "drop"]

# Reference sizes: the RL-VLM-F image encoder (kernels 5/3/3/3, strides 3/2/2/2) and
# PEBBLE's 3x256 state reward MLP.
CONV_KERNELS: tuple[int, ...] = (5, 3, 3, 3)
CONV_STRIDES: tuple[int, ...] = (3, 2, 2, 2)
CONV_PADDINGS: tuple[int, ...] = tuple(kernel // 2 for kernel in CONV_KERNELS)
"""Zero padding of each conv. The reference convs have none, and then at 64 px the last layer
is one cell that sees pixels 0-46 only: rows and columns 47-63 never reached the reward. With
``kernel // 2`` every pixel of a frame of any size reaches it (the measured choice among
padding, global pooling and other frame sizes: docs/reward_encoder.md)."""
STATE_HIDDEN_DEFAULT: tuple[int, ...] = (256, 256, 256)
PREFERENCE_SCALE_DEFAULT = 10.0
"""Measured on the reward study's rollouts (docs/learning/notes.md), 500 scripted labels: with 1,
state models' train accuracy stalls at 0.86-0.90 on consistent labels (cartpole-swingup,
drawer-open); with 10 it reaches 0.99+ and held-out pairwise accuracy rises."""
SHIFT_PIXELS_DEFAULT = 4
"""Measured like ``PREFERENCE_SCALE_DEFAULT``: with 500 labels an image model overfits single
frames; shifting them by up to 4 of 64 pixels raised held-out accuracy (docs/learning/notes.md)."""
FIELDS_SAVED_STATE_LACKS = {"preference_scale": 1.0, "shift_pixels": 0}
"""Fields added after runs were saved, with the behaviour those runs had: a run (or reward model)
saved without them resumes fitting as it started, not with today's defaults."""


def with_fields_saved_state_lacks(saved: dict) -> dict:
    """A saved ``RewardModelConfig`` dict, with ``FIELDS_SAVED_STATE_LACKS`` filled in where missing.

    Only for state this library wrote (a run's config, a checkpoint, a reward model file); a
    config a person writes gets the defaults.
    """
    return {**FIELDS_SAVED_STATE_LACKS, **saved}


@dataclass(frozen=True)
class RewardModelConfig:
    """How the reward ensemble is built and fit.

    Attributes:
        input: What a member sees: ``"image"`` (a frame), ``"state"`` (a state vector) or
            ``"both"`` (conv features of the frame concatenated with the state vector).
        frame_size: Side of the square uint8 frame the conv encoder reads (e.g. 64 or 84).
            Frames are stored at this size, so it also sets the buffer's memory per step.
        state_dim: Length of the state vector (0 when ``input == "image"``).
        state_kind: Which transition fields form the state vector: ``"obs_action"`` (PEBBLE's
            r(s, a)), ``"obs"`` or ``"next_obs"``. Ignored for image-only models.
        conv_channels: Output channels of the four conv layers.
        encoder: ``"conv"`` (the reference encoder) or ``"fls"``: the same convs with a
            Free-Lunch-Saliency spatial attention layer whose weights are a saliency map
            (``rlvlmf.reward.saliency``).
        hidden_sizes: Hidden layers of the MLP head after the (optional) conv features.
            ``None`` means the reference default: none for images (conv -> linear -> tanh),
            3x256 for state or both.
        ensemble_size: Number of independently initialised members.
        lr: Adam learning rate (``reward_lr``).
        weight_decay: L2 penalty in Adam (0 in the reference).
        batch_size: Pairs per member per gradient step.
        max_epochs: Epochs per feedback round at most (``reward_update``).
        early_stop_acc: Stop a round once the epoch's train accuracy reaches this.
        preference_scale: Multiplier of the return difference in the Bradley-Terry loss,
            ``P(second) = sigmoid(preference_scale * (R2 - R1))``. A step's reward is tanh-bounded
            to ``(-1, 1)``, so with 1 (the reference) a single-frame pair can be at most
            ``sigmoid(2) = 0.88`` certain: the loss keeps pushing rewards towards +-1 and stops
            ordering frames within each end (``PREFERENCE_SCALE_DEFAULT``). The rewards the agent
            sees keep their ``(-1, 1)`` range.
        shift_pixels: Random-shift augmentation while fitting (as in DrQ): each frame is padded
            by this many pixels (edges repeated) and cropped back at a random offset. 0 turns
            it off; prediction never shifts (``SHIFT_PIXELS_DEFAULT``).
        heldout_fraction: Share of new labels kept out of training to measure held-out
            accuracy. The reference trains on every label (0.0).
        no_preference: ``"soft"`` trains "no preference" labels (-1) towards 0.5;
            ``"drop"`` ignores them as the reference code does.
        capacity: Most labels kept; the oldest are dropped beyond it.
        predict_batch_size: Steps per forward pass when predicting (relabelling a buffer).
            Small batches stay in cache: 256 measured faster than 1024 or 4096 on 2 cores.
        compute_dtype: ``"bfloat16"`` runs the nets' forward passes (fitting and prediction)
            under CPU autocast with float32 master weights: about 1.8x faster fitting and
            up to 1.5x faster prediction on CPUs with bfloat16 units; predicted rewards then
            differ from float32 by ~1e-2. ``"float32"`` is the reference.
    """

    input: InputKind = "image"
    frame_size: int = 64
    state_dim: int = 0
    state_kind: StateKind = "obs_action"
    conv_channels: tuple[int, ...] = (16, 32, 64, 128)
    encoder: Literal["conv", "fls"] = "conv"
    hidden_sizes: tuple[int, ...] | None = None
    ensemble_size: int = 3
    lr: float = 3e-4
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 10
    early_stop_acc: float = 0.97
    preference_scale: float = PREFERENCE_SCALE_DEFAULT
    shift_pixels: int = SHIFT_PIXELS_DEFAULT
    heldout_fraction: float = 0.0
    no_preference: NoPreference = "soft"
    capacity: int = 100_000
    predict_batch_size: int = 256
    compute_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        self._check_inputs()
        self._check_training()

    def _check_inputs(self) -> None:
        """What the members read and their sizes."""
        if self.input not in ("image", "state", "both"):
            raise ConfigError(f"reward input must be 'image', 'state' or 'both', got {self.input!r}")
        if self.state_kind not in ("obs_action", "obs", "next_obs"):
            raise ConfigError(f"reward state_kind must be 'obs_action', 'obs' or 'next_obs', got {self.state_kind!r}")
        if self.no_preference not in ("soft", "drop"):
            raise ConfigError(f"reward no_preference must be 'soft' or 'drop', got {self.no_preference!r}")
        if self.uses_frames and self.frame_size < min_frame_size():
            raise ConfigError(f"reward frame_size must be >= {min_frame_size()} for the conv encoder, got {self.frame_size}")
        if self.uses_states and self.state_dim < 1:
            raise ConfigError(f"reward input {self.input!r} needs state_dim >= 1, got {self.state_dim}")
        if len(self.conv_channels) != len(CONV_KERNELS) or min(self.conv_channels) < 1:
            raise ConfigError(f"reward conv_channels must be {len(CONV_KERNELS)} positive ints, got {self.conv_channels}")
        if self.hidden_sizes is not None and any(h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"reward hidden_sizes must be positive, got {self.hidden_sizes}")

    def _check_training(self) -> None:
        """How the ensemble is built and fit."""
        for name in ("ensemble_size", "batch_size", "max_epochs", "capacity", "predict_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"reward {name} must be >= 1, got {getattr(self, name)}")
        if self.encoder not in ("conv", "fls"):
            raise ConfigError(f"reward encoder must be 'conv' or 'fls', got {self.encoder!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"reward compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}")
        if not self.lr > 0:
            raise ConfigError(f"reward lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"reward weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.early_stop_acc <= 1.0:
            raise ConfigError(f"reward early_stop_acc must be in (0, 1], got {self.early_stop_acc}")
        if not self.preference_scale > 0:
            raise ConfigError(f"reward preference_scale must be > 0, got {self.preference_scale}")
        if self.shift_pixels < 0:
            raise ConfigError(f"reward shift_pixels must be >= 0, got {self.shift_pixels}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"reward heldout_fraction must be in [0, 1), got {self.heldout_fraction}")

    @property
    def uses_frames(self) -> bool:
        """Whether members read frames."""
        return self.input in ("image", "both")

    @property
    def uses_states(self) -> bool:
        """Whether members read state vectors."""
        return self.input in ("state", "both")

    @property
    def head_hidden_sizes(self) -> tuple[int, ...]:
        """The MLP head's hidden layers, with the reference default resolved."""
        if self.hidden_sizes is not None:
            return self.hidden_sizes
        return () if self.input == "image" else STATE_HIDDEN_DEFAULT


def conv_sizes(frame_size: int) -> list[int]:
    """Spatial side of the input and of each conv layer's output for a square frame."""
    sizes = [frame_size]
    for kernel, stride, padding in zip(CONV_KERNELS, CONV_STRIDES, CONV_PADDINGS):
        sizes.append((sizes[-1] + 2 * padding - kernel) // stride + 1)
    return sizes


def conv_output_size(frame_size: int) -> int:
    """Spatial side of the conv encoder's output for a square input of side ``frame_size``."""
    return conv_sizes(frame_size)[-1]


def min_frame_size() -> int:
    """Smallest frame side the conv encoder accepts: every conv's input must be at least as
    wide as its kernel, or a window would hold more padding than picture."""
    size = 1
    while any(side < kernel for side, kernel in zip(conv_sizes(size), CONV_KERNELS)):
        size += 1
    return size


def receptive_field(layers: int) -> tuple[int, int, int]:
    """Where one cell after the first ``layers`` convs looks, in input pixels.

    Returns:
        ``(size, jump, start)``: cell ``i`` (along a row or column) sees the ``size`` pixels
        from ``start + i * jump``; ``start`` is negative where the window reaches into padding.
    """
    size, jump, start = 1, 1, 0
    for kernel, stride, padding in list(zip(CONV_KERNELS, CONV_STRIDES, CONV_PADDINGS))[:layers]:
        size, start, jump = size + (kernel - 1) * jump, start - padding * jump, jump * stride
    return size, jump, start
