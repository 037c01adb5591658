"""``make_env``: one entry point for every env family and preset."""

from __future__ import annotations

import atexit
import difflib
import importlib
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from rlvlmf.envs.frames import Crop, FrameWrapper
from rlvlmf.envs.presets import PRESETS, Preset, get_preset
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError

DEFAULT_RENDER_SIZE = 224
"""Render width and height when neither the caller nor a preset gives one."""


@dataclass(frozen=True)
class Family:
    """How to build the envs of one spec prefix.

    Attributes:
        builder: ``"module:function"`` taking ``(name, width, height, camera,
            max_episode_steps, **family_options)`` and returning a rendering env.
        canonical: ``"module:function"`` normalising a name (``drawer-open`` ->
            ``drawer-open-v3``), or ``None`` when names are used as given.
        example: A spec shown in error messages.

    Builders choose the GL backend themselves (before importing MuJoCo-based packages), so a
    non-MuJoCo env never needs OpenGL.
    """

    builder: str
    canonical: str | None
    example: str


FAMILIES: dict[str, Family] = {
    "dmc": Family("rlvlmf.envs.dmc:make_dmc_env", None, "dmc:cartpole-swingup"),
    "gym": Family("rlvlmf.envs.gym_envs:make_gym_env", None, "gym:Pendulum-v1"),
    "metaworld": Family(
        "rlvlmf.envs.metaworld_envs:make_metaworld_env",
        "rlvlmf.envs.metaworld_envs:canonical_name",
        "metaworld:drawer-open",
    ),
}
"""Spec prefixes and their builders, imported only when used."""


