"""The one-line error helpers."""

from __future__ import annotations

import pytest

from rlvlmf.envs.presets import get_preset
from rlvlmf.errors import UnknownNameError, did_you_mean


def test_did_you_mean_names_the_closest_valid_names() -> None:
    names = ["drawer-open", "drawer-close", "door-open", "soccer"]
    assert did_you_mean("drawer-opn", names) == " Did you mean drawer-open, drawer-close, door-open?"
    assert did_you_mean("drawer-opn", names, n=1) == " Did you mean drawer-open?"
    assert did_you_mean("zzz", names) == ""


def test_an_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown preset 'pendulm'\. Did you mean pendulum\? Presets: "):
        get_preset("pendulm")
