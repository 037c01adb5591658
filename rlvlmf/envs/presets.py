"""Named environments with everything fixed: spec, camera, crop, frame sizes and goal text.

A preset is the one place where env specifics live; code elsewhere reads its fields and never
branches on an env's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from rlvlmf.envs.frames import Crop
from rlvlmf.envs.metaworld_envs import OBSERVATION_DOC as METAWORLD_OBSERVATION_DOC
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class Preset:
    """A fully specified environment for RL-VLM-F experiments."""

    name: str
    """Preset name, e.g. ``"drawer-open"``."""
    spec: str
    """Family spec passed to ``make_env``, e.g. ``"metaworld:drawer-open-v3"``."""
    task: TaskDescription
    """Goal sentence, CLIP phrases and observation layout."""
    camera: str | int | None = None
    """Camera name or id; ``None`` is the family's default view."""
    crop: Crop | None = None
    """Rectangle of the rendered image that frames the object of interest (rendered pixels)."""
    width: int = 224
    """Render width in pixels, before the crop."""
    height: int = 224
    """Render height in pixels, before the crop."""
    vlm_frame_size: int = 224
    """Side of the square frames shown to a VLM (the paper: 300 for MetaWorld, 200 for CartPole)."""
    reward_frame_size: int = 64
    """Side of the square frames fed to the learned image reward model."""
    max_episode_steps: int | None = None
    """Episode length in ``step()`` calls; ``None`` keeps the family's own limit."""
    action_repeat: int = 1
    """Control steps per ``step()`` (dm_control only; 1 elsewhere)."""

    def __post_init__(self) -> None:
        if ":" not in self.spec:
            raise ConfigError(f"preset {self.name!r}: spec {self.spec!r} lacks a family prefix")
        if min(self.width, self.height, self.vlm_frame_size, self.reward_frame_size) <= 0:
            raise ConfigError(f"preset {self.name!r}: sizes must be positive")
        if self.crop is not None:
            self.crop.check_fits(self.height, self.width)
        if self.action_repeat < 1:
            raise ConfigError(f"preset {self.name!r}: action_repeat must be >= 1")

    @property
    def family(self) -> str:
        """``"dmc"``, ``"gym"`` or ``"metaworld"``."""
        return self.spec.split(":", 1)[0]


_DMC_CARTPOLE_DOC = "\n".join(
    [
        "obs[0] cart position along the rail (m)",
        "obs[1] cosine of the pole angle (1 = upright)",
        "obs[2] sine of the pole angle",
        "obs[3] cart velocity",
        "obs[4] pole angular velocity",
    ]
)
_DMC_WALKER_DOC = "\n".join(
    [
        "obs[0:14] orientations: (xx, xz) rotation entries of the torso, right thigh, leg, "
        "foot, left thigh, leg, foot",
        "obs[14] torso height (m; the walk reward wants at least 1.2)",
        "obs[15:24] velocity: root z, root x (forward), root pitch, then right hip, knee, "
        "ankle, left hip, knee, ankle",
    ]
)
_DMC_CHEETAH_DOC = "\n".join(
    [
        "obs[0:8] position: root z (height), root pitch, back thigh, shin, foot, front thigh, "
        "shin, foot angles",
        "obs[8:17] velocity: root x (forward speed, what the run reward wants high), root z, "
        "root pitch, then the six joint velocities",
    ]
)
_DMC_REACHER_DOC = "\n".join(
    [
        "obs[0:2] position: shoulder and elbow joint angles",
        "obs[2:4] to_target: vector from the finger tip to the target (x, y)",
        "obs[4:6] velocity: joint angular velocities",
    ]
)
_PENDULUM_DOC = "\n".join(
    [
        "obs[0] cosine of the pendulum angle (1 = upright)",
        "obs[1] sine of the pendulum angle",
        "obs[2] angular velocity",
    ]
)

class _FrameSizes(TypedDict, total=False):
    """The frame-size fields of a ``Preset`` a helper below may set (the rest keep its defaults)."""

    width: int
    height: int
    vlm_frame_size: int
    reward_frame_size: int


_METAWORLD_FRAMES = _FrameSizes(width=480, height=480, vlm_frame_size=300, reward_frame_size=64)


def _dmc(name: str, *, goal: str, positive_phrases: tuple[str, ...], negative_phrases: tuple[str, ...],
         observation_doc: str, camera: str, **frames: Unpack[_FrameSizes]) -> Preset:
    """A dm_control suite preset: ``dmc:<name>``, 1000-step episodes, the given camera."""
    task = TaskDescription(name=name, goal=goal, positive_phrases=positive_phrases,
                           negative_phrases=negative_phrases, observation_doc=observation_doc)
    return Preset(name=name, spec=f"dmc:{name}", task=task, camera=camera, max_episode_steps=1000, **frames)


