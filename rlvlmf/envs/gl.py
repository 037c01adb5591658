"""Choose MuJoCo's headless OpenGL backend before anything imports it.

MuJoCo, dm_control and PyOpenGL read ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM`` once, when they are
first imported (dm_control) or when the first renderer is made (Gymnasium), and default to GLFW,
which needs a display. :func:`ensure_gl_backend` therefore runs before those imports: it keeps a
backend the user chose, otherwise probes EGL (GPU or Mesa's llvmpipe) and then OSMesa with
``ctypes`` (a few milliseconds, no subprocess) and exports the first one that initialises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

from rlvlmf.errors import MissingDependencyError

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("egl", "osmesa")
"""Headless backends tried in this order."""

INSTALL_HINT = (
    "no headless OpenGL library works on this machine: MuJoCo needs EGL (Debian packages "
    "libegl1 and libgl1-mesa-dri: `apt-get install -y libegl1 libgl1-mesa-dri`) or OSMesa "
    "(package libosmesa6: `apt-get install -y libosmesa6`); or set MUJOCO_GL yourself"
)

_EGL_PLATFORM_DEVICE_EXT = 0x313F
_chosen: str | None = None


def _egl_works() -> bool:
    """Whether an EGL device display can be initialised, as dm_control and MuJoCo do it."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
    except OSError:
        return False
    lib.eglGetProcAddress.restype = ctypes.c_void_p
    lib.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_ptr = lib.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_ptr = lib.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query_ptr or not display_ptr:
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_ptr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(
        display_ptr
    )
    lib.eglInitialize.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_int),
    ]
    devices = (ctypes.c_void_p * 16)()
    count = ctypes.c_int(0)
    if not query_devices(16, devices, ctypes.byref(count)):
        return False
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    for index in range(count.value):
        display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[index], None)
        # The display stays initialised: eglInitialize on it again later is a no-op.
        if display and lib.eglInitialize(display, ctypes.byref(major), ctypes.byref(minor)):
            return True
    return False


def _osmesa_works() -> bool:
    """Whether libOSMesa can be loaded (PyOpenGL finds it the same way)."""
    name = ctypes.util.find_library("OSMesa")
    if name is None:
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


_PROBES = {"egl": _egl_works, "osmesa": _osmesa_works}


def ensure_gl_backend() -> str:
    """Export ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) for headless rendering, once per process.

    Must run before ``dm_control`` or ``metaworld`` is imported. A ``MUJOCO_GL`` set by the user
    is kept as is.

    Returns:
        The backend in use (``"egl"``, ``"osmesa"`` or whatever the user set).

    Raises:
        MissingDependencyError: Neither EGL nor OSMesa works; the message names the Debian
            packages and the command that installs them.
    """
    global _chosen
    if _chosen is not None:
        return _chosen
    user_choice = os.environ.get("MUJOCO_GL")
    if user_choice:
        _chosen = user_choice.lower()
        return _chosen
    if "dm_control" in sys.modules:
        logger.warning("dm_control was imported before rlvlmf chose a GL backend; rendering may fail")
    for backend in BACKENDS:
        if _PROBES[backend]():
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            logger.debug("MuJoCo rendering backend: %s", backend)
            _chosen = backend
            return backend
    raise MissingDependencyError(INSTALL_HINT)
