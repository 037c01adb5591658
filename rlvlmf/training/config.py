"""The resolved configuration of a training run, and each preset's schedule.

A run is described by one ``TrainConfig``; ``default_config(preset)`` fills it from the
preset's schedule (the RL-VLM-F paper's where it gives one, PEBBLE's DMC settings
otherwise), and ``--set key=value`` overrides any field, nested ones with dots
(``sac.batch_size=256``, ``labeler.max_cost_usd=5``). The resolved config is saved with
the run as ``config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from rlvlmf.agents.sac import DMC_PEBBLE, METAWORLD, SACConfig
from rlvlmf.config import from_dict
from rlvlmf.envs.custom import custom_preset
from rlvlmf.envs.presets import Preset, get_preset
from rlvlmf.errors import ConfigError
from rlvlmf.feedback.labeler import LabelerConfig
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.sampling import SAMPLING_METHODS, SamplingMethod
from rlvlmf.reward.vlm_rewards import ClipRewardConfig
from rlvlmf.utils.device import check_device

# ---------------------------------------------------------------- reward modes
# Where the reward SAC trains on comes from: a tagged config (rlvlmf.config saves it with its
# ``kind``), so code branches on the type instead of parsing text. ``flag`` is the mode as the
# ``--reward`` flag writes it.


@dataclass(frozen=True)
class PreferenceMode:
    """RL-VLM-F / PEBBLE: a reward model learned from preference labels."""

    kind: Literal["preference"] = field(default="preference", init=False)

    @property
    def flag(self) -> str:
        return "preference"


@dataclass(frozen=True)
class EnvMode:
    """The env's own reward: the ground-truth baseline."""

    kind: Literal["env"] = field(default="env", init=False)

    @property
    def flag(self) -> str:
        return "env"


@dataclass(frozen=True)
class ClipMode:
    """CLIP/SigLIP score of each frame (settings in ``TrainConfig.clip``)."""

    model: str
    """Hugging Face id or local path of the CLIP-family model."""
    kind: Literal["clip"] = field(default="clip", init=False)

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("reward clip needs a model: --reward clip --backend clip:<model id or path>")

    @property
    def flag(self) -> str:
        return "clip"


@dataclass(frozen=True)
class CodeMode:
    """VLM-CaR: verified generated reward functions plus the env's success flag."""

    file: str
    """A ``.py`` program, a JSON result of ``rlvlmf codegen --out``, or a codegen session id."""
    kind: Literal["code"] = field(default="code", init=False)

    def __post_init__(self) -> None:
        if not self.file.strip():
            raise ConfigError("reward code needs its program: --reward code:FILE")

    @property
    def flag(self) -> str:
        return f"code:{self.file}"


RewardMode = PreferenceMode | EnvMode | ClipMode | CodeMode
REWARD_FLAGS = "preference, env, clip or code:FILE"


def parse_reward(text: str, backend: str) -> RewardMode:
    """The ``--reward`` flag as a typed mode (also how configs saved as text are read).

    ``clip`` takes its model from ``backend`` (``--backend clip:MODEL``), as the flag always has.

    Raises:
        ConfigError: Not one of preference, env, clip or code:FILE, or clip without a clip backend.
    """
    if text.strip() == "clip":
        from rlvlmf.feedback.registry import parse_spec

        spec = parse_spec(backend)
        if spec.family != "clip" or not spec.model:
            raise ConfigError(f"--reward clip needs --backend clip:<model id or path>, got {backend!r}")
        return ClipMode(spec.model)
    try:
        return from_dict(_RewardHolder, {"reward": text}).reward
    except ConfigError as exc:
        raise ConfigError(f"reward must be {REWARD_FLAGS}, got {text!r} ({exc})") from None


def read_reward(saved: object, backend: str) -> RewardMode:
    """A reward mode as ``config.json`` holds it: a tagged dict, or in older runs the flag's text.

    Raises:
        ConfigError: Neither a valid mode nor valid ``--reward`` text.
    """
    if isinstance(saved, str):
        return parse_reward(saved, backend)
    return from_dict(_RewardHolder, {"reward": saved}).reward


