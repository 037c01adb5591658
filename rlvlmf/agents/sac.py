"""Soft actor-critic (Haarnoja et al. 2018) as PEBBLE configures it.

Double-Q critic with target networks, a tanh-squashed Gaussian actor with a bounded
log-std, and a learned temperature. Actions live in ``[-1, 1]^A``; envs rescale.

Speed on a CPU comes from doing fewer, larger tensor ops: the two Q networks are one
module whose layers are batched matrix products (one ``baddbmm`` per layer for both), the
critic's weights get no gradient during the actor step, and Adam uses its fused kernel.
Optionally the matrix products run in bfloat16 (``matmul_dtype``), ~3x faster on CPUs with
bfloat16 instructions, with float32 master weights. The agent lives on one device (``device=``);
on a GPU the same code runs there, with one host copy of the scalars per update.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlvlmf.agents.batch import TransitionBatch
from rlvlmf.errors import ConfigError
from rlvlmf.utils.device import as_device, autocast
from rlvlmf.utils.nn import mlp

_LOG_2PI = math.log(2 * math.pi)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters. Defaults are PEBBLE's for the DeepMind Control Suite.

    Attributes:
        hidden_sizes: Hidden layer widths of the actor and of each Q network.
        batch_size: Transitions per update (read by the driver when sampling).
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critic.
        alpha_lr: Adam learning rate of the log-temperature.
        init_temperature: Initial entropy temperature alpha.
        learnable_temperature: Whether alpha is learned towards the target entropy -|A|.
        discount: Discount factor gamma.
        tau: Polyak rate of the target critic.
        target_update_every: Critic updates between target-network updates.
        actor_update_every: Critic updates between actor (and temperature) updates.
        log_std_min: Lower bound of the actor's log standard deviation.
        log_std_max: Upper bound of the actor's log standard deviation.
        matmul_dtype: ``"float32"``, or ``"bfloat16"`` to run the forward passes under
            bfloat16 autocast on the agent's device, CPU or GPU (faster on CPUs with bfloat16
            units and on GPUs with bfloat16 tensor cores; not the reference setting). This is
            the run's SAC precision switch; the reward model has ``compute_dtype``.
    """

    hidden_sizes: tuple[int, ...] = (1024, 1024)
    batch_size: int = 1024
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    alpha_lr: float = 1e-4
    init_temperature: float = 0.1
    learnable_temperature: bool = True
    discount: float = 0.99
    tau: float = 0.005
    target_update_every: int = 2
    actor_update_every: int = 1
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    matmul_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f"sac hidden_sizes must be positive widths, got {self.hidden_sizes}")
        for name in ("batch_size", "target_update_every", "actor_update_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sac {name} must be >= 1, got {getattr(self, name)}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"sac {name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.discount <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"sac needs discount in [0, 1] and tau in (0, 1], got {self.discount}, {self.tau}")
        if not self.log_std_min < self.log_std_max:
            raise ConfigError(f"sac log_std_min must be < log_std_max, got {self.log_std_min}, {self.log_std_max}")
        if self.matmul_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"sac matmul_dtype must be 'float32' or 'bfloat16', got {self.matmul_dtype!r}")


DMC_PEBBLE = SACConfig()
"""PEBBLE's DeepMind Control settings: 2x1024 MLPs, batch 1024, lr 5e-4."""
METAWORLD = SACConfig(hidden_sizes=(256, 256, 256), batch_size=512, actor_lr=3e-4, critic_lr=3e-4)
"""PEBBLE / RL-VLM-F MetaWorld settings: 3x256 MLPs, batch 512, lr 3e-4."""