def _metaworld(name: str, *, goal: str, positive_phrases: tuple[str, ...], negative_phrases: tuple[str, ...],
               crop: Crop) -> Preset:
    """A MetaWorld 3 preset as in the RL-VLM-F paper: ``corner`` camera, 480 px render cropped
    to the object, 300 px VLM frames, 500-step episodes."""
    task = TaskDescription(name=name, goal=goal, positive_phrases=positive_phrases,
                           negative_phrases=negative_phrases, observation_doc=METAWORLD_OBSERVATION_DOC)
    return Preset(name=name, spec=f"metaworld:{name}-v3", task=task, camera="corner", crop=crop,
                  max_episode_steps=500, **_METAWORLD_FRAMES)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        _dmc(
            "cartpole-swingup",
            # The paper's sentence names pygame CartPole's colours (brown pole, black cart); in
            # dm_control the cart and the pole share one tan material.
            goal="to balance the tan pole on the tan cart to be upright",
            positive_phrases=("a pole balanced upright on a cart", "an upright pole"),
            negative_phrases=("a pole hanging down below a cart", "a pole tilted sideways"),
            observation_doc=_DMC_CARTPOLE_DOC,
            camera="fixed",
            width=200,
            height=200,
            vlm_frame_size=200,
        ),
        _dmc(
            "walker-walk",
            goal="to make the two-legged robot stand upright and walk forward",
            positive_phrases=("a two-legged robot walking upright", "a robot standing tall"),
            negative_phrases=("a two-legged robot lying on the ground", "a robot fallen over"),
            observation_doc=_DMC_WALKER_DOC,
            camera="side",
        ),
        _dmc(
            "cheetah-run",
            goal="to make the cheetah robot run forward as fast as possible",
            positive_phrases=("a cheetah robot running forward fast", "a robot in mid stride"),
            negative_phrases=("a cheetah robot lying on its back", "a robot standing still"),
            observation_doc=_DMC_CHEETAH_DOC,
            camera="side",
        ),
        _dmc(
            "reacher-easy",
            goal="to move the tip of the two-link arm onto the red target",
            positive_phrases=("an arm whose tip touches the red target",),
            negative_phrases=("an arm whose tip is far from the red target",),
            observation_doc=_DMC_REACHER_DOC,
            camera="fixed",
        ),
        Preset(
            name="pendulum",
            spec="gym:Pendulum-v1",
            task=TaskDescription(
                name="pendulum",
                goal="to swing the pendulum up and keep it balanced pointing straight up",
                positive_phrases=("a pendulum pointing straight up", "an upright rod"),
                negative_phrases=("a pendulum hanging straight down", "a rod pointing sideways"),
                observation_doc=_PENDULUM_DOC,
            ),
            max_episode_steps=200,
        ),
        _metaworld(
            "drawer-open",
            goal="to open the drawer",
            positive_phrases=("a drawer that is fully open", "an open drawer"),
            negative_phrases=("a closed drawer", "a drawer pushed all the way in"),
            crop=Crop(top=100, left=20, height=320, width=320),
        ),
        _metaworld(
            "sweep-into",
            # The paper's sentence says "green cube"; MetaWorld 3 renders it in brown wood, and
            # the hole shows as the blue goal marker.
            goal="to minimize the distance between the brown cube and the hole marked by the blue dot",
            positive_phrases=("a cube inside the hole in the table", "a cube in the hole"),
            negative_phrases=("a cube far from the hole", "a cube lying on the table"),
            crop=Crop(top=150, left=100, height=240, width=240),
        ),
        _metaworld(
            "soccer",
            goal="to move the soccer ball into the goal",
            positive_phrases=("a soccer ball inside the goal net", "a ball in the goal"),
            negative_phrases=("a soccer ball outside the goal", "a ball far from the goal"),
            crop=Crop(top=100, left=40, height=320, width=320),
        ),
    )
}
"""Every preset by name."""


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Raises:
        UnknownNameError: No such preset; the message lists close matches and all names.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown preset {name!r}.{did_you_mean(name, PRESETS, n=3)} Presets: {', '.join(PRESETS)}; or give a spec "
            "such as dmc:<domain>-<task>, gym:<id> or metaworld:<task>"
        ) from None
