"""Does the method learn? Three studies against references this project did not write.

1. ``sac``: the project's SAC on the env reward vs Stable-Baselines3's SAC, same env object
   (``rlvlmf.envs.make_env``), network sizes, batch, learning rate, warm-up and budget; final
   return (mean of 10 evaluation episodes from the same seeded starts) and steps/s.
2. ``reward``: reward-model quality. Scripted (rational B-Pref) labels on random pairs of
   rendered steps -> fit the preset's reward ensemble -> pairwise accuracy against the
   ground-truth reward on held-out rollouts, for image and state input.
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
from rlvlmf.training.evaluate import evaluate_policy
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
                             seed=10**6 + 1000 * seed)  # the starts our trainer evaluates from
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
def rollouts(preset: str, episodes: int, seed: int, frame_size: int) -> dict[str, np.ndarray]:
    """Random-action episodes (each action held 1-20 steps, so poles swing and arms travel)."""
    env = make_env(preset)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    rows: dict[str, list[np.ndarray]] = {"frames": [], "obs": [], "action": [], "next_obs": [], "reward": []}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        done, hold, action = False, 0, low
        while not done:
            if hold == 0:
                action, hold = rng.uniform(low, high).astype(np.float32), int(rng.integers(1, 21))
            hold -= 1
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows["frames"].append(resize_frame(env.render(), frame_size))
            for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", np.float32(reward))):
                rows[key].append(np.asarray(value, np.float32))
            obs, done = next_obs, terminated or truncated
    env.close()
    return {key: np.stack(value) for key, value in rows.items()}


def cached_rollouts(out: Path, preset: str, episodes: int, seed: int, frame_size: int) -> dict[str, np.ndarray]:
    """``rollouts``, kept under ``out`` (rendering them is most of a restarted study's time)."""
    path = out / "rollouts" / f"{preset}-{episodes}ep-s{seed}-{frame_size}px.npz"
    if path.is_file():
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    data = rollouts(preset, episodes, seed, frame_size)
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


def pairwise_accuracy(predicted: np.ndarray, truth: np.ndarray, rng: np.random.Generator, pairs: int = 20_000) -> float:
    """Share of random pairs with different true rewards that the prediction orders the same way."""
    i, j = rng.integers(0, len(truth), (2, pairs))
    differ = truth[i] != truth[j]
    return float(np.mean(np.sign(predicted[i] - predicted[j])[differ] == np.sign(truth[i] - truth[j])[differ]))


def fit_and_score(preset: str, input_kind: str, labels: int, seed: int, train: dict[str, np.ndarray],
                  heldout: dict[str, np.ndarray]) -> dict[str, Any]:
    overrides = ["reward_model.input=state"] if input_kind == "state" else []
    config = build_config(preset, overrides).reward_model
    state_kind = config.state_kind if config.uses_states else None
    rng = np.random.default_rng(seed)
    teacher, first, second, chosen = TeacherConfig(), [], [], []
    reward_range = (float(train["reward"].min()), float(train["reward"].max()))
    while len(chosen) < labels:  # the rational teacher abstains on ties: draw until enough answers
        i, j = (int(k) for k in rng.integers(0, len(train["reward"]), 2))
        answer = teacher_answer(train["reward"][[i]], train["reward"][[j]], teacher, reward_range, rng)
        if answer.label is not Label.NONE:
            first.append(i)
            second.append(j)
            chosen.append(int(answer.label))
    first_idx, second_idx = np.array(first)[:, None], np.array(second)[:, None]
    dataset = PreferenceDataset(config.capacity, config.heldout_fraction)
    dataset.add(_inputs(train, first_idx, state_kind), _inputs(train, second_idx, state_kind), np.array(chosen), rng)
    ensemble = RewardEnsemble(config, seed=seed)
    started = time.perf_counter()
    report = ensemble.fit(dataset, rng)
    fit_s = time.perf_counter() - started
    predicted = ensemble.predict(_inputs(heldout, np.arange(len(heldout["reward"])), state_kind))
    return {"accuracy": pairwise_accuracy(predicted, heldout["reward"], rng), "train_acc": report.train_acc,
            "epochs": report.epochs, "fit_s": fit_s}


def study_reward(out: Path, presets: list[str], seeds: list[int], counts: tuple[int, ...],
                 episodes_of: dict[str, tuple[int, int]]) -> None:
    torch.set_num_threads(1)
    for preset in presets:
        todo = [(kind, n, seed) for kind in ("image", "state") for n in counts for seed in seeds
                if not (out / "results" / "reward" / f"{preset}-{kind}-{n}-s{seed}.json").exists()]
        if not todo:
            continue
        n_train, n_heldout = episodes_of[preset]
        size = get_preset(preset).reward_frame_size
        log(f"reward {preset}: rolling out {n_train} + {n_heldout} episodes")
        train, heldout = (cached_rollouts(out, preset, n, seed, size) for n, seed in ((n_train, 1), (n_heldout, 2)))
        for kind, n, seed in todo:
            result = fit_and_score(preset, kind, n, seed, train, heldout)
            save(out / "results" / "reward" / f"{preset}-{kind}-{n}-s{seed}.json",
                 {"preset": preset, "input": kind, "labels": n, "seed": seed, "train_steps": len(train["reward"]),
                  "heldout_steps": len(heldout["reward"]), **result})
            log(f"  {preset} {kind} {n} labels seed {seed}: held-out pairwise accuracy {result['accuracy']:.3f} "
                f"({result['epochs']} epochs, {result['fit_s']:.0f} s)")


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
    counts = sorted({r["labels"] for r in rows})
    lines = ["| task | input | " + " | ".join(f"{n} labels" for n in counts) + " |", "|---|---|" + "---|" * len(counts)]
    for preset in sorted({r["preset"] for r in rows}):
        for kind in ("image", "state"):
            cells = []
            for n in counts:
                values = [r["accuracy"] for r in rows if (r["preset"], r["input"], r["labels"]) == (preset, kind, n)]
                cells.append(f"{np.mean(values):.3f}" + (f" (n={len(values)})" if len(values) > 1 else "") if values else "-")
            lines.append(f"| {preset} | {kind} | " + " | ".join(cells) + " |")
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
            for preset in sorted({r["preset"] for r in rows}):
                pts = sorted({r["labels"] for r in rows if r["preset"] == preset and r["input"] == kind})
                acc = [np.mean([r["accuracy"] for r in rows if (r["preset"], r["input"], r["labels"]) == (preset, kind, n)])
                       for n in pts]
                ax.plot(pts, acc, marker="o", label=preset)
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
    planned = {"sac": 2 * len(SAC_STEPS) * 3, "reward": len(REWARD_PRESETS) * 2 * len(LABEL_COUNTS) * 3,
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
        "Rollouts with random actions held 1-20 steps; labels from the rational B-Pref teacher on",
        "random pairs of single training steps; held-out pairwise accuracy over 20,000 random pairs of",
        "held-out steps whose true rewards differ. The preset's reward ensemble and frame size.",
        "Each cell is one seed unless it says n=.",
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
            study_reward(out, presets_for(REWARD_PRESETS), seeds, counts, episodes)
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