class DoubleQ(nn.Module):
    """Two Q networks evaluated together: each layer is one batched matrix product."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], copies: int = 2) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, 1]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(copies, a, b)) for a, b in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(copies, 1, b)) for b in sizes[1:])

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Orthogonal weights and zero biases, as PEBBLE initialises its MLPs."""
        with torch.no_grad():
            for weight, bias in zip(self.weights, self.biases):
                for member in weight:
                    nn.init.orthogonal_(member, generator=generator)
                bias.zero_()

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q values of both networks.

        Args:
            obs: ``(B, obs_dim)``.
            action: ``(B, action_dim)``.

        Returns:
            ``(copies, B, 1)``.
        """
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = F.relu(x)
        return x


class SAC:
    """The agent: actor, double-Q critic and its target, temperature, their optimizers.

    All randomness (initialisation, exploration noise) comes from the agent's own torch
    generator, whose state is part of ``state_dict``, so a resumed run acts identically.
    """

    def __init__(self, obs_dim: int, action_dim: int, config: SACConfig = DMC_PEBBLE, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        """Build the networks.

        Args:
            obs_dim: Observation length.
            action_dim: Action length (actions in ``[-1, 1]``).
            config: Hyper-parameters.
            seed: Seeds the agent's generator.
            device: Where the networks live and update (``auto``, ``cpu``, ``cuda``, ``cuda:N``);
                ``update`` expects its batch there (``ReplayBuffer.batch(..., device=)``).
        """
        if obs_dim < 1 or action_dim < 1:
            raise ConfigError(f"SAC needs obs_dim and action_dim >= 1, got {obs_dim}, {action_dim}")
        self.obs_dim, self.action_dim, self.config = obs_dim, action_dim, config
        self.device = as_device(device)
        # One generator on the device draws initial weights and exploration noise, so the CPU
        # stream is what it always was and a GPU draws its noise without a host round trip.
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.actor = mlp(obs_dim, config.hidden_sizes, 2 * action_dim).to(self.device)
        with torch.no_grad():
            for module in self.actor:
                if isinstance(module, nn.Linear):
                    nn.init.orthogonal_(module.weight, generator=self.generator)
                    module.bias.zero_()
        self.critic = DoubleQ(obs_dim + action_dim, config.hidden_sizes).to(self.device)
        self.critic_target = DoubleQ(obs_dim + action_dim, config.hidden_sizes).to(self.device)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, fused=True)
        self.reset_critic()
        self.updates = 0
        """Critic updates done so far (drives the actor and target schedules)."""

    # ------------------------------------------------------------------ acting
    @property
    def alpha(self) -> torch.Tensor:
        """The entropy temperature (a 0-d tensor)."""
        return self.log_alpha.exp()

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.config.matmul_dtype == "bfloat16")

    def _policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std ``(B, A)`` of the pre-squash Gaussian."""
        with self._autocast():
            mu, raw_log_std = self.actor(obs).float().chunk(2, dim=-1)
        low, high = self.config.log_std_min, self.config.log_std_max
        log_std = low + 0.5 * (high - low) * (torch.tanh(raw_log_std) + 1)
        return mu, log_std

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A squashed sample ``(B, A)`` and its log-probability ``(B, 1)``."""
        mu, log_std = self._policy(obs)
        noise = torch.randn(mu.shape, generator=self.generator, device=mu.device)
        pre_tanh = mu + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        # log(1 - tanh(u)^2), written stably: 2 * (log 2 - u - softplus(-2u)).
        log_det = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * _LOG_2PI - log_det).sum(-1, keepdim=True)
        return action, log_prob

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation ``(obs_dim,)`` or a batch ``(N, obs_dim)``.

        Args:
            obs: Observation(s).
            deterministic: Take the squashed mean (evaluation) instead of sampling.

        Returns:
            float32 action(s) in ``[-1, 1]``, ``(A,)`` or ``(N, A)``.
        """
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).to(self.device)
        single = x.ndim == 1
        x = x.unsqueeze(0) if single else x
        if deterministic:
            action = torch.tanh(self._policy(x)[0])
        else:
            action = self._sample(x)[0]
        out = action.cpu().numpy()
        return out[0] if single else out

    # ------------------------------------------------------------------ learning
    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One SAC step: critic always; actor and temperature, target net on their schedules.

        Args:
            batch: Float32 tensors on the agent's device: ``obs (B, O)``, ``action (B, A)``,
                ``reward (B, 1)``, ``next_obs (B, O)``, ``not_done (B, 1)``.

        Returns:
            Scalars: ``critic_loss``, ``q``, and on actor steps ``actor_loss``, ``alpha_loss``,
            ``alpha``, ``entropy``.
        """
        cfg = self.config
        metrics = self._update_critic(batch)
        if self.updates % cfg.actor_update_every == 0:
            metrics.update(self._update_actor_and_alpha(batch.obs))
        if self.updates % cfg.target_update_every == 0:
            with torch.no_grad():
                for target, source in zip(self.critic_target.parameters(), self.critic.parameters()):
                    target.lerp_(source, cfg.tau)
        self.updates += 1
        # One device-to-host copy for all scalars: on a GPU each .item() would wait for the queue.
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def _update_critic(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            next_action, next_log_prob = self._sample(batch.next_obs)
            with self._autocast():
                target_q = self.critic_target(batch.next_obs, next_action).float().amin(dim=0)
            target_v = target_q - self.alpha * next_log_prob
            target = batch.reward + batch.not_done * self.config.discount * target_v
        with self._autocast():
            q = self.critic(batch.obs, batch.action).float()
        # Sum of both networks' mean squared errors.
        critic_loss = F.mse_loss(q, target.unsqueeze(0).expand_as(q), reduction="sum") / len(target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": critic_loss.detach(), "q": q.detach().mean()}

    def _update_actor_and_alpha(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        action, log_prob = self._sample(obs)
        self.critic.requires_grad_(False)  # gradients flow through Q to the action only
        try:
            with self._autocast():
                q = self.critic(obs, action).float().amin(dim=0)
        finally:
            self.critic.requires_grad_(True)
        alpha = self.alpha.detach()
        actor_loss = (alpha * log_prob - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        metrics = {"actor_loss": actor_loss.detach(), "entropy": -log_prob.detach().mean(), "alpha": alpha}
        if self.config.learnable_temperature:
            alpha_loss = (self.alpha * (-log_prob.detach() - self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics["alpha_loss"] = alpha_loss.detach()
        return metrics

    def reset_critic(self) -> None:
        """Fresh critic, target and critic optimizer (PEBBLE does this after the first feedback)."""
        self.critic.reset_parameters(self.generator)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.config.critic_lr, fused=True)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Networks, optimizers, temperature, generator state and counters (for ``torch.save``)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore everything ``state_dict`` saved; the agent must have the same sizes.

        The state may come from another device (load it with ``map_location="cpu"``): weights
        and optimizer moments are copied onto this agent's device.
        """
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        generator_state = state["generator"].cpu()
        try:
            self.generator.set_state(generator_state)
        except RuntimeError:
            # Saved on another kind of device (a CPU generator's state does not fit a CUDA one):
            # that noise stream cannot continue here, so derive a new seed from it, reproducibly.
            digest = hashlib.sha256(generator_state.numpy().tobytes()).digest()
            self.generator.manual_seed(int.from_bytes(digest[:8], "little"))
            logger.warning("SAC state was saved on another kind of device; exploration noise continues from a new seed")
        self.updates = int(state["updates"])
