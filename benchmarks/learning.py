"""Does the method learn? Three studies against references this project did not write.

1. ``sac``: the project's SAC on the env reward vs Stable-Baselines3's SAC, same env object
   (``rlvlmf.envs.make_env``), network sizes, batch, learning rate, warm-up and budget; final
   return (mean of 10 evaluation episodes from the same seeded starts) and steps/s.
2. ``reward``: reward-model quality. Scripted (rational B-Pref) labels on random pairs of
   rendered steps -> fit the preset's reward ensemble in the trainer's feedback rounds ->
   pairwise accuracy against the ground-truth reward on held-out rollouts, for image and state
   input, on random-action rollouts and (MetaWorld) a mix with the noisy scripted expert.
3. ``preference``: RL-VLM-F/PEBBLE with the scripted teacher (``scripted``, rational, and
   ``scripted:mistake``, 10% flipped labels) vs SAC on the ground-truth reward; IQM of the
   final return with a 95% bootstrap CI over seeds.

Every finished unit is saved as JSON under ``--out``; runs resume from their checkpoints, so
the same command completes a study that was stopped. The tables, plots and
``docs/learning.md`` are rewritten from whatever has finished.

Usage:
  python benchmarks/learning.py                       # everything (hours)
  python benchmarks/learning.py --only sac --presets pendulum
  python benchmarks/learning.py --quick               # a few minutes, results under <out>/quick
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvlmf.envs import get_preset, make_env
from rlvlmf.envs.frames import resize_frame
from rlvlmf.evaluation.stats import iqm, stratified_bootstrap_ci
from rlvlmf.feedback.backends.scripted import TeacherConfig, teacher_answer
from rlvlmf.feedback.base import Label
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.reward.inputs import RewardInputs, state_features
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.builder import build_config
from rlvlmf.training.evaluate import evaluate_policy, evaluation_seed
from rlvlmf.training.loop import run_training

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "learning.md"
PLOTS = ROOT / "docs" / "learning"

# ---- Study settings ----------------------------------------------------------------------
NET = ("sac.hidden_sizes=256,256", "sac.batch_size=256", "sac.actor_lr=5e-4", "sac.critic_lr=5e-4")
"""Both SACs, every study: 2x256 MLPs, batch 256, lr 5e-4 (PEBBLE's DMC lr; 2x1024/batch 1024
would take days on this CPU). SB3 uses one lr for actor, critic and temperature."""
SEED_STEPS = 1000
SAC_STEPS = {"pendulum": 10_000, "cartpole-swingup": 100_000}
PREF_STEPS = {"pendulum": 20_000, "cartpole-swingup": 100_000}
PREF_METHODS = {"ground truth": ("env", "scripted"), "scripted": ("preference", "scripted"),
                "scripted:mistake": ("preference", "scripted:mistake")}
PREF_LABELS = {"pendulum": ("max_feedback=200",),  # the preset's schedule: 10 rounds of 20
               "cartpole-swingup": ("max_feedback=1000", "num_interact=5000", "reward_batch=50")}
REWARD_PRESETS = ("cartpole-swingup", "walker-walk", "drawer-open")
LABEL_COUNTS = (50, 100, 200, 500)
ROLLOUT_EPISODES = {"cartpole-swingup": (6, 3), "walker-walk": (6, 3), "drawer-open": (12, 6)}
"""(train, held-out) episodes of the reward study: 6,000/3,000 steps for the DMC tasks (1,000
per episode), 6,000/3,000 for drawer-open (500 per episode)."""
ROLLOUT_KINDS = ("random", "expert-mix")
"""Behaviours of the reward study's rollouts. ``random``: every episode random actions, each held
1-20 steps. ``expert-mix`` (presets with a scripted expert, ``expert_policy``: MetaWorld's own
``metaworld.policies``, a hand-written swing-up controller for cartpole-swingup):
episode k takes, at each step, the expert's action plus Gaussian noise (std ``EXPERT_NOISE``) with
probability ``EXPERT_SHARES[k % 3]``, else the held random action; so a third of the episodes are
random, a third half-expert, a third expert, as a replay buffer holds from a learner's first to
its last episodes. Random actions barely move the drawer (median reward 0.85 of 10) and push the
cart to the rail ends, out of the fixed camera's view, in 30% of cartpole steps."""
EXPERT_SHARES = (0.0, 0.5, 1.0)
EXPERT_NOISE = 0.1
EVAL_EPISODES = 10

