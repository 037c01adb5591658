"""Crops, resizes and the GL backend choice (no env is built here)."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.envs import gl
from rlvlmf.envs.frames import Crop, crop_frame, resize_frame
from rlvlmf.errors import ConfigError, MissingDependencyError


def test_crop_frame_keeps_the_rectangle(rng: np.random.Generator) -> None:
    frame = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    crop = Crop(top=5, left=7, height=20, width=30)
    out = crop_frame(frame, crop)
    assert out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, frame[5:25, 7:37])
    assert crop_frame(frame, None) is frame


def test_resize_frame_sizes_and_keeps_flat_colour() -> None:
    frame = np.full((30, 40, 3), (10, 200, 90), dtype=np.uint8)
    square = resize_frame(frame, 16)
    assert square.shape == (16, 16, 3) and square.dtype == np.uint8
    np.testing.assert_array_equal(square, np.full((16, 16, 3), (10, 200, 90), np.uint8))
    assert resize_frame(frame, (12, 20)).shape == (12, 20, 3)
    assert resize_frame(frame, None) is frame


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1,2,3,4", (1, 2, 3, 4)), ([0, 0, 8, 9], (0, 0, 8, 9)), (Crop(1, 1, 2, 2), (1, 1, 2, 2))],
)
def test_crop_parse_accepts_strings_and_sequences(value: object, expected: tuple) -> None:
    assert Crop.parse(value).as_tuple() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1,2,3", "a,b,c,d", [1, 2, 3, 4, 5], "0,0,0,4", "-1,0,4,4"])
def test_crop_parse_rejects_bad_values(value: object) -> None:
    with pytest.raises(ConfigError, match="top, left, height, width"):
        Crop.parse(value)  # type: ignore[arg-type]


def test_crop_must_fit_the_rendered_image() -> None:
    Crop(10, 10, 20, 20).check_fits(30, 30)
    with pytest.raises(ConfigError, match="does not fit in the 30x40"):
        Crop(10, 25, 20, 20).check_fits(30, 40)


def test_gl_backend_is_chosen_and_exported() -> None:
    backend = gl.ensure_gl_backend()
    assert backend
    assert gl.os.environ["MUJOCO_GL"].lower() == backend


def test_gl_backend_missing_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(gl, "_chosen", None)
    monkeypatch.setattr(gl, "_PROBES", {"egl": lambda: False, "osmesa": lambda: False})
    with pytest.raises(MissingDependencyError) as info:
        gl.ensure_gl_backend()
    message = str(info.value)
    assert "apt-get install -y libegl1 libgl1-mesa-dri" in message
    assert "apt-get install -y libosmesa6" in message


def test_gl_backend_falls_back_to_osmesa(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setattr(gl, "_chosen", None)
    monkeypatch.setattr(gl, "_PROBES", {"egl": lambda: False, "osmesa": lambda: True})
    assert gl.ensure_gl_backend() == "osmesa"
    assert gl.os.environ["MUJOCO_GL"] == "osmesa"
    assert gl.os.environ["PYOPENGL_PLATFORM"] == "osmesa"


def test_gl_probes_find_a_working_library_here() -> None:
    # The machines this project targets have Mesa's EGL or OSMesa; the ctypes probes must see one.
    assert gl._egl_works() or gl._osmesa_works()
