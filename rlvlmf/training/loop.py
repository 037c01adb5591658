"""The PEBBLE loop with VLM feedback (RL-VLM-F), and its ground-truth, CLIP and code baselines.

One run, in the paper's order:

1. ``seed_steps`` of random actions fill the replay buffer.
2. ``unsup_steps`` of SAC on a k-NN state-entropy reward explore (PEBBLE pre-training).
3. Every ``num_interact`` steps until ``max_feedback`` queries: draw pairs of recent frames,
   label them through the labeler and its store, fit the reward ensemble, relabel the whole
   replay buffer (and, after the first round, reset the critic). With ``feedback_lag`` the
   labels are asked while SAC goes on training, and the fit lands that many steps later.
4. SAC trains on the learned reward throughout.

``EnvMode`` (``--reward env``) skips 2-3 and trains on the env's reward; ``ClipMode`` scores
every frame with a CLIP-family model; ``CodeMode`` runs verified generated reward functions in a
sandbox.

Checkpoints are taken at episode ends and hold everything a bit-for-bit continuation needs:
agent, optimizers, buffer, preference data, ensemble, query window (or pool), RNG states and counters.
A checkpoint taken mid-episode (SIGINT/SIGTERM, or the wall-clock timer) also keeps the
episode's reset seed; resuming resets the env with it and replays the episode's actions from
the buffer, so no env state needs saving there either. Every VLM answer is in the query
store before it is used, so a resumed run reads paid answers back instead of asking again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rlvlmf.agents.sac import SAC
from rlvlmf.config import parse_options
from rlvlmf.envs import make_env, sim_state
from rlvlmf.envs.custom import box_spaces
from rlvlmf.envs.frames import resize_frame
from rlvlmf.errors import UserError
from rlvlmf.feedback.base import Label
from rlvlmf.feedback.labeler import Labeler
from rlvlmf.feedback.registry import make_backend
from rlvlmf.feedback.store import DEFAULT_STORE_DIR, QueryStore
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.reward.sampling import SegmentPairs, select_queries
from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.builder import load_config, reward_state_dim, save_config
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.config import EnvMode, TrainConfig
from rlvlmf.training.eta import PhaseTimes, evals_left, format_duration, rounds_left
from rlvlmf.training.evaluate import evaluate_policy, evaluation_seed
from rlvlmf.training.knn_entropy import KNNStateEntropy
from rlvlmf.training.metrics import MetricsLogger
from rlvlmf.training.pending_round import PendingRound, RoundLearner
from rlvlmf.training.query_pool import QueryPool
from rlvlmf.training.reward_sources import FrameRewardSource, make_frame_reward_source
from rlvlmf.training.run_files import RunFiles
from rlvlmf.training.state_window import StateWindow
from rlvlmf.training.stop import StopRequest
from rlvlmf.utils.atomic import atomic_write_text
from rlvlmf.utils.device import resolve_device
from rlvlmf.utils.lock import ProcessLock

logger = logging.getLogger(__name__)

# tqdm's own ETA extrapolates the recent step rate, which feedback rounds and evaluations
# make wrong; the postfix carries ours (see rlvlmf.training.eta).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"


@dataclass
class Counters:
    """Where a run stands; saved with each checkpoint."""

    step: int = 0
    episode: int = 0
    updates: int = 0
    rounds: int = 0
    queries: int = 0
    labels: int = 0
    last_checkpoint: int = 0
    next_eval: int = 0
    next_feedback: int = 0
    wall_s: float = 0.0


@dataclass
class RunSummary:
    """What ``train`` returns and writes as ``summary.json`` when the run is complete."""

    run_dir: str
    steps: int
    episodes: int
    queries: int
    labels: int
    cost_usd: float
    eval_return_mean: float | None
    eval_success_rate: float | None
    label_accuracy: float | None
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Holds the state of one run; ``run()`` is the PEBBLE loop."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, store_dir: str | Path = DEFAULT_STORE_DIR,
                 export_dir: str | Path | None = "reward_models", progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.export_dir = None if export_dir is None else Path(export_dir)
        self.progress = progress
        torch.set_num_threads(config.threads)

        self.env = make_env(config.env_preset)
        self.eval_env = make_env(config.env_preset)
        self.task = self.env.get_wrapper_attr("task")
        self.preset = self.env.get_wrapper_attr("preset")
        obs_space, action_space = box_spaces(self.env)
        obs_dim = int(np.prod(obs_space.shape))
        action_dim = int(np.prod(action_space.shape))
        self.action_low = action_space.low.astype(np.float32)
        self.action_high = action_space.high.astype(np.float32)

        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.device = resolve_device(config.device)
        self.agent = SAC(obs_dim, action_dim, config.sac, seed=config.seed, device=self.device)

        reward_cfg = config.reward_model
        self.state_kind = reward_cfg.state_kind if reward_cfg.uses_states else None
        keeps_frames = config.learns_reward and reward_cfg.uses_frames
        self.buffer = ReplayBuffer(config.steps, obs_dim, action_dim, reward_cfg.frame_size if keeps_frames else None)
        self.counters = Counters(next_eval=config.eval_every, next_feedback=config.seed_steps + config.unsup_steps)

        self.ensemble: RewardEnsemble | None = None
        self.preferences: PreferenceDataset | None = None
        self.pool: QueryPool | None = None
        self.window: StateWindow | None = None
        self.labeler: Labeler | None = None
        self.rounds: RoundLearner | None = None
        self.store: QueryStore | None = None
        self.entropy: KNNStateEntropy | None = None
        self.frame_reward: FrameRewardSource | None = None
        if config.learns_reward:
            if reward_cfg.uses_states and reward_cfg.state_dim != reward_state_dim(reward_cfg.state_kind, obs_dim, action_dim):
                raise ValueError("reward_model.state_dim must match the env; build configs with resolve_config()")
            self.ensemble = RewardEnsemble(reward_cfg, seed=config.seed, device=self.device)
            self.preferences = PreferenceDataset(reward_cfg.capacity, reward_cfg.heldout_fraction)
            # Pairs come from the last episodes, drawn again from saved simulator states; an env
            # that cannot restore its state keeps a reservoir of frames of the recent steps instead.
            if config.query_window_episodes > 0 and sim_state.can_restore(self.env):
                self.window = StateWindow(config.query_window_episodes)
            else:
                self.pool = QueryPool(config.query_pool_size)
            # The backend first: a bad spec, option or key must not leave even a new query store behind.
            backend = make_backend(config.backend, rng=config.seed, **parse_options(config.backend_options))
            backend.check()  # e.g. a local model's files: now, not at the first feedback round
            self.store = QueryStore(store_dir)
            # A round labelled while training goes on must not draw a second bar through the run's.
            labeler_config = dataclasses.replace(config.labeler, progress=False) if config.feedback_lag else config.labeler
            self.labeler = Labeler(backend, self.task, self.store, labeler_config, run_id=self.run_dir.name,
                                   rng=np.random.default_rng(config.seed + 1))
            self.rounds = RoundLearner(self.labeler, self.buffer, self.state_kind)
            if config.unsup_steps > 0:
                self.entropy = KNNStateEntropy(k=config.knn_k, device=self.device)
        elif not isinstance(config.reward, EnvMode):
            self.frame_reward = make_frame_reward_source(config, self.task, store_dir)

        self.files = RunFiles(self.run_dir)
        self.checkpoints = CheckpointManager(self.files.checkpoints)
        self.metrics: MetricsLogger | None = None
        self._episode_return = 0.0
        self._episode_learned = 0.0
        self._last_fit: dict[str, float] = {}
        self._last_losses: dict[str, float] = {}
        self.stop = StopRequest()
        """SIGINT/SIGTERM during ``run()`` ask it to checkpoint after the current step and return."""
        self.times = PhaseTimes()
        self._episode_seed_value: int | None = None
        self._render_env_ready = False
        self._open_episode: dict[str, Any] | None = None  # set by a mid-episode checkpoint's load
        self._pending: PendingRound | None = None  # a feedback round whose labels are on their way
        self._last_checkpoint_time = time.monotonic()

    # ================================================================== the loop
    def run(self, *, stop_after: int | None = None) -> RunSummary:
        """Train until ``config.steps`` (or, for tests, until ``stop_after`` steps)."""
        config, counters = self.config, self.counters
        self.metrics = MetricsLogger(self.run_dir, resume_step=counters.step if counters.step else None)
        obs = self._start_episode()
        if self._pending is not None and not self._pending.sent:  # a round a checkpoint left in flight
            self._pending.started = time.perf_counter()
            self._send_pending()
        started = time.perf_counter() - counters.wall_s
        self._last_checkpoint_time = time.monotonic()
        # disable=None: a bar only on a terminal; logs and sweeps get the log lines alone.
        bar = tqdm(total=config.steps, initial=counters.step, disable=None if self.progress else True, unit="step",
                   dynamic_ncols=True, bar_format=BAR_FORMAT)
        scope = contextlib.ExitStack()
        scope.enter_context(self.stop)
        if not bar.disable:
            scope.enter_context(logging_redirect_tqdm())  # log lines print above a live bar, not through it
        try:
            while counters.step < config.steps:
                if stop_after is not None and counters.step >= stop_after:
                    break
                if self.stop.requested:
                    # The step before has finished; keep everything up to it.
                    counters.wall_s = time.perf_counter() - started
                    self._save_checkpoint(open_episode=True)
                    break
                step_started, slow_before = time.perf_counter(), self.times.slow_s
                # ---------------------------------------------------------- act
                if counters.step < config.seed_steps:
                    action = self.rng.uniform(self.action_low, self.action_high).astype(np.float32)
                else:
                    action = self.agent.act(obs)
                next_obs, env_reward, terminated, truncated, info = self.env.step(action)
                # Code as Reward may add a success signal only: never the env's own (dense) reward.
                sparse = float(info["success"]) if "success" in info else 0.0
                self._store_transition(obs, action, float(env_reward), next_obs, terminated, truncated, sparse)
                obs = next_obs
                counters.step += 1
                bar.update(1)

                # ---------------------------------------------------------- feedback round
                self._feedback_step()

                # ---------------------------------------------------------- SAC update
                if counters.step >= config.seed_steps and counters.step % config.update_every == 0:
                    self._sac_update()

                # ---------------------------------------------------------- episode end
                # The last step ends the run's last episode too, so it is evaluated and saved.
                if terminated or truncated or counters.step >= config.steps:
                    self._end_episode(info, bar)
                    if counters.step >= counters.next_eval or counters.step >= config.steps:
                        self._evaluate()
                    counters.wall_s = time.perf_counter() - started
                    if (counters.step - counters.last_checkpoint >= config.checkpoint_every
                            or counters.step >= config.steps or self._checkpoint_timer_due()):
                        self._save_checkpoint()
                    obs = self._start_episode()
                elif self._checkpoint_timer_due():
                    counters.wall_s = time.perf_counter() - started
                    self._save_checkpoint(open_episode=True)
                self.times.add_step(time.perf_counter() - step_started - (self.times.slow_s - slow_before))
        finally:
            scope.close()
            bar.close()
            counters.wall_s = time.perf_counter() - started
            self.metrics.close()
        if counters.step < config.steps:
            return self._summary(complete=False)
        summary = self._summary(complete=True)
        atomic_write_text(self.files.summary, json.dumps(summary.__dict__, indent=2))
        self._export_reward_model()
        return summary

    # ================================================================== stages
    def _store_transition(self, obs: np.ndarray, action: np.ndarray, env_reward: float, next_obs: np.ndarray,
                          terminated: bool, truncated: bool, sparse: float) -> None:
        """Add the step to the buffer; render only the frames that something will read."""
        config = self.config
        in_pool = self.pool is not None and self.pool.offer(self.rng)
        needs_small = self.buffer.frames is not None or (self.frame_reward is not None and self.frame_reward.needs_frames)
        frame = np.asarray(self.env.render()) if (in_pool or needs_small) else None
        small = None
        if self.buffer.frames is not None:
            assert frame is not None  # needs_small: drawn above
            small = resize_frame(frame, config.reward_model.frame_size)
        slot = self.buffer.add(obs, action, env_reward, next_obs, terminated, truncated, small)
        if in_pool and self.pool is not None:
            assert frame is not None  # in_pool: drawn above
            self.pool.put(slot, frame)
        if self.window is not None:
            first_step = not self.window.in_episode
            self.window.add(self.buffer.total_added - 1, sim_state.step_state(self.env),
                            sim_state.episode_state(self.env) if first_step else None)
            if terminated or truncated:  # the buffer's episode ends too
                self.window.end_episode()
        learned = 0.0  # until the first fit; relabelling then covers this slot too
        if self.ensemble is not None and self.ensemble.rounds > 0:
            learned = float(self.ensemble.predict(self.buffer.reward_inputs(np.array([slot]), self.state_kind))[0])
        elif self.frame_reward is not None:
            learned = float(self.frame_reward(None if frame is None else frame[None], next_obs[None], np.array([sparse]))[0])
        self.buffer.learned_reward[slot] = learned
        self._episode_return += env_reward
        self._episode_learned += learned

    def _feedback_step(self) -> None:
        """Start a round when one is due; fit the one in flight when its step has come.

        With a feedback lag, a round's labels are asked while SAC goes on training; its fit
        lands at a fixed step, so the run's result does not depend on the VLM's speed.
        """
        started = time.perf_counter()
        if self._pending is None:
            if not self._feedback_due():
                return
            self._start_round()
        elif self.counters.step < self._pending.apply_at:
            return  # labels still on their way; training goes on
        finished = self._pending is not None and self.counters.step >= self._pending.apply_at  # at once when no lag
        if finished:
            self._finish_round()
        self.times.add_round(time.perf_counter() - started, finished=finished)

    def _feedback_due(self) -> bool:
        c, cfg = self.counters, self.config
        candidates = self.window if self.window is not None else self.pool
        return (self.labeler is not None and self._pending is None and c.step >= c.next_feedback and c.queries < cfg.max_feedback
                and candidates is not None and len(candidates) >= 2)

    def _start_round(self) -> None:
        """Sample pairs and send them to the labeler (store first); ``_finish_round`` learns from the labels."""
        config, counters = self.config, self.counters
        assert self.labeler is not None  # rounds are due only with a labeler
        started = time.perf_counter()
        num = min(config.reward_batch, config.max_feedback - counters.queries)
        pairs = self._sample_pairs(num)
        counters.next_feedback = counters.step + config.num_interact
        if len(pairs) == 0:
            return
        frames = self._query_frames(pairs)
        if self.pool is not None:  # the round's frames are taken; the next round draws from later steps
            self.pool.clear()
        # A round learned in the background draws from its own generator, seeded here, so the
        # loop's draws in between do not change it (and a blocking run's stream is as before).
        seed = int(self.rng.integers(2**63)) if config.feedback_lag else None
        self._pending = PendingRound(pairs, frames, min(counters.step + config.feedback_lag, config.steps),
                                     dataclasses.asdict(self.labeler.stats), seed, started=started)
        self._send_pending()
        self._pending.loop_s = time.perf_counter() - started

    def _send_pending(self) -> None:
        assert self._pending is not None and self.rounds is not None  # called with a round to send
        assert self.preferences is not None and self.ensemble is not None  # they come with the labeler
        self.rounds.send(self._pending, self.preferences, self.ensemble)

    def _finish_round(self) -> None:
        """Take the round's fit (waiting for it if late; blocking: label and fit now), then relabel the buffer."""
        config, counters = self.config, self.counters
        # Rounds are due only with a labeler, which comes with the ensemble and its dataset.
        assert self.rounds is not None and self.preferences is not None and self.ensemble is not None
        assert self.labeler is not None
        pending, self._pending = self._pending, None
        assert pending is not None and pending.sent  # a round was started and sent
        finish_started = time.perf_counter()
        if pending.outcome is not None:
            outcome = pending.outcome.result()
            waited = time.perf_counter() - finish_started  # for a background round that is late
        else:
            outcome = self.rounds.learn(pending, self.preferences, self.ensemble, self.rng)
            waited = outcome.label_wait_s
        self.preferences, self.ensemble = outcome.preferences, outcome.ensemble
        results, keep, report = outcome.results, outcome.kept, outcome.report
        if outcome.budget_exhausted:
            counters.next_feedback = config.steps + 1
        counters.queries += len(pending.pairs)
        counters.labels += int(keep.sum())
        if report is None:
            return
        self.buffer.relabel(self.ensemble.predict, self.state_kind, batch_size=self.ensemble.predict_batch_size)
        if counters.rounds == 0 and config.reset_critic:
            self.agent.reset_critic()
        counters.rounds += 1
        stats = self.labeler.stats
        answered = [r for r in results if not r.failed]
        with_gt = [r for r in answered if r.gt_label is not None and r.label is not Label.NONE]
        self._last_fit = {
            "feedback/queries": counters.queries,
            "feedback/labels": counters.labels,
            "feedback/round_queries": len(results),
            "feedback/round_labels": int(keep.sum()),
            "feedback/abstains": sum(not r.usable for r in answered),
            "feedback/failed": len(results) - len(answered),
            "feedback/from_store": sum(r.from_store for r in results),
            "feedback/cost_usd": stats.cost_usd,
            "feedback/round_label_accuracy": (
                float(np.mean([r.label == r.gt_label for r in with_gt])) if with_gt else float("nan")
            ),
            "reward/epochs": report.epochs,
            "reward/loss": report.loss,
            "reward/train_acc": report.train_acc,
            "reward/heldout_acc": report.heldout_acc,
            "reward/gt_acc": report.gt_acc,
            "reward/label_gt_acc": report.label_gt_acc,
            "reward/fit_seconds": report.seconds,
            # Wall time from the round's start to its fit, and the part of it training stood still
            # (blocking: all of it; with a lag: sampling, waiting for a late fit, relabelling), and
            # of that the wait (blocking: for the labels; with a lag: for a late background round).
            "feedback/round_seconds": time.perf_counter() - pending.started,
            "feedback/stall_seconds": pending.loop_s + time.perf_counter() - finish_started,
            "feedback/wait_seconds": waited,
        }
        self._log_metrics(self._last_fit)
        self._log_round()

    def _log_metrics(self, row: dict[str, float]) -> None:
        assert self.metrics is not None, "run() opens the metrics log before the first step"
        self.metrics.log(self.counters.step, row)

    def _log_round(self) -> None:
        """One line per feedback round, for logs without a progress bar (and sweeps)."""
        fit = self._last_fit
        accuracy = fit["feedback/round_label_accuracy"]
        logger.info(
            "feedback round %d at step %d: %d queries, %d labels (%d so far), %d abstains, %d failed, "
            "label accuracy %s; reward fit loss %.3f, accuracy %.2f; %.1f s; $%.2f spent; eta %s",
            self.counters.rounds, self.counters.step, fit["feedback/round_queries"], fit["feedback/round_labels"],
            self.counters.labels, fit["feedback/abstains"], fit["feedback/failed"],
            "n/a" if np.isnan(accuracy) else f"{accuracy:.2f}", fit["reward/loss"], fit["reward/train_acc"],
            fit["feedback/round_seconds"], fit["feedback/cost_usd"], format_duration(self._eta()),
        )

    def _sample_pairs(self, num: int) -> SegmentPairs:
        """Pairs of segments from the query window (or pool), chosen by the sampling method."""
        T = self.config.segment_length
        buf = self.buffer
        if self.window is not None:
            candidates = self.window.episode_slots(buf.capacity, buf.total_added)
        else:
            assert self.pool is not None  # no query window: the pool keeps the candidates
            _, slots = self.pool.valid()
            # A pooled step makes a candidate segment if its episode has T steps up to it.
            ok = buf.step[slots] >= T - 1
            candidates = [((s - T + 1 + np.arange(T)) % buf.capacity) for s in slots[ok]]
        if sum(max(len(c) - T + 1, 0) for c in candidates) < 2:
            return SegmentPairs(np.zeros((0, T), np.int64), np.zeros((0, T), np.int64))
        member_returns = None
        ensemble = self.ensemble
        # An untrained ensemble's disagreement is noise: the first round is uniform.
        if self.config.sampling != "uniform" and ensemble is not None and ensemble.rounds > 0:
            def member_returns(pairs: SegmentPairs) -> tuple[np.ndarray, np.ndarray]:
                first = ensemble.member_rewards(buf.reward_inputs(pairs.first, self.state_kind)).sum(-1)
                second = ensemble.member_rewards(buf.reward_inputs(pairs.second, self.state_kind)).sum(-1)
                return first, second
        method = self.config.sampling if member_returns is not None else "uniform"
        pairs = select_queries(method, candidates, num, T, self.rng, member_returns=member_returns, frames=buf.frames)
        # Candidates are drawn with replacement; asking the same pair twice buys nothing.
        ends = np.sort(np.stack([pairs.first[:, -1], pairs.second[:, -1]], axis=1), axis=1)
        _, first_seen = np.unique(ends, axis=0, return_index=True)
        return pairs.take(np.sort(first_seen))

    def _query_frames(self, pairs: SegmentPairs) -> tuple[np.ndarray, np.ndarray]:
        """The VLM-size frames of the last step of each side, drawn again or from the query pool."""
        if self.window is not None:
            frames = self._render_past(np.concatenate([pairs.first[:, -1], pairs.second[:, -1]]))
            return frames[: len(pairs)], frames[len(pairs):]
        assert self.pool is not None  # no query window: the pool keeps the frames
        positions, slots = self.pool.valid()
        pooled = self.pool.frames
        assert pooled is not None  # pairs were drawn from pooled steps, so frames went in
        where = dict(zip(slots.tolist(), positions.tolist()))
        first = pooled[[where[int(s)] for s in pairs.first[:, -1]]]
        second = pooled[[where[int(s)] for s in pairs.second[:, -1]]]
        return first, second

    def _render_past(self, slots: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` frames of past steps, drawn from their saved simulator states.

        The evaluation env draws them: the training env is mid-episode, and every evaluation
        episode starts with a seeded reset, so what is restored here never reaches a result.
        """
        if not self._render_env_ready:
            self.eval_env.reset(seed=0)  # wrappers refuse to render before the first reset
            self._render_env_ready = True
        assert self.window is not None  # past steps are drawn again only from the query window
        frames: list[np.ndarray] = []
        for episode, step in self.window.states_of(slots, self.buffer.capacity, self.buffer.total_added):
            sim_state.restore(self.eval_env, episode, step)
            frames.append(np.asarray(self.eval_env.render()))
        return np.stack(frames)

    def _sac_update(self) -> None:
        config, counters = self.config, self.counters
        entropy = self.entropy if counters.step < config.seed_steps + config.unsup_steps else None
        slots = self.buffer.sample_slots(config.sac.batch_size, self.rng)
        # On a GPU the batch goes over in one pinned copy; on the CPU the plain path is kept.
        device = None if self.device.type == "cpu" else self.device
        batch = self.buffer.batch(slots, reward="env" if isinstance(config.reward, EnvMode) else "learned", device=device)
        if entropy is not None:  # unsupervised pre-training: the state-entropy bonus is the reward
            batch = batch._replace(reward=entropy.reward(self.buffer.observations, slots, self.rng))
        self._last_losses = self.agent.update(batch)
        counters.updates += 1

    def _end_episode(self, info: dict[str, Any], bar: tqdm) -> None:
        counters = self.counters
        counters.episode += 1
        row = {"train/episode_return": self._episode_return, "train/learned_return": self._episode_learned,
               "train/episode": counters.episode}
        if "success" in info:
            row["train/success"] = float(info["success"])
        row.update({f"sac/{k}": v for k, v in self._last_losses.items()})  # the episode's last update
        self._log_metrics(row)
        postfix = {"return": f"{self._episode_return:.1f}", "labels": counters.labels}
        if self._last_fit:
            postfix["label_acc"] = f"{self._last_fit['reward/label_gt_acc']:.2f}"
        postfix["eta"] = format_duration(self._eta())
        bar.set_postfix(postfix, refresh=False)
        self._episode_return = self._episode_learned = 0.0

    def _evaluate(self) -> None:
        config, counters = self.config, self.counters
        started = time.perf_counter()
        video = self.files.eval_video(counters.step) if config.eval_video else None
        result = evaluate_policy(self.eval_env, lambda o: self.agent.act(o, deterministic=True), config.eval_episodes,
                                 seed=evaluation_seed(config.seed), video_path=video)
        with self.files.evals.open("a") as handle:
            handle.write(json.dumps({"step": counters.step, **result.to_dict()}) + "\n")
        row = {"eval/return_mean": result.return_mean, "eval/return_std": float(np.std(result.returns))}
        if result.success_rate is not None:
            row["eval/success_rate"] = result.success_rate
        self._log_metrics(row)
        while counters.next_eval <= counters.step:
            counters.next_eval += config.eval_every if config.eval_every else config.steps
        self._last_eval = result
        self.times.add_eval(time.perf_counter() - started)
        success = "" if result.success_rate is None else f", success {result.success_rate:.2f}"
        logger.info("evaluation at step %d: return %.1f +- %.1f over %d episodes%s; eta %s", counters.step,
                    result.return_mean, row["eval/return_std"], len(result.returns), success,
                    format_duration(self._eta()))

    def _eta(self) -> float | None:
        """Seconds left in the run (see rlvlmf.training.eta)."""
        config, c = self.config, self.counters
        rounds = rounds_left(c.step, config.steps, c.next_feedback, config.num_interact, c.queries,
                             config.max_feedback, config.reward_batch) if self.labeler is not None else 0
        return self.times.eta(config.steps - c.step, rounds, evals_left(c.step, config.steps, c.next_eval,
                                                                         config.eval_every))

    def _start_episode(self) -> np.ndarray:
        """Reset the env for a new episode, or rebuild the one a mid-episode checkpoint left open."""
        open_episode, self._open_episode = self._open_episode, None
        if open_episode is None:
            self._episode_seed_value = self._episode_seed()
            obs, _ = self.env.reset(seed=self._episode_seed_value)
            return obs
        # The env's state was not saved: the same reset seed and the episode's actions (kept in
        # the buffer) bring it back, as the envs are deterministic given both.
        self._episode_seed_value = int(open_episode["seed"])
        obs, _ = self.env.reset(seed=self._episode_seed_value)
        slots = self.buffer.open_episode_slots()
        for slot in slots:
            obs, *_ = self.env.step(self.buffer.action[slot])
        if len(slots) and not np.array_equal(np.asarray(obs, np.float32).reshape(-1), self.buffer.next_obs[slots[-1]]):
            logger.warning("replaying the open episode did not reproduce its last observation (the env is not "
                           "deterministic); training goes on from the replayed state")
        self._episode_return = float(open_episode["return"])
        self._episode_learned = float(open_episode["learned"])
        return obs

    def _checkpoint_timer_due(self) -> bool:
        minutes = self.config.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self._last_checkpoint_time >= 60 * minutes

    def _episode_seed(self) -> int:
        return int(self.rng.integers(0, 2**31 - 1))

    # ================================================================== persistence
    def _save_checkpoint(self, *, open_episode: bool = False) -> None:
        """Save the run; ``open_episode``: between an episode's reset and its end (see the module doc)."""
        self.counters.last_checkpoint = self.counters.step
        self._last_checkpoint_time = time.monotonic()
        arrays: dict[str, np.ndarray] = {}  # buffer, pool, window and preferences go to segments (only what is new)
        pending: dict[str, Any] | None = None
        if self._pending is not None:  # resuming sends its queries again; the store answers what was paid for
            arrays, pending = self._pending.checkpoint()
        torch_state = {
            "agent": self.agent.state_dict(),
            "ensemble": self.ensemble.state() if self.ensemble is not None else None,
            "entropy": self.entropy.state_dict() if self.entropy is not None else None,
            "torch_rng": torch.get_rng_state(),
        }
        meta = {
            "counters": self.counters.__dict__,
            "rng": self.rng.bit_generator.state,
            # A round in flight updates the labeler's counters from its thread: keep those from before it.
            "labeler_stats": (pending["labeler_stats"] if pending is not None
                              else dataclasses.asdict(self.labeler.stats) if self.labeler is not None else None),
            "pending_round": pending,
            "last_fit": self._last_fit,
            "last_losses": self._last_losses,
            "open_episode": {"seed": self._episode_seed_value, "return": self._episode_return,
                             "learned": self._episode_learned} if open_episode else None,
            # A killed process may append evaluations after this checkpoint; resuming from it
            # cuts eval.jsonl back to this many lines.
            "eval_lines": self._eval_lines(),
        }
        self.checkpoints.save(self.counters.step, arrays=arrays, torch_state=torch_state, meta=meta,
                              preferences=self.preferences, buffer=self.buffer, pool=self.pool, window=self.window)

    def _eval_lines(self) -> int:
        path = self.files.evals
        return len(path.read_text().splitlines()) if path.exists() else 0

    def load_checkpoint(self, name: str | None = None) -> None:
        """Restore the state saved by the latest (or the named) checkpoint."""
        loaded = self.checkpoints.load(name, buffer=self.buffer, pool=self.pool, window=self.window)
        self.agent.load_state_dict(loaded.torch_state["agent"])
        if self.ensemble is not None:
            self.ensemble = RewardEnsemble.from_state(loaded.torch_state["ensemble"], device=self.device)
            self.preferences = loaded.preferences
        if self.entropy is not None and loaded.torch_state.get("entropy") is not None:
            self.entropy.load_state_dict(loaded.torch_state["entropy"])
        torch.set_rng_state(loaded.torch_state["torch_rng"])
        meta = loaded.meta
        self.counters = Counters(**meta["counters"])
        self.rng.bit_generator.state = meta["rng"]
        if self.labeler is not None and meta.get("labeler_stats"):
            for key, value in meta["labeler_stats"].items():
                setattr(self.labeler.stats, key, value)
        self._last_fit = meta.get("last_fit") or {}
        self._last_losses = meta.get("last_losses") or {}
        self._open_episode = meta.get("open_episode")
        if meta.get("pending_round") is not None:  # sent again when run() starts
            self._pending = PendingRound.from_checkpoint(loaded.arrays, meta["pending_round"])
        eval_path = self.files.evals
        if eval_path.exists():
            lines = eval_path.read_text().splitlines()[: meta["eval_lines"]]
            atomic_write_text(eval_path, "".join(line + "\n" for line in lines))

    def _export_reward_model(self) -> None:
        if self.ensemble is None or self.ensemble.rounds == 0:
            return
        self.ensemble.save(self.files.reward_model)
        if self.export_dir is not None:
            self.ensemble.save(self.export_dir / f"{self.run_dir.name}.pt")
        if self.preferences is not None:
            self.preferences.save(self.files.preferences)

    def _summary(self, *, complete: bool) -> RunSummary:
        last = getattr(self, "_last_eval", None)
        return RunSummary(
            run_dir=str(self.run_dir),
            steps=self.counters.step,
            episodes=self.counters.episode,
            queries=self.counters.queries,
            labels=self.counters.labels,
            cost_usd=self.labeler.stats.cost_usd if self.labeler is not None else 0.0,
            eval_return_mean=None if last is None else last.return_mean,
            eval_success_rate=None if last is None else last.success_rate,
            label_accuracy=self._last_fit.get("reward/label_gt_acc"),
            wall_s=self.counters.wall_s,
            extra={"complete": complete, **({"stopped_by": signal.Signals(self.stop.signum).name}
                                            if self.stop.signum is not None and not complete else {})},
        )

    def close(self) -> None:
        """Release envs, the labeler's connections and the store."""
        if self._pending is not None:  # stopped mid-round: its checkpoint (if any) asks again on resume
            self._pending.cancel()
        if self.labeler is not None:
            self.labeler.close()
        if self.store is not None:
            self.store.close()
        if self.frame_reward is not None:
            self.frame_reward.close()
        self.env.close()
        self.eval_env.close()


def run_training(config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False,
                 checkpoint: str | None = None, store_dir: str | Path = DEFAULT_STORE_DIR,
                 export_dir: str | Path | None = "reward_models", progress: bool = True,
                 stop_after: int | None = None) -> RunSummary:
    """Train one run in ``run_dir``, or continue it from its latest checkpoint.

    Args:
        config: The resolved config (``build_config``); on resume, the saved one is used.
        run_dir: The run folder.
        resume: Continue from the latest (or ``checkpoint``) checkpoint.
        checkpoint: Name of a checkpoint folder to resume from instead of the latest.
        store_dir: The query store.
        export_dir: Where the final reward model is also exported (``None``: only the run folder).
        progress: Show the tqdm bar.
        stop_after: Stop (without finishing) after this many steps; for tests and demos.

    Returns:
        The run's summary (``extra["complete"]`` says whether it reached ``config.steps``;
        ``extra["stopped_by"]`` names the signal that stopped it early, if one did).

    Raises:
        UserError: Bad config, backend, model or reward source (found before ``run_dir`` is
            made or touched); the folder holds another run; another process trains in it.
    """
    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    if resume:
        config = load_config(run_dir)
    assert config is not None, "a new run needs its config; only a resume reads it from the run folder"
    # One process per run folder. A folder that does not exist yet is made (and locked) only
    # after every check has passed, so a start that fails leaves nothing behind.
    lock = ProcessLock(files.lock, f"run folder {run_dir}")
    if run_dir.is_dir():
        lock.acquire()
    try:
        if not resume:
            if files.is_complete():
                raise UserError(f"{run_dir} already holds a finished run; choose another --name or --seed")
            if files.is_started():
                raise UserError(f"{run_dir} already holds an unfinished run; continue it with "
                                f"`rlvlmf train --resume {run_dir}` or choose another --name")
        # Building the trainer checks the backend (spec, options, API key, local model files)
        # and the reward source (CLIP model, reward code) before anything is written.
        trainer = Trainer(config, run_dir, store_dir=store_dir, export_dir=export_dir, progress=progress)
        try:
            if not resume:
                files.clear_unstarted()  # what a start that never reached a step left behind
                run_dir.mkdir(parents=True, exist_ok=True)
                lock.acquire()
                save_config(config, run_dir)
            if resume and (trainer.checkpoints.latest() is not None or checkpoint is not None):
                trainer.load_checkpoint(checkpoint)
                logger.info("resumed %s at step %d", run_dir, trainer.counters.step)
            elif resume:
                logger.info("%s has no checkpoint yet; starting it from the beginning", run_dir)
                for stale in (trainer.files.metrics, trainer.files.evals):
                    stale.unlink(missing_ok=True)
            return trainer.run(stop_after=stop_after)
        finally:
            trainer.close()
    finally:
        lock.release()