QUICK_SAC_STEPS = {"pendulum": 1500, "cartpole-swingup": 1500}
QUICK_PREF_STEPS = {"pendulum": 2400}
QUICK_LABEL_COUNTS = (50, 200)
QUICK_ROLLOUT_EPISODES = {"cartpole-swingup": (1, 1), "walker-walk": (1, 1), "drawer-open": (2, 1)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _commit() -> str:
    """The checkout's commit, with ``+dirty`` when files differ from it (results name their code)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


COMMIT = _commit()


def save(path: Path, result: dict[str, Any]) -> None:
    result = {**result, "commit": COMMIT}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


def train_ours(run_dir: Path, preset: str, steps: int, seed: int, reward: str, backend: str, extra: tuple[str, ...] = (),
               eval_every: int | None = None) -> dict[str, Any]:
    """One project run (resumed if a checkpoint exists): final return, labels, wall time."""
    overrides = [*NET, f"seed_steps={SEED_STEPS}", f"eval_episodes={EVAL_EPISODES}", "eval_video=false",
                 f"eval_every={eval_every or steps}", f"checkpoint_every={max(steps // 5, 1000)}", "labeler.progress=false",
                 *extra]
    cpu_started, resume = time.process_time(), False
    if not (run_dir / "summary.json").is_file():  # else finished before its result was saved
        resume = (run_dir / "config.json").is_file()
        config = None if resume else build_config(preset, overrides, steps=steps, seed=seed, reward=reward, backend=backend)
        # Each run its own query store: a stored answer (and a noisy teacher's draw) stays with its run.
        run_training(config, run_dir, resume=resume, store_dir=run_dir.with_name(run_dir.name + ".queries"),
                     export_dir=None, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    # CPU seconds of this process: the whole run only if it did not resume (on a shared machine
    # the wall rate mostly measures how much CPU the scheduler gave the process).
    cpu_s = None if resume else time.process_time() - cpu_started
    return {"return": summary["eval_return_mean"], "labels": summary["labels"], "wall_s": summary["wall_s"],
            "steps": summary["steps"], "steps_per_s": summary["steps"] / summary["wall_s"], "cpu_s": cpu_s,
            "curve": [(e["step"], e["return_mean"]) for e in evals]}


# ================================================================== 1. SAC vs Stable-Baselines3
def train_sb3(preset: str, steps: int, seed: int) -> dict[str, Any]:
    """Stable-Baselines3 SAC with the same settings as ``NET`` / our SAC defaults, timed with its evaluation."""
    from stable_baselines3 import SAC as SB3SAC

    ours = build_config(preset, list(NET), reward="env").sac
    env, eval_env = make_env(preset), make_env(preset)
    started, cpu_started = time.perf_counter(), time.process_time()
    model = SB3SAC(
        "MlpPolicy", env, learning_rate=ours.critic_lr, buffer_size=steps, learning_starts=SEED_STEPS,
        batch_size=ours.batch_size, tau=ours.tau, gamma=ours.discount, train_freq=1, gradient_steps=1,
        ent_coef=f"auto_{ours.init_temperature}", target_update_interval=ours.target_update_every,
        policy_kwargs={"net_arch": list(ours.hidden_sizes)}, seed=seed, device="cpu", verbose=0,
    )
    model.learn(total_timesteps=steps)
    result = evaluate_policy(eval_env, lambda o: model.predict(o, deterministic=True)[0], EVAL_EPISODES,
                             seed=evaluation_seed(seed))  # the starts our trainer evaluates from
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    env.close()
    eval_env.close()
    return {"return": result.return_mean, "wall_s": wall, "steps": steps, "steps_per_s": steps / wall, "cpu_s": cpu_s}


def study_sac(out: Path, presets: list[str], seeds: list[int], steps_of: dict[str, int],
              impls: tuple[str, ...] = ("rlvlmf", "sb3")) -> None:
    for preset in presets:
        steps = steps_of[preset]
        for seed in seeds:
            for who in impls:
                path = out / "results" / "sac" / f"{preset}-{steps}-{who}-s{seed}.json"
                if path.exists():
                    continue
                log(f"sac {preset} {steps} steps {who} seed {seed}")
                torch.set_num_threads(1)
                if who == "sb3":
                    result = train_sb3(preset, steps, seed)
                else:
                    run_dir = out / "runs" / "sac" / f"{preset}-{steps}-s{seed}"
                    result = train_ours(run_dir, preset, steps, seed, "env", "scripted")
                save(path, {"preset": preset, "steps": steps, "who": who, "seed": seed, **result})
                log(f"  return {result['return']:.1f}, {result['steps_per_s']:.1f} steps/s")


# ================================================================== 2. reward-model quality
def cartpole_swingup_expert(obs: np.ndarray) -> np.ndarray:
    """A hand-written cartpole-swingup controller: below the horizontal-ish band it pumps energy
    (full push against the pole's swing) while pulling the cart towards the centre; near upright
    (cos > 0.9) a linear balance law. Found by a small sign/gain search on one start; its
    return there is 865 of 1000 (random actions: about 150)."""
    x, cos, sin, x_dot, angle_dot = (float(v) for v in obs)
    if cos > 0.9:
        action = 8 * sin + 3 * angle_dot + 0.5 * x + 0.8 * x_dot
    else:
        action = -np.sign(angle_dot * cos) - 0.3 * (x + x_dot)
    return np.clip(np.array([action], np.float32), -1.0, 1.0)


def expert_policy(preset: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The preset's scripted expert (observation -> action): MetaWorld's own policy for a
    MetaWorld task (``metaworld.policies.Sawyer<Task>V3Policy``), ``cartpole_swingup_expert``
    for cartpole-swingup, ``None`` otherwise."""
    if preset == "cartpole-swingup":
        return cartpole_swingup_expert
    family, _, task = get_preset(preset).spec.partition(":")
    if family != "metaworld":
        return None
    import metaworld.policies

    name = "Sawyer" + "".join(part.capitalize() for part in task.split("-")) + "Policy"  # drawer-open-v3 -> ...DrawerOpenV3...
    policy = getattr(metaworld.policies, name, None)
    return None if policy is None else policy().get_action


def rollouts(preset: str, episodes: int, seed: int, frame_size: int, kind: str = "random") -> dict[str, np.ndarray]:
    """Episodes of one ``ROLLOUT_KINDS`` behaviour: random actions, each held 1-20 steps (so poles
    swing and arms travel), mixed with the noisy scripted expert's for ``expert-mix``."""
    env = make_env(preset)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    expert = expert_policy(preset) if kind == "expert-mix" else None
    if kind != "random" and expert is None:
        raise ValueError(f"{preset} has no scripted expert for {kind!r} rollouts")
    rows: dict[str, list[np.ndarray]] = {"frames": [], "obs": [], "action": [], "next_obs": [], "reward": []}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        share = EXPERT_SHARES[episode % len(EXPERT_SHARES)] if expert is not None else 0.0
        done, hold, held = False, 0, low
        while not done:
            if hold == 0:
                held, hold = rng.uniform(low, high).astype(np.float32), int(rng.integers(1, 21))
            hold -= 1
            action = held
            if share and expert is not None and rng.random() < share:  # no extra draws for random rollouts
                noisy = expert(obs) + EXPERT_NOISE * rng.standard_normal(len(low))
                action = np.clip(noisy, low, high).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows["frames"].append(resize_frame(env.render(), frame_size))
            for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", np.float32(reward))):
                rows[key].append(np.asarray(value, np.float32))
            obs, done = next_obs, terminated or truncated
    env.close()
    return {key: np.stack(value) for key, value in rows.items()}


def cached_rollouts(out: Path, preset: str, episodes: int, seed: int, frame_size: int,
                    kind: str = "random") -> dict[str, np.ndarray]:
    """``rollouts``, kept under ``out`` (rendering them is most of a restarted study's time)."""
    suffix = "" if kind == "random" else f"-{kind}"
    path = out / "rollouts" / f"{preset}-{episodes}ep-s{seed}-{frame_size}px{suffix}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    data = rollouts(preset, episodes, seed, frame_size, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".tmp").open("wb") as handle:
        np.savez(handle, **data)
    path.with_suffix(".tmp").replace(path)
    return data


def _inputs(data: dict[str, np.ndarray], index: np.ndarray, state_kind: str | None) -> RewardInputs:
    states = None
    if state_kind is not None:
        states = state_features(state_kind, data["obs"][index], data["action"][index], data["next_obs"][index])
    return RewardInputs(data["frames"][index], states)


CLEAR_GAP = 0.05
"""``accuracy_clear`` counts only pairs whose true rewards differ by at least this share of the
held-out reward range (near-ties are most pairs of a fallen walker or a closed drawer)."""


def pairwise_accuracy(predicted: np.ndarray, truth: np.ndarray, rng: np.random.Generator, pairs: int = 20_000,
                      min_gap: float = 0.0) -> float:
    """Share of random pairs whose true rewards differ (by more than ``min_gap``) that the
    prediction orders the same way."""
    i, j = rng.integers(0, len(truth), (2, pairs))
    differ = np.abs(truth[i] - truth[j]) > min_gap if min_gap > 0 else truth[i] != truth[j]
    return float(np.mean(np.sign(predicted[i] - predicted[j])[differ] == np.sign(truth[i] - truth[j])[differ]))


def fit_and_score(preset: str, input_kind: str, counts: tuple[int, ...], seed: int, train: dict[str, np.ndarray],
                  heldout: dict[str, np.ndarray]) -> dict[int, dict[str, Any]]:
    """Fit the preset's ensemble as the trainer does, in feedback rounds of the preset's
    ``reward_batch`` labels (warm-started, one ``fit`` per round; a round is cut short where it
    would pass a count in ``counts``), and score it on the held-out steps at each count."""
    overrides = ["reward_model.input=state"] if input_kind == "state" else []
    train_config = build_config(preset, overrides)
    config = train_config.reward_model
    state_kind = config.state_kind if config.uses_states else None
    rng = np.random.default_rng(seed)
    teacher, first, second, chosen = TeacherConfig(), [], [], []
    reward_range = (float(train["reward"].min()), float(train["reward"].max()))
    while len(chosen) < max(counts):  # the rational teacher abstains on ties: draw until enough answers
        i, j = (int(k) for k in rng.integers(0, len(train["reward"]), 2))
        answer = teacher_answer(train["reward"][[i]], train["reward"][[j]], teacher, reward_range, rng)
        if answer.label is not Label.NONE:
            first.append(i)
            second.append(j)
            chosen.append(int(answer.label))
    first_idx, second_idx, labels = np.array(first)[:, None], np.array(second)[:, None], np.array(chosen)
    dataset = PreferenceDataset(config.capacity, config.heldout_fraction)
    ensemble = RewardEnsemble(config, seed=seed)
    heldout_inputs = _inputs(heldout, np.arange(len(heldout["reward"])), state_kind)
    added, rounds, epochs, fit_s, results = 0, 0, 0, 0.0, {}
    for target in sorted(counts):
        while added < target:
            end = min(added + train_config.reward_batch, target)
            new = slice(added, end)
            dataset.add(_inputs(train, first_idx[new], state_kind), _inputs(train, second_idx[new], state_kind), labels[new], rng)
            started = time.process_time()
            report = ensemble.fit(dataset, rng)
            fit_s += time.process_time() - started
            added, rounds, epochs = end, rounds + 1, epochs + report.epochs
        predicted = ensemble.predict(heldout_inputs)
        truth = heldout["reward"]
        clear = CLEAR_GAP * float(truth.max() - truth.min())
        results[target] = {"accuracy": pairwise_accuracy(predicted, truth, np.random.default_rng(seed)),
                           "accuracy_clear": pairwise_accuracy(predicted, truth, np.random.default_rng(seed), min_gap=clear),
                           "train_acc": report.train_acc, "rounds": rounds, "epochs": epochs, "fit_cpu_s": fit_s}
    return results


def reward_result_path(out: Path, preset: str, rollout: str, kind: str, labels: int, seed: int) -> Path:
    """Where one unit of the reward study is saved (random-rollout units keep their first names)."""
    name = f"{preset}-{kind}-{labels}-s{seed}" if rollout == "random" else f"{preset}-{rollout}-{kind}-{labels}-s{seed}"
    return out / "results" / "reward" / f"{name}.json"


def study_reward(out: Path, presets: list[str], seeds: list[int], counts: tuple[int, ...],
                 episodes_of: dict[str, tuple[int, int]], rollout_kinds: tuple[str, ...] = ROLLOUT_KINDS) -> None:
    torch.set_num_threads(1)
    for preset in presets:
        for rollout in rollout_kinds:
            if rollout != "random" and expert_policy(preset) is None:
                continue
            todo = [(kind, seed) for kind in ("image", "state") for seed in seeds
                    if not all(reward_result_path(out, preset, rollout, kind, n, seed).exists() for n in counts)]
            if not todo:
                continue
            n_train, n_heldout = episodes_of[preset]
            size = get_preset(preset).reward_frame_size
            log(f"reward {preset}: rolling out {n_train} + {n_heldout} {rollout} episodes")
            train, heldout = (cached_rollouts(out, preset, n, seed, size, rollout) for n, seed in ((n_train, 1), (n_heldout, 2)))
            for kind, seed in todo:
                for n, result in fit_and_score(preset, kind, counts, seed, train, heldout).items():
                    save(reward_result_path(out, preset, rollout, kind, n, seed),
                         {"preset": preset, "rollouts": rollout, "input": kind, "labels": n, "seed": seed,
                          "train_steps": len(train["reward"]), "heldout_steps": len(heldout["reward"]), **result})
                    log(f"  {preset} {rollout} {kind} {n} labels seed {seed}: held-out pairwise accuracy "
                        f"{result['accuracy']:.3f} ({result['rounds']} rounds, {result['epochs']} epochs, "
                        f"{result['fit_cpu_s']:.0f} CPU-s)")


# ================================================================== 3. preferences vs ground truth
def study_preference(out: Path, presets: list[str], seeds: list[int], steps_of: dict[str, int]) -> None:
    for preset in presets:
        steps = steps_of[preset]
        for seed in seeds:
            for method, (reward, backend) in PREF_METHODS.items():
                name = f"{preset}-{steps}-{method.replace(' ', '-').replace(':', '-')}-s{seed}"
                path = out / "results" / "preference" / f"{name}.json"
                if path.exists():
                    continue
                log(f"preference {preset} {steps} steps {method} seed {seed}")
                torch.set_num_threads(1)
                extra = PREF_LABELS.get(preset, ()) if reward == "preference" else ()
                result = train_ours(out / "runs" / "preference" / name, preset, steps, seed, reward, backend, extra,
                                    eval_every=max(steps // 10, 1000))
                save(path, {"preset": preset, "steps": steps, "method": method, "seed": seed, **result})
                log(f"  return {result['return']:.1f} with {result['labels']} labels")


# ================================================================== tables and plots
def _results(out: Path, study: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "results" / study).glob("*.json"))]


def _ci(values: list[float], rng: np.random.Generator) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f} (1 seed)" if values else "-"
    interval = stratified_bootstrap_ci({"x": values}, iqm, rng=rng)
    return f"{interval.point:.1f} [{interval.low:.1f}, {interval.high:.1f}]"


def sac_table(out: Path) -> list[str]:
    rows = _results(out, "sac")
    keys = sorted({(r["preset"], r["steps"]) for r in rows})
    lines = ["| env | steps | seeds | rlvlmf return | SB3 return | rlvlmf steps/s | SB3 steps/s "
             "| rlvlmf steps/CPU-s | SB3 steps/CPU-s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for preset, steps in keys:
        get = {who: [r for r in rows if (r["preset"], r["steps"], r["who"]) == (preset, steps, who)] for who in ("rlvlmf", "sb3")}
        for who in get:
            for r in get[who]:
                r["steps_per_cpu_s"] = r["steps"] / r["cpu_s"] if r.get("cpu_s") else None

        def cell(who: str, key: str, fmt: str, get: dict[str, list[dict[str, Any]]] = get) -> str:
            values = [r[key] for r in get[who] if r.get(key) is not None]
            if not values:
                return "-"
            text = ", ".join(fmt.format(v) for v in values)
            return f"{np.mean(values):{fmt[2:-1]}} ({text})" if len(values) > 1 else text
        seeds = sorted({r["seed"] for r in get["rlvlmf"]} & {r["seed"] for r in get["sb3"]})
        lines.append(f"| {preset} | {steps:,} | {len(seeds)} | {cell('rlvlmf', 'return', '{:.1f}')} "
                     f"| {cell('sb3', 'return', '{:.1f}')} "
                     f"| {cell('rlvlmf', 'steps_per_s', '{:.1f}')} | {cell('sb3', 'steps_per_s', '{:.1f}')} "
                     f"| {cell('rlvlmf', 'steps_per_cpu_s', '{:.1f}')} | {cell('sb3', 'steps_per_cpu_s', '{:.1f}')} |")
    return lines if keys else ["(nothing finished yet)"]


def reward_table(out: Path) -> list[str]:
    rows = _results(out, "reward")
    for r in rows:
        r.setdefault("rollouts", "random")  # results saved before the study had other rollouts
    counts = sorted({r["labels"] for r in rows})
    lines = ["| task | rollouts | input | " + " | ".join(f"{n} labels" for n in counts) + " |",
             "|---|---|---|" + "---|" * len(counts)]
    for preset in sorted({r["preset"] for r in rows}):
        for rollout in ROLLOUT_KINDS:
            for kind in ("image", "state"):
                key = (preset, rollout, kind)
                if not any((r["preset"], r["rollouts"], r["input"]) == key for r in rows):
                    continue
                cells = []
                for n in counts:
                    values = [r["accuracy"] for r in rows if (r["preset"], r["rollouts"], r["input"], r["labels"]) == (*key, n)]
                    cells.append(f"{np.mean(values):.3f}" + (f" (n={len(values)})" if len(values) > 1 else "") if values else "-")
                lines.append(f"| {preset} | {rollout} | {kind} | " + " | ".join(cells) + " |")
    return lines if rows else ["(nothing finished yet)"]


def preference_table(out: Path) -> list[str]:
    rows = _results(out, "preference")
    rng = np.random.default_rng(0)
    lines = ["| env | steps | method | seeds | IQM final return [95% CI] | share of ground truth (IQM) | labels |",
             "|---|---|---|---|---|---|---|"]
    for preset, steps in sorted({(r["preset"], r["steps"]) for r in rows}):
        gt = [r["return"] for r in rows if (r["preset"], r["steps"], r["method"]) == (preset, steps, "ground truth")]
        for method in PREF_METHODS:
            mine = [r for r in rows if (r["preset"], r["steps"], r["method"]) == (preset, steps, method)]
            if not mine:
                continue
            values = [r["return"] for r in mine]
            # A ratio of returns means something only where they are positive (cartpole);
            # Pendulum's are costs (<= 0), so there only the returns themselves are compared.
            share = f"{iqm(values) / iqm(gt):.2f}" if gt and method != "ground truth" and iqm(gt) > 0 else "-"
            labels = ", ".join(str(r["labels"]) for r in mine)
            lines.append(f"| {preset} | {steps:,} | {method} | {len(mine)} | {_ci(values, rng)} | {share} | {labels} |")
    return lines if rows else ["(nothing finished yet)"]


def plots(out: Path, plot_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = _results(out, "reward")
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
        for ax, kind in zip(axes, ("image", "state")):
            for preset, rollout in sorted({(r["preset"], r.get("rollouts", "random")) for r in rows}):
                mine = [r for r in rows if (r["preset"], r.get("rollouts", "random"), r["input"]) == (preset, rollout, kind)]
                pts = sorted({r["labels"] for r in mine})
                acc = [np.mean([r["accuracy"] for r in mine if r["labels"] == n]) for n in pts]
                ax.plot(pts, acc, marker="o", linestyle="-" if rollout == "random" else "--", label=f"{preset} ({rollout})")
            ax.set(title=f"{kind} input", xlabel="scripted labels", xscale="log")
        axes[0].set_ylabel("held-out pairwise accuracy")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(plot_dir / "reward_accuracy.png", dpi=100)
        plt.close(fig)
        written.append("reward_accuracy.png")
    rows = _results(out, "preference")
    for preset, steps in sorted({(r["preset"], r["steps"]) for r in rows}):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in PREF_METHODS:
            curves = [r["curve"] for r in rows if (r["preset"], r["steps"], r["method"]) == (preset, steps, method)]
            if curves:
                length = min(len(c) for c in curves)
                x = [c[0] for c in curves[0][:length]]
                y = np.mean([[c[1] for c in curve[:length]] for curve in curves], axis=0)
                ax.plot(x, y, label=f"{method} ({len(curves)} seeds)")
        ax.set(title=preset, xlabel="env steps", ylabel="eval return (mean over seeds)")
        ax.legend()
        fig.tight_layout()
        name = f"preference_{preset}.png"
        fig.savefig(plot_dir / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written


def status_lines(out: Path) -> list[str]:
    """How much of each full study has finished (the full plan: default presets, 3 seeds)."""
    reward_sets = sum(1 + (expert_policy(p) is not None) for p in REWARD_PRESETS)  # random (+ expert-mix) rollouts
    planned = {"sac": 2 * len(SAC_STEPS) * 3, "reward": reward_sets * 2 * len(LABEL_COUNTS) * 3,
               "preference": len(PREF_STEPS) * len(PREF_METHODS) * 3}
    lines = ["| study | finished units | of the full plan |", "|---|---|---|"]
    commits: set[str] = set()
    for study, total in planned.items():
        results = _results(out, study)
        commits.update(str(r["commit"]) for r in results if "commit" in r)
        lines.append(f"| {study} | {len(results)} | {total} |")
    if commits:
        lines += ["", f"Code: commit(s) {', '.join(sorted(commits))} (`+dirty`: with other uncommitted edits in the checkout)."]
    return lines


def write_doc(out: Path, doc: Path, plot_dir: Path, command: str) -> str:
    sections = {"sac": sac_table(out), "reward": reward_table(out), "preference": preference_table(out)}
    names = plots(out, plot_dir)
    rel = plot_dir.relative_to(doc.parent) if plot_dir.is_relative_to(doc.parent) else plot_dir
    text = "\n".join([
        "# Learning: does the method learn, measured against peers",
        "",
        "Written by `benchmarks/learning.py` from the results it has finished (every number below was",
        f"measured by it). Command: `{command}`. Rerunning it skips finished units and resumes",
        "stopped runs. See the script's docstring for what each study does. Finished so far:",
        "",
        *status_lines(out),
        "",
        "`python benchmarks/learning.py` completes the full plan (all three studies, default presets,",
        "seeds 0-2, 500 labels included), skipping what has finished; it takes many hours on a CPU.",
        "",
        "## SAC vs Stable-Baselines3 (env reward)",
        "",
        "Same env object (`rlvlmf.envs.make_env`, actions in [-1, 1]), 2x256 MLPs, batch 256, lr 5e-4,",
        f"{SEED_STEPS} random warm-up steps, target update every 2 steps, initial temperature 0.1;",
        f"final return = mean of {EVAL_EPISODES} deterministic episodes from the same seeded starts.",
        "Steps/s include that evaluation for both; torch uses 1 thread. Mean over seeds (per-seed values).",
        "Steps/CPU-s divide by the process's CPU time (shown only for runs done in one process): on a",
        "shared machine the wall rate mostly measures the CPU share the scheduler gave the process.",
        "",
        *sections["sac"],
        "",
        "## Reward-model quality (scripted labels)",
        "",
        "Rollouts `random`: random actions, each held 1-20 steps. `expert-mix` (MetaWorld's own scripted",
        "expert policies; for cartpole-swingup a hand-written energy-pumping swing-up and linear balance",
        "controller, `cartpole_swingup_expert`): at each step the expert's action plus Gaussian noise",
        f"(std {EXPERT_NOISE}) with probability {', '.join(f'{p:g}' for p in EXPERT_SHARES)} in turn per episode, else",
        "the held random action; the spread of progress a learner's replay buffer holds. Train and",
        "held-out episodes are separate (other seeds). Labels from the rational B-Pref teacher on random",
        "pairs of single training steps; held-out pairwise accuracy over 20,000 random pairs of held-out",
        "steps whose true rewards differ. The preset's reward ensemble and frame size (`RewardModelConfig`",
        "defaults plus the preset's epochs and lr). Each cell is one seed unless it says n=.",
        "",
        *sections["reward"],
        "",
        "## Preferences vs ground truth",
        "",
        "PEBBLE/RL-VLM-F with the scripted teacher (rational; `scripted:mistake` flips 10% of labels)",
        "against SAC on the env reward; 2x256 nets. IQM of the final return over seeds, 95% bootstrap CI.",
        "",
        *sections["preference"],
        "",
        *(f"![{name}]({rel}/{name})" for name in names),
        "",
    ])
    notes = plot_dir / "notes.md"  # hand-written: which commands ran when, what is left
    if notes.is_file():
        text += "\n" + notes.read_text()
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a few minutes); results under <out>/quick")
    parser.add_argument("--only", choices=("sac", "reward", "preference"), action="append", help="run only these studies")
    parser.add_argument("--presets", default=None, help="comma-separated presets (default: each study's own)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="env steps of every sac/preference run (default per preset)")
    parser.add_argument("--impl", choices=("rlvlmf", "sb3"), action="append",
                        help="sac study: run only this SAC (e.g. one process per SAC, in parallel)")
    parser.add_argument("--labels", default=None, help="comma-separated label counts of the reward study")
    parser.add_argument("--rollouts", choices=ROLLOUT_KINDS, action="append",
                        help="reward study: only these rollouts (default all; expert-mix where a scripted expert exists)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning", help="results and runs folder")
    parser.add_argument("--report-only", action="store_true", help="rewrite tables, plots and the doc; run nothing")
    args = parser.parse_args(argv)
    out = args.out / "quick" if args.quick else args.out
    seeds = [int(s) for s in args.seeds.split(",")]
    only = set(args.only or ("sac", "reward", "preference"))
    chosen = None if args.presets is None else args.presets.split(",")

    def steps_for(defaults: dict[str, int]) -> dict[str, int]:
        return {p: args.steps or n for p, n in defaults.items()}

    def presets_for(defaults: Any) -> list[str]:
        return [p for p in (chosen or defaults) if p in defaults]

    if not args.report_only:
        if "sac" in only:
            sac_steps = steps_for(QUICK_SAC_STEPS if args.quick else SAC_STEPS)
            study_sac(out, presets_for(["pendulum"] if args.quick else sac_steps), seeds, sac_steps,
                      tuple(args.impl or ("rlvlmf", "sb3")))
        if "reward" in only:
            default_counts = QUICK_LABEL_COUNTS if args.quick else LABEL_COUNTS
            counts = tuple(int(n) for n in args.labels.split(",")) if args.labels else default_counts
            episodes = QUICK_ROLLOUT_EPISODES if args.quick else ROLLOUT_EPISODES
            study_reward(out, presets_for(REWARD_PRESETS), seeds, counts, episodes, tuple(args.rollouts or ROLLOUT_KINDS))
        if "preference" in only:
            pref_steps = steps_for(QUICK_PREF_STEPS if args.quick else PREF_STEPS)
            study_preference(out, presets_for(pref_steps), seeds, pref_steps)
    command = "python benchmarks/learning.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc, plot_dir = (out / "learning.md", out / "plots") if args.quick or args.out != ROOT / "runs" / "learning" else (DOC, PLOTS)
    text = write_doc(out, doc, plot_dir, command.strip())
    print(text)
    print(f"written: {doc}")


if __name__ == "__main__":
    main()