@dataclass(frozen=True)
class _RewardHolder:
    """Lets ``rlvlmf.config`` read a mode from text (it parses fields by their type)."""

    reward: RewardMode


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    preset: str = "cartpole-swingup"
    """Env preset (``rlvlmf envs`` lists them): env, camera, frame sizes, goal and schedule.
    Empty when the run names its env with ``env`` and ``goal`` instead."""
    env: str = ""
    """Without a preset: the env's family spec, e.g. ``dmc:hopper-hop``, ``gym:Pendulum-v1``,
    ``gym:<module>:<EnvId-v0>`` (a user's env that ``module`` registers), ``metaworld:<task>``."""
    goal: str = ""
    """With ``env``: the goal sentence the VLM is given (``"to open the drawer"``)."""
    camera: str = ""
    """With ``env``: camera name or id; empty for the family's default view."""
    reward: RewardMode = field(default_factory=PreferenceMode)
    """``PreferenceMode``: learn a reward from preference labels; ``EnvMode``: the env's own
    reward (the ground-truth baseline); ``ClipMode``: CLIP/SigLIP score of each frame;
    ``CodeMode``: verified generated reward functions plus the env's success flag (0 where it
    has none). ``parse_reward`` reads the ``--reward`` flag; ``--set reward=env`` also works."""
    backend: str = "scripted"
    """Who labels the queries (``rlvlmf backends``); ``--reward clip`` reads its model from it."""
    backend_options: tuple[str, ...] = ()
    """``key=value`` options passed to the backend (``eps_mistake=0.1``, ``mode=one-stage``)."""
    seed: int = 0
    """Seeds the env, the agent, query sampling and the scripted teacher."""
    steps: int = 500_000
    """Env steps in total."""
    seed_steps: int = 1000
    """Steps of uniformly random actions at the start."""
    unsup_steps: int = 1000
    """Steps of unsupervised pre-training (k-NN state entropy) after the random ones."""
    num_interact: int = 5000
    """Env steps between feedback rounds."""
    reward_batch: int = 50
    """Queries per feedback round."""
    feedback_lag: int = 0
    """Env steps SAC goes on training (on the current reward) while a round's labels are asked;
    0: the round blocks, as in the paper. A round's pairs are fixed when it starts; its labels
    are fitted and the buffer relabelled exactly this many steps later, waiting there if the VLM
    is slower, so a run's result does not depend on how fast answers come. Below ``num_interact``."""
    max_feedback: int = 10_000
    """Queries in total; no more rounds once reached."""
    sampling: SamplingMethod = "uniform"
    """How each round's pairs are chosen: ``uniform``, ``disagreement`` or ``entropy``."""
    segment_length: int = 1
    """Frames per compared segment (1 in RL-VLM-F: single frames)."""
    query_window_episodes: int = 100
    """Each round draws its pairs from the last this-many episodes (RL-VLM-F: 100). Only their
    simulator states are kept; the chosen steps are drawn again at the VLM's size. 0, or an
    env that cannot restore a state, uses the ``query_pool_size`` reservoir instead."""
    query_pool_size: int = 256
    """Fallback when no query window: frames at the VLM's resolution kept per round to draw
    pairs from (a uniform reservoir over the steps since the previous round)."""
    reset_critic: bool = True
    """Reset the critic after the first feedback round, as in PEBBLE."""
    knn_k: int = 5
    """k of the k-NN state-entropy reward in unsupervised pre-training."""
    eval_every: int = 10_000
    """Env steps between evaluations (also one at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation, each from a different seeded initial state."""
    eval_video: bool = True
    """Write a GIF of the first episode of each evaluation."""
    checkpoint_every: int = 10_000
    """A checkpoint at the first episode end after this many steps since the last one."""
    checkpoint_minutes: float = 10.0
    """Also a checkpoint (mid-episode if need be) when this many minutes passed since the last
    one, so a slow run loses little to a crash; 0 turns the timer off."""
    update_every: int = 1
    """Env steps per SAC gradient step."""
    threads: int = 1
    """torch CPU threads; one is fastest for these network sizes on a shared 2-core box."""
    device: str = "auto"
    """Where SAC and the reward ensemble train and predict: ``cpu``, ``cuda``, ``cuda:N``, or
    ``auto`` (the first CUDA GPU when torch sees one, else the CPU). bfloat16 on it:
    ``sac.matmul_dtype`` and ``reward_model.compute_dtype``. Local VLM/CLIP backends keep their
    own ``device`` option."""
    sac: SACConfig = field(default_factory=SACConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    clip: ClipRewardConfig = field(default_factory=ClipRewardConfig)

    def __post_init__(self) -> None:
        if self.preset:
            if self.env or self.goal or self.camera:
                raise ConfigError("give either a preset or an env spec with its goal (and camera), not both")
            get_preset(self.preset)  # raises UnknownNameError listing the presets
        elif not self.env:
            raise ConfigError("a run needs an env: --preset NAME, or --env SPEC --goal TEXT")
        else:
            custom_preset(self.env, self.goal, self.camera)  # one-line errors: empty goal, bad spec
        if not isinstance(self.reward, (PreferenceMode, EnvMode, ClipMode, CodeMode)):
            raise ConfigError(f"reward must be a reward mode (parse_reward reads {REWARD_FLAGS}), got {self.reward!r}")
        positive = ("steps", "num_interact", "reward_batch", "eval_episodes", "query_pool_size", "segment_length",
                    "update_every", "threads", "knn_k")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed_steps", "unsup_steps", "max_feedback", "eval_every", "checkpoint_every", "query_window_episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.feedback_lag < self.num_interact:
            raise ConfigError(f"feedback_lag must be >= 0 and below num_interact ({self.num_interact}), "
                              f"got {self.feedback_lag}: one round is in flight at a time")
        check_device(self.device)  # whether that GPU exists is checked when the run starts
        if not self.checkpoint_minutes >= 0:  # also refuses NaN
            raise ConfigError(f"checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        if self.sampling not in SAMPLING_METHODS:
            raise ConfigError(f"sampling must be one of {SAMPLING_METHODS}, got {self.sampling!r}")
        if self.segment_length != 1 and self.query_pool_size < 2:
            raise ConfigError("query_pool_size must be >= 2")

    @property
    def env_preset(self) -> Preset:
        """The run's env set-up: the named preset, or one built from ``env``, ``goal`` and ``camera``."""
        return get_preset(self.preset) if self.preset else custom_preset(self.env, self.goal, self.camera)

    @property
    def task_name(self) -> str:
        """Short name of the run's task: the preset, else the env's id (for run names and reports)."""
        return self.preset or self.env_preset.name

    @property
    def learns_reward(self) -> bool:
        """Whether this run asks for preferences and fits a reward model."""
        return isinstance(self.reward, PreferenceMode)


# Per-preset schedules. MetaWorld and CartPole: the RL-VLM-F paper's; the other DMC tasks:
# PEBBLE's; pendulum: a small one for quick checks. SAC sizes are the agent's presets
# (rlvlmf.agents.sac: DMC_PEBBLE, METAWORLD).
_METAWORLD = dict(steps=1_000_000, seed_steps=1000, unsup_steps=9000, num_interact=4000, reward_batch=40, max_feedback=20_000,
                  eval_every=20_000)
SCHEDULES: dict[str, dict] = {
    "cartpole-swingup": dict(steps=500_000, seed_steps=1000, unsup_steps=1000, num_interact=5000, reward_batch=50,
                             max_feedback=10_000, reward_model=dict(max_epochs=50, lr=3e-4), sac=DMC_PEBBLE),
    "walker-walk": dict(steps=500_000, seed_steps=1000, unsup_steps=9000, num_interact=20_000, reward_batch=100,
                        max_feedback=1000, reward_model=dict(max_epochs=50), sac=DMC_PEBBLE),
    "cheetah-run": dict(steps=500_000, seed_steps=1000, unsup_steps=9000, num_interact=20_000, reward_batch=100,
                        max_feedback=1000, reward_model=dict(max_epochs=50), sac=DMC_PEBBLE),
    "reacher-easy": dict(steps=200_000, seed_steps=1000, unsup_steps=9000, num_interact=10_000, reward_batch=50,
                         max_feedback=500, reward_model=dict(max_epochs=50), sac=DMC_PEBBLE),
    "pendulum": dict(steps=20_000, seed_steps=1000, unsup_steps=1000, num_interact=2000, reward_batch=20,
                     max_feedback=200, eval_every=2000, checkpoint_every=2000,
                     reward_model=dict(max_epochs=50),
                     sac=dataclasses.replace(DMC_PEBBLE, hidden_sizes=(256, 256), batch_size=256)),
    "drawer-open": dict(**_METAWORLD, reward_model=dict(max_epochs=10, lr=3e-4), sac=METAWORLD),
    "sweep-into": dict(**_METAWORLD, reward_model=dict(max_epochs=10, lr=3e-4), sac=METAWORLD),
    "soccer": dict(**_METAWORLD, reward_model=dict(max_epochs=5, lr=1e-4), sac=METAWORLD),
}


# An env without a preset gets the schedule of its family's closest preset: PEBBLE's DMC
# schedule for dm_control and Gymnasium (continuous control), the paper's for MetaWorld.
FAMILY_SCHEDULES: dict[str, str] = {"dmc": "walker-walk", "gym": "walker-walk", "metaworld": "drawer-open"}


def default_config(preset: str = "", **overrides: Any) -> TrainConfig:
    """The preset's schedule as a ``TrainConfig``; keyword ``overrides`` replace top-level fields.

    With no preset, ``overrides`` name the env (``env``, ``goal``, optional ``camera``) and the
    schedule is that of the family's closest preset (``FAMILY_SCHEDULES``). The reward model's
    frame size follows the preset's ``reward_frame_size``.
    """
    env, goal, camera = (str(overrides.pop(key, "")) for key in ("env", "goal", "camera"))
    if preset:
        run_preset, schedule_name = get_preset(preset), preset
    else:
        run_preset = TrainConfig(preset="", env=env, goal=goal, camera=camera).env_preset  # validates env and goal
        schedule_name = FAMILY_SCHEDULES[run_preset.family]
    schedule = dict(SCHEDULES.get(schedule_name, {}))
    reward_frame_size = run_preset.reward_frame_size
    sac = schedule.pop("sac", SACConfig())
    reward_model = dataclasses.replace(RewardModelConfig(frame_size=reward_frame_size), **schedule.pop("reward_model", {}))
    base = TrainConfig(preset=preset, env=env, goal=goal, camera=camera, sac=sac, reward_model=reward_model, **schedule)
    return dataclasses.replace(base, **overrides) if overrides else base
