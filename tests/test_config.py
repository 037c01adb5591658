from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from rlvlmf.config import apply_overrides, from_dict, to_dict
from rlvlmf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    batch_size: int = 64
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError("batch_size must be positive")


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "run"
    steps: int = 1000
    mode: Literal["image", "state"] = "image"
    resume: bool = False
    limit: float | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_overrides_parse_by_field_type() -> None:
    cfg = apply_overrides(
        Outer(),
        ["steps=2e3", "mode=state", "resume=true", "limit=1.5", "inner.batch_size=256", "inner.hidden=64,32"],
    )
    assert cfg.steps == 2000
    assert cfg.mode == "state"
    assert cfg.resume is True
    assert cfg.limit == 1.5
    assert cfg.inner == Inner(batch_size=256, hidden=(64, 32))
    assert apply_overrides(cfg, ["limit=none"]).limit is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stepz=3", "unknown config key 'stepz'"),
        ("steps=1.5", "expected an integer"),
        ("mode=pixels", "is not one of"),
        ("resume=maybe", "expected true/false"),
        ("inner.batch_size=-1", "batch_size must be positive"),
        ("noequals", "key=value"),
        ("steps.x=1", "has no sub-fields"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Outer(), [override])


def test_dict_round_trip_and_unknown_fields() -> None:
    cfg = Outer(name="x", inner=Inner(hidden=(8,)))
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(Outer, {"nope": 1})


def test_top_level_names_resolve() -> None:
    import rlvlmf

    for name in rlvlmf.__all__:
        assert getattr(rlvlmf, name) is not None
    with pytest.raises(AttributeError):
        rlvlmf.not_a_name  # noqa: B018
