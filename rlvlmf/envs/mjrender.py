"""Rendering helpers shared by every MuJoCo-based family: cameras and cheap frames.

Only call these after :func:`rlvlmf.envs.gl.ensure_gl_backend` (they import ``mujoco``).
"""

from __future__ import annotations

import difflib

import numpy as np

CameraSpec = str | int | None


def camera_names(model: object) -> list[str]:
    """Names of a ``mujoco.MjModel``'s cameras, in id order (unnamed ones as ``""``)."""
    import mujoco

    return [
        mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, index) or ""
        for index in range(model.ncam)  # type: ignore[attr-defined]
    ]


def resolve_camera(camera: CameraSpec, names: list[str], default: int = -1) -> int:
    """Turn a camera name or id (an int or a digit string) into an id.

    Args:
        camera: Name, id (``-1`` is MuJoCo's free camera), or ``None`` for ``default``.
        names: The model's camera names, from :func:`camera_names`.
        default: Id used when ``camera`` is None.

    Returns:
        A camera id in ``[-1, len(names))``.

    Raises:
        UnknownNameError: The name or id does not exist; the message lists the valid ones.
    """
    from rlvlmf.errors import UnknownNameError

    if camera is None:
        return default
    valid = (
        f"valid cameras: {', '.join(repr(n) for n in names if n) or 'none'}, "
        f"or ids -1..{len(names) - 1}"
    )
    if isinstance(camera, str) and not camera.lstrip("-").isdigit():
        if camera not in names:
            close = difflib.get_close_matches(camera, [n for n in names if n], n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise UnknownNameError(f"unknown camera {camera!r}{hint}; {valid}")
        return names.index(camera)
    index = int(camera)
    if not -1 <= index < len(names):
        raise UnknownNameError(f"camera id {index} is out of range; {valid}")
    return index


def make_rendering_cheap(model: object, width: int, height: int) -> None:
    """Prepare a model for fast offscreen frames; call before the first render.

    Software rendering spends most of its time on shadow maps and 4x multisampling; without them
    frames are several times faster and still clear. The offscreen buffer must be at least as
    large as the frames asked for.

    Args:
        model: A ``mujoco.MjModel`` (or dm_control's wrapper of one).
        width: Largest frame width that will be rendered.
        height: Largest frame height that will be rendered.
    """
    quality = model.vis.quality  # type: ignore[attr-defined]
    quality.shadowsize = 0
    quality.offsamples = 0
    global_ = model.vis.global_  # type: ignore[attr-defined]
    global_.offwidth = max(int(global_.offwidth), width)
    global_.offheight = max(int(global_.offheight), height)


def camera_is_upside_down(data: object, camera_id: int) -> bool:
    """Whether a fixed camera's up axis points below the horizon, so its frames need a 180° turn.

    MetaWorld's ``corner*`` cameras are defined this way. Needs ``mj_forward`` to have run.

    Args:
        data: A ``mujoco.MjData``.
        camera_id: Camera id; the free camera (``-1``) is never upside down.
    """
    if camera_id < 0:
        return False
    # cam_xmat's columns are the camera's x, y (up) and z axes in world coordinates.
    up_z = np.asarray(data.cam_xmat[camera_id]).reshape(3, 3)[2, 1]  # type: ignore[attr-defined]
    return bool(up_z < 0)