def _load(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_RENDERING_ENVS: weakref.WeakSet[gym.Env] = weakref.WeakSet()


def _close_rendering_envs() -> None:
    for env in list(_RENDERING_ENVS):
        env.close()


def _schedule_close_at_exit() -> None:
    """Make sure envs that rendered are closed before the GL libraries shut down.

    Called after each env's first frame, so the hook comes after any exit hook that frame's
    imports and contexts registered; exit hooks run last-registered first. Hooks registered with
    ``threading._register_atexit`` run before thread pools stop (dm_control's OSMesa renderer
    needs its pool) and before every ``atexit`` hook (where dm_control and MuJoCo terminate the
    EGL display). That list cannot drop entries, so a repeat registration stays in it; running
    the hook again is a no-op once the envs are closed.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_rendering_envs)
            return
        except RuntimeError:  # the interpreter is already shutting down
            return
    atexit.unregister(_close_rendering_envs)
    atexit.register(_close_rendering_envs)


class TaskWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Outermost wrapper carrying what the env is about.

    Read with ``env.get_wrapper_attr("task")`` / ``("preset")`` / ``("family_spec")``.

    It also closes envs that rendered at interpreter exit if the caller did not: a renderer that
    dm_control or MuJoCo frees after their own exit hooks ran prints a screen of GL errors.
    """

    def __init__(self, env: gym.Env, task: TaskDescription, preset: Preset | None, family_spec: str):
        # Recorded so that ``env.spec.make()`` (and Gymnasium's env checker) can rebuild it.
        gym.utils.RecordConstructorArgs.__init__(self, task=task, preset=preset, family_spec=family_spec)
        super().__init__(env)
        # make_env's envs draw rgb_array frames only (a window or depth map is no VLM input).
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        self.task = task
        self.preset = preset
        self.family_spec = family_spec
        self._rendered = False
        self._closed = False

    def render(self) -> Any:
        """Render through the wrapped env (see ``make_env`` for the frame shape)."""
        frame = self.env.render()
        if not self._rendered and not self._closed:
            self._rendered = True
            _RENDERING_ENVS.add(self)
            _schedule_close_at_exit()
        return frame

    def close(self) -> None:
        """Free renderers and physics; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _RENDERING_ENVS.discard(self)
        super().close()


def split_spec(spec: str) -> tuple[str, str]:
    """``"dmc:walker-walk"`` -> ``("dmc", "walker-walk")``.

    Raises:
        UnknownNameError: Unknown family prefix or empty name.
    """
    family, sep, name = spec.partition(":")
    if not sep or family not in FAMILIES or not name:
        examples = ", ".join(f.example for f in FAMILIES.values())
        raise UnknownNameError(
            f"bad env spec {spec!r}: expected <family>:<name> with family one of "
            f"{', '.join(FAMILIES)} (e.g. {examples}), or a preset: {', '.join(PRESETS)}"
        )
    return family, name


def _canonical_spec(spec: str) -> str:
    family, name = split_spec(spec)
    canonical = FAMILIES[family].canonical
    return f"{family}:{_load(canonical)(name) if canonical else name}"


def default_task(spec: str, env: gym.Env) -> TaskDescription:
    """The task text for a family spec: a preset's if one uses the same spec, else generic.

    Args:
        spec: Canonical family spec.
        env: The built env (its ``observation_layout`` attribute, if any, documents the obs).
    """
    for preset in PRESETS.values():
        if _canonical_spec(preset.spec) == spec:
            return preset.task
    name = split_spec(spec)[1]
    words = name.replace("-", " ").replace("_", " ")
    try:
        layout = env.get_wrapper_attr("observation_layout")
    except AttributeError:
        layout = ""
    return TaskDescription(
        name=name,
        goal=f"to complete the {words} task",
        positive_phrases=(f"a successful {words}",),
        negative_phrases=(f"a failed {words}",),
        observation_doc=str(layout),
    )


def _check_options(family: str, builder: Callable[..., Any], options: dict[str, Any]) -> None:
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    fixed = {"name", "width", "height", "camera", "max_episode_steps"}
    allowed = sorted(set(parameters) - fixed)
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown option {key!r} for {family} envs{hint}; valid: width, height, camera, "
                f"crop, frame_size, max_episode_steps{''.join(', ' + a for a in allowed)}"
            )


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def make_env(
    spec: str | Preset,
    *,
    width: int | None = None,
    height: int | None = None,
    camera: str | int | None = None,
    crop: Crop | Sequence[int] | str | None = None,
    frame_size: int | None = None,
    max_episode_steps: int | None = None,
    **options: Any,
) -> gym.Env:
    """Build an env from a family spec or a preset name.

    ``render()`` returns ``(frame_size, frame_size, 3)`` uint8 frames when ``frame_size`` is set,
    else ``(crop height, crop width, 3)``, else ``(height, width, 3)``. Frames are drawn only when
    ``render()`` is called. The task text is ``env.get_wrapper_attr("task")`` and the preset (or
    ``None``) ``env.get_wrapper_attr("preset")``.

    Args:
        spec: ``dmc:<domain>-<task>``, ``gym:<id>`` (or ``gym:<module>:<id>`` for an env
            that ``module`` registers), ``metaworld:<task>`` (with or without ``-v3``), a
            preset name from ``PRESETS``, or a ``Preset`` (e.g. ``rlvlmf.envs.custom_preset``).
        width: Render width before the crop (default the preset's, else 224).
        height: Render height before the crop (default the preset's, else 224).
        camera: Camera name or id (default the preset's, else the family's).
        crop: ``(top, left, height, width)`` in rendered pixels (default the preset's).
        frame_size: Final square side after crop and resize (default the preset's
            ``vlm_frame_size``; for a family spec, no resize).
        max_episode_steps: Episode length (default the preset's, else the family's).
        **options: Family options: ``action_repeat`` (dmc); ``random_init``, ``task_seed``
            (metaworld); any ``gymnasium.make`` keyword (gym).

    Returns:
        A Gymnasium 1.x env.

    Raises:
        UnknownNameError: Unknown spec, preset, task or camera.
        ConfigError: Bad crop, size or option.
        MissingDependencyError: No headless OpenGL, or a package the env needs is missing.
    """
    preset: Preset | None = None
    if isinstance(spec, Preset) or ":" not in spec:
        preset = spec if isinstance(spec, Preset) else get_preset(spec)
        width = width if width is not None else preset.width
        height = height if height is not None else preset.height
        camera = camera if camera is not None else preset.camera
        crop = crop if crop is not None else preset.crop
        frame_size = frame_size if frame_size is not None else preset.vlm_frame_size
        if max_episode_steps is None:
            max_episode_steps = preset.max_episode_steps
        if preset.action_repeat != 1:
            options.setdefault("action_repeat", preset.action_repeat)
        spec = preset.spec
    family_name, name = split_spec(spec)
    family = FAMILIES[family_name]
    width = width if width is not None else DEFAULT_RENDER_SIZE
    height = height if height is not None else DEFAULT_RENDER_SIZE
    for key, value in (("width", width), ("height", height), ("frame_size", frame_size)):
        _positive(key, value)
    _positive("max_episode_steps", max_episode_steps)
    parsed_crop = Crop.parse(crop) if crop is not None else None
    if parsed_crop is not None:
        parsed_crop.check_fits(height, width)

    builder = _load(family.builder)
    _check_options(family_name, builder, options)
    env = builder(name, width=width, height=height, camera=camera,
                  max_episode_steps=max_episode_steps, **options)
    if parsed_crop is not None or frame_size is not None:
        env = FrameWrapper(env, parsed_crop, frame_size)
    canonical = _canonical_spec(spec)
    task = preset.task if preset is not None else default_task(canonical, env)
    return TaskWrapper(env, task, preset, canonical)
