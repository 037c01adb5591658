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


@dataclasses.dataclass(frozen=True)
class Plain:
    kind: Literal["plain"] = dataclasses.field(default="plain", init=False)


@dataclasses.dataclass(frozen=True)
class FromFile:
    file: str
    kind: Literal["file"] = dataclasses.field(default="file", init=False)


@dataclasses.dataclass(frozen=True)
class Tagged:
    source: Plain | FromFile = dataclasses.field(default_factory=Plain)


def test_tagged_union_round_trips_with_its_kind() -> None:
    cfg = Tagged(FromFile("r.py"))
    assert to_dict(cfg) == {"source": {"file": "r.py", "kind": "file"}}
    assert from_dict(Tagged, to_dict(cfg)) == cfg
    assert from_dict(Tagged, to_dict(Tagged())) == Tagged()
    with pytest.raises(ConfigError, match="kind must be one of"):
        from_dict(Tagged, {"source": {"kind": "nope"}})
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(Tagged, {"source": {"kind": "plain", "file": "r.py"}})


def test_tagged_union_reads_kind_or_kind_colon_value_text() -> None:
    assert from_dict(Tagged, {"source": "file:a.py"}) == Tagged(FromFile("a.py"))
    assert apply_overrides(Tagged(FromFile("a.py")), ["source=plain"]) == Tagged()
    assert apply_overrides(Tagged(), ["source=file:b.py"]) == Tagged(FromFile("b.py"))
    assert apply_overrides(Tagged(FromFile("a.py")), ["source.file=c.py"]) == Tagged(FromFile("c.py"))
    for text, message in [("file", "needs its file: write file:FILE"), ("plain:x", "cannot be written"),
                          ("other", "not one of")]:
        with pytest.raises(ConfigError, match=message):
            apply_overrides(Tagged(), [f"source={text}"])


def test_top_level_names_resolve() -> None:
    import rlvlmf

    for name in rlvlmf.__all__:
        assert getattr(rlvlmf, name) is not None
    # Each name is exported from one module only (a second listing would silently win).
    listed = [name for names in rlvlmf._EXPORTS.values() for name in names]
    assert len(listed) == len(set(listed)) and set(listed) == set(rlvlmf.__all__) - {"__version__"}
    with pytest.raises(AttributeError):
        rlvlmf.not_a_name  # noqa: B018
