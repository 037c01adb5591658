"""An ensemble of reward networks fit to preferences with the Bradley-Terry loss.

Members share nothing but the optimizer object (Adam is per-parameter, so one Adam over
all members equals one per member). Each member sees its own shuffle of the labels, so
members differ by initialisation and by minibatch order, as in PEBBLE.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlvlmf.config import from_dict, to_dict
from rlvlmf.errors import UserError
from rlvlmf.reward.config import RewardModelConfig, with_fields_saved_state_lacks
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.losses import bradley_terry_loss, correct_and_counted
from rlvlmf.reward.nets import RewardNet, preprocess_frames, random_shift
from rlvlmf.reward.preferences import PreferenceBatch, PreferenceDataset
from rlvlmf.utils.atomic import atomic_open
from rlvlmf.utils.device import as_device, autocast, to_device

_FORMAT_VERSION = 2
"""2: the image encoder's convs are padded (``rlvlmf.reward.config.CONV_PADDINGS``). Format-1
image models had unpadded convs, blind to the frame's bottom and right edges; their weights do
not fit the padded encoder. Format-1 state-only models load unchanged."""
ACCELERATOR_PREDICT_BATCH = 8192
"""Steps per forward pass when predicting on a GPU, where a pass's fixed cost dominates small
batches (``predict_batch_size`` is tuned for CPU caches)."""


@dataclass(frozen=True)
class FitReport:
    """What one feedback round's fit did.

    Attributes:
        epochs: Epochs run (fewer than ``max_epochs`` when early stopping fired).
        loss: Mean Bradley-Terry loss per member over the last epoch.
        train_acc: Accuracy over the last epoch's minibatches, averaged over members
            (the early-stopping criterion).
        heldout_acc: Accuracy of the ensemble mean on held-out labels (NaN if none).
        gt_acc: Accuracy of the ensemble mean against ground-truth labels on the newest
            (at most 1024) stored pairs that have one (NaN if none).
        label_gt_acc: Accuracy of the stored labels (those with a preference) against the
            ground truth over every stored pair, i.e. how good the teacher / VLM is (NaN if
            no ground truth).
        num_train: Labels trained on.
        seconds: Wall time of the fit.
    """

    epochs: int
    loss: float
    train_acc: float
    heldout_acc: float
    gt_acc: float
    label_gt_acc: float
    num_train: int
    seconds: float


class RewardEnsemble(nn.Module):
    """``ensemble_size`` reward networks plus their optimizer (kept across rounds)."""

    def __init__(self, config: RewardModelConfig, seed: int = 0, device: torch.device | str = "cpu") -> None:
        """Build members with torch's RNG forked, so the caller's global state is untouched.

        Args:
            config: Architecture and fitting settings.
            seed: Seeds the members' initialisation.
            device: Where the members fit and predict (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
                Inputs stay numpy on the host and move there per batch (frames as uint8).
        """
        super().__init__()
        self.config = config
        self.device = as_device(device)
        # Initialised on the CPU whatever the device, so a seed gives the same members everywhere.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.members = nn.ModuleList(RewardNet(config) for _ in range(config.ensemble_size))
        self.members.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
        self.rounds = 0
        """Feedback rounds fit so far."""

    # ------------------------------------------------------------------ inference
    def _tensors(self, inputs: RewardInputs) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Flat model inputs: images ``(M, 3, S, S)`` and states ``(M, D)`` with M = N*T."""
        images = states = None
        if self.config.uses_frames:
            if inputs.frames is None:
                raise ValueError("this reward model reads frames, but the inputs carry none")
            # Frames travel as uint8 (a quarter of float32's bytes) and are scaled on the device.
            frames = to_device(torch.from_numpy(np.ascontiguousarray(inputs.frames)), self.device)
            images = preprocess_frames(frames.reshape(-1, *frames.shape[-3:]))
        if self.config.uses_states:
            if inputs.states is None:
                raise ValueError("this reward model reads state vectors, but the inputs carry none")
            s = to_device(torch.from_numpy(np.ascontiguousarray(inputs.states, dtype=np.float32)), self.device)
            states = s.reshape(-1, s.shape[-1])
        return images, states

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.config.compute_dtype == "bfloat16")

    @property
    def predict_batch_size(self) -> int:
        """Steps per forward pass when predicting: the config's on a CPU, large ones on a GPU."""
        if self.device.type == "cpu":
            return self.config.predict_batch_size
        return max(self.config.predict_batch_size, ACCELERATOR_PREDICT_BATCH)

    @torch.inference_mode()
    def member_rewards(self, inputs: RewardInputs, batch_size: int | None = None) -> np.ndarray:
        """Every member's reward for each step (or each step of each segment).

        Args:
            inputs: Frames ``(N, [T,] S, S, 3)`` uint8 and/or states ``(N, [T,] D)``.
            batch_size: Steps per forward pass (default ``predict_batch_size``).

        Returns:
            ``(E, N)`` or ``(E, N, T)`` float32 rewards.
        """
        if inputs.frames is not None:
            lead_shape = inputs.frames.shape[:-3]
        elif inputs.states is not None:
            lead_shape = inputs.states.shape[:-1]
        else:
            raise ValueError("reward inputs carry neither frames nor states")
        flat = RewardInputs(  # segments become steps; reshape is a view, nothing is copied
            None if inputs.frames is None else inputs.frames.reshape(-1, *inputs.frames.shape[-3:]),
            None if inputs.states is None else inputs.states.reshape(-1, inputs.states.shape[-1]),
        )
        batch_size = batch_size or self.predict_batch_size
        total = flat.size
        out = np.empty((len(self.members), total), dtype=np.float32)
        with self._autocast():
            for start in range(0, total, batch_size):
                images, states = self._tensors(flat.take(slice(start, start + batch_size)))
                rewards = torch.stack([member(images, states).float() for member in self.members])
                out[:, start:start + batch_size] = rewards.cpu().numpy()  # one copy back per batch
        return out.reshape(len(self.members), *lead_shape)

    def predict(self, inputs: RewardInputs, batch_size: int | None = None) -> np.ndarray:
        """The ensemble-mean reward, used to relabel the replay buffer.

        Args:
            inputs: Frames ``(N, S, S, 3)`` uint8 and/or states ``(N, D)`` float32.
            batch_size: Steps per forward pass (default ``predict_batch_size``).

        Returns:
            ``(N,)`` float32 rewards.
        """
        return self.member_rewards(inputs, batch_size).mean(axis=0)

    def segment_returns(self, inputs: RewardInputs, batch_size: int | None = None) -> np.ndarray:
        """Every member's return (sum of rewards) of each segment.

        Args:
            inputs: Frames ``(N, T, S, S, 3)`` and/or states ``(N, T, D)``.
            batch_size: Steps per forward pass.

        Returns:
            ``(E, N)`` float32 returns.
        """
        return self.member_rewards(inputs, batch_size).sum(axis=-1)

    # ------------------------------------------------------------------ fitting
    def _batch_returns(self, member: nn.Module, batch: PreferenceBatch,
                       rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # member: one RewardNet of self.members (a ModuleList, whose items type as plain Modules)
        """Returns ``(N,)`` of both sides, with one forward pass over both; frames randomly
        shifted by up to ``shift_pixels`` (drawn from ``rng``) when one is given."""
        n, t = len(batch.labels), self._segment_length(batch.first)
        both = RewardInputs(
            None if batch.first.frames is None else np.concatenate([batch.first.frames, batch.second.frames]),
            None if batch.first.states is None else np.concatenate([batch.first.states, batch.second.states]),
        )
        images, states = self._tensors(both)
        pixels = self.config.shift_pixels
        if images is not None and rng is not None and pixels:
            shifts = torch.from_numpy(rng.integers(0, 2 * pixels + 1, (len(images), 2))).to(self.device)
            images = random_shift(images, pixels, shifts)
        with self._autocast():
            rewards = member(images, states).float()
        returns = rewards.view(2, n, t).sum(dim=-1)
        return returns[0], returns[1]

    @staticmethod
    def _segment_length(inputs: RewardInputs) -> int:
        if inputs.frames is not None:
            return int(inputs.frames.shape[1])
        assert inputs.states is not None  # inputs carry frames, states or both
        return int(inputs.states.shape[1])

    def fit(self, dataset: PreferenceDataset, rng: np.random.Generator) -> FitReport:
        """One feedback round: up to ``max_epochs`` passes over the training labels.

        Each epoch every member sees all training labels once, in its own order, in
        minibatches of ``batch_size``. The round stops early once the epoch's train accuracy
        (averaged over members) reaches ``early_stop_acc``. Weights and Adam state carry
        over to the next round (warm start).

        Args:
            dataset: The labelled pairs.
            rng: Draws the minibatch orders.

        Returns:
            A ``FitReport``.
        """
        start_time = time.perf_counter()
        cfg = self.config
        train = dataset.train_indices()
        if cfg.no_preference == "drop":
            train = train[dataset.labels_at(train)[0] >= 0]
        epochs, loss_value, train_acc = 0, float("nan"), float("nan")
        if len(train):
            self.train()
            num_members = len(self.members)
            for epoch in range(cfg.max_epochs):
                orders = np.stack([rng.permutation(train) for _ in range(num_members)])
                loss_sum, correct_sum, counted_sum, steps = 0.0, np.zeros(num_members), 0, 0
                for start in range(0, len(train), cfg.batch_size):
                    chunk = orders[:, start:start + cfg.batch_size]
                    # One gather for all members, split afterwards: fewer numpy calls.
                    batch = dataset.batch(chunk.reshape(-1))
                    m = chunk.shape[1]
                    loss = torch.zeros((), device=self.device)
                    for e, member in enumerate(self.members):
                        part = _slice_batch(batch, slice(e * m, (e + 1) * m))
                        labels = to_device(torch.from_numpy(part.labels), self.device)
                        first, second = self._batch_returns(member, part, rng)
                        scale = cfg.preference_scale  # see RewardModelConfig: tanh-bounded rewards
                        loss = loss + bradley_terry_loss(first * scale, second * scale, labels)
                        correct, counted = correct_and_counted(first.detach(), second.detach(), labels)
                        correct_sum[e] += int(correct)
                    counted_sum += counted
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    loss_sum += float(loss.detach()) / num_members
                    steps += 1
                epochs = epoch + 1
                loss_value = loss_sum / steps
                train_acc = float(correct_sum.mean() / counted_sum) if counted_sum else float("nan")
                if train_acc >= cfg.early_stop_acc:
                    break
            self.eval()
        self.rounds += 1
        heldout_acc, gt_acc, label_gt_acc = self.evaluate(dataset)
        seconds = time.perf_counter() - start_time
        return FitReport(epochs, loss_value, train_acc, heldout_acc, gt_acc, label_gt_acc, len(train), seconds)

    def evaluate(self, dataset: PreferenceDataset, max_pairs: int = 1024) -> tuple[float, float, float]:
        """Accuracies of the ensemble mean on stored labels; cost bounded by ``max_pairs``.

        Args:
            dataset: The labelled pairs.
            max_pairs: The ensemble is scored on at most this many held-out pairs and this
                many of the newest pairs with ground truth, so a round's evaluation does not
                grow with the label count.

        Returns:
            ``(heldout_acc, gt_acc, label_gt_acc)``; see ``FitReport``. NaN where undefined.
        """
        heldout = dataset.heldout_indices()[-max_pairs:]
        heldout_acc = self.accuracy(dataset.batch(heldout)) if len(heldout) else float("nan")
        everything = dataset.newest_indices(len(dataset))
        labels, gt = dataset.labels_at(everything)
        known = gt >= 0
        gt_acc = label_gt_acc = float("nan")
        if known.any():
            with_gt = everything[known][-max_pairs:]
            batch = dataset.batch(with_gt)
            gt_acc = self.accuracy(batch._replace(labels=batch.gt_labels))
            answered = known & (labels >= 0)
            if answered.any():
                label_gt_acc = float((labels[answered] == gt[answered]).mean())
        return heldout_acc, gt_acc, label_gt_acc

    def accuracy(self, batch: PreferenceBatch) -> float:
        """Fraction of pairs with a preference that the ensemble-mean returns order correctly."""
        returns_first = self.segment_returns(batch.first).mean(axis=0)
        returns_second = self.segment_returns(batch.second).mean(axis=0)
        correct, counted = correct_and_counted(
            torch.from_numpy(returns_first), torch.from_numpy(returns_second), torch.from_numpy(batch.labels)
        )
        return float(correct) / counted if counted else float("nan")

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        """Everything needed to rebuild this ensemble exactly: config, weights, Adam state."""
        return {
            "format": _FORMAT_VERSION,
            "config": to_dict(self.config),
            "members": [member.state_dict() for member in self.members],
            "optimizer": self.optimizer.state_dict(),
            "rounds": self.rounds,
        }

    def save(self, path: str | Path) -> None:
        """Write the ensemble to one file, atomically (see ``load_reward_model``)."""
        with atomic_open(path, "wb") as handle:
            torch.save(self.state(), handle)

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> RewardEnsemble:
        """Rebuild an ensemble from ``state()`` output, saved on any device, onto ``device``."""
        version = state.get("format")
        if version not in (1, _FORMAT_VERSION):
            raise UserError(f"reward model format {version!r} is not supported (expected {_FORMAT_VERSION})")
        config = from_dict(RewardModelConfig, with_fields_saved_state_lacks(state["config"]))
        if version == 1 and config.uses_frames:
            raise UserError(
                "this image reward model was saved by an older rlvlmf (format 1) whose conv encoder could not "
                "see the frame's bottom and right edges; its weights do not fit the current encoder: train a new one"
            )
        ensemble = cls(config, device=device)
        for member, member_state in zip(ensemble.members, state["members"], strict=True):
            try:
                member.load_state_dict(member_state)
            except RuntimeError as err:  # a saved shape that this version's nets do not have
                raise UserError(
                    f"the saved reward model's weights do not fit this rlvlmf's reward nets ({err}); train a new one"
                ) from err
        ensemble.optimizer.load_state_dict(state["optimizer"])
        ensemble.rounds = int(state["rounds"])
        ensemble.eval()
        return ensemble


def load_reward_model(path: str | Path, device: torch.device | str = "cpu") -> RewardEnsemble:
    """Load an ensemble saved with ``RewardEnsemble.save`` (on any device) onto ``device``.

    Raises:
        UserError: The file is missing or is not a reward model of a known format.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise UserError(f"cannot read reward model {path}: {err}") from err
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a reward model saved by rlvlmf")
    return RewardEnsemble.from_state(state, device=device)


def _slice_batch(batch: PreferenceBatch, index: slice | np.ndarray) -> PreferenceBatch:
    return PreferenceBatch(batch.first.take(index), batch.second.take(index), batch.labels[index], batch.gt_labels[index])
