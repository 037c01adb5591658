"""Backend registry: spec parsing, lazy built-ins, entry points, duplicates, listing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.cli import main
from rlvlmf.errors import ConfigError, MissingDependencyError, UnknownNameError
from rlvlmf.feedback.backends.scripted import ScriptedTeacher
from rlvlmf.feedback.registry import BUILTIN_BACKENDS, BackendSpec, list_backends, load_backend_class, make_backend, parse_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("scripted", BackendSpec("scripted")),
        ("OpenAI:gpt-4o", BackendSpec("openai", "gpt-4o")),
        ("openai:llava:13b@http://localhost:11434/v1", BackendSpec("openai", "llava:13b", "http://localhost:11434/v1")),
        (
            "openai:Qwen/Qwen2.5-VL-7B-Instruct@http://localhost:8000/v1",
            BackendSpec("openai", "Qwen/Qwen2.5-VL-7B-Instruct", "http://localhost:8000/v1"),
        ),
        ("openai:model@v2", BackendSpec("openai", "model@v2")),
        ("openai:model@v2@https://host/v1", BackendSpec("openai", "model@v2", "https://host/v1")),
        ("openai@http://localhost:8000/v1", BackendSpec("openai", None, "http://localhost:8000/v1")),
    ],
)
def test_parse_spec(spec: str, expected: BackendSpec) -> None:
    assert parse_spec(spec) == expected
    assert parse_spec(str(expected)) == expected


@pytest.mark.parametrize("spec", ["", ":gpt-4o", "openai:", "openai:m@http://"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_spec(spec)


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_backend("nosuch:model")
    assert all(family in str(info.value) for family in BUILTIN_BACKENDS)


def test_builtin_family_builds() -> None:
    assert load_backend_class("scripted") is ScriptedTeacher
    assert isinstance(make_backend("scripted", seed=1), ScriptedTeacher)


BUILT_WITH_RNG = {
    "scripted": "scripted:stoc",
    "openai": "openai:m@http://127.0.0.1:9/v1",
    "gemini": "gemini:m@http://127.0.0.1:9",
    "anthropic": "anthropic:m@http://127.0.0.1:9",
    "hf": "hf:some/model",
    "clip": "clip:some/model",
}


@pytest.mark.parametrize("family", sorted(BUILTIN_BACKENDS))
def test_every_builtin_backend_is_built_with_an_rng(family: str) -> None:
    # The training driver builds every backend with one call; none may refuse the rng.
    spec = BUILT_WITH_RNG[family]
    for rng in (5, np.random.default_rng(0)):
        assert make_backend(spec, rng=rng).family == family


def test_the_scripted_teacher_draws_from_the_rng_unless_given_a_seed() -> None:
    assert make_backend("scripted:stoc", rng=7).identity()["seed"] == 7
    assert make_backend("scripted:stoc", rng=7, seed=3).identity()["seed"] == 3, "an explicit seed option wins"
    a, b = (make_backend("scripted:stoc", rng=np.random.default_rng(1)) for _ in range(2))
    assert a.identity() == b.identity() and isinstance(a.identity()["seed"], int)
    rng = np.random.default_rng(1)
    first, second = make_backend("scripted:stoc", rng=rng), make_backend("scripted:stoc", rng=rng)
    assert first.identity()["seed"] != second.identity()["seed"], "each backend takes its own draw"
    assert make_backend("scripted:stoc").identity()["seed"] is None


PLUGIN = '''
from rlvlmf.feedback.base import Answer, Backend, Label

class EchoBackend(Backend):
    """Always no preference (a third-party test plugin)."""

    family = "echo"
    requires = ("{requires}",)
    key_env = ("ECHO_KEY",)

    def __init__(self, model, base_url, options):
        self.model, self.base_url, self.options = model, base_url, options

    @classmethod
    def from_spec(cls, model, base_url, **options):
        return cls(model, base_url, options)

    def identity(self):
        return {{"family": "echo", "model": self.model}}

    def label(self, pairs, task):
        return [Answer(Label.NONE) for _ in pairs]
'''


def install_plugin(root: Path, dist: str, entries: dict[str, str], requires: str = "json") -> None:
    """Install a distribution with rlvlmf.backends entry points into ``root`` (on sys.path)."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[rlvlmf.backends]\n{lines}\n")
    (root / f"{dist}_mod.py").write_text(PLUGIN.format(requires=requires))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.endswith("_mod")]:
        del sys.modules[name]


def test_entry_point_family(plugin_path: Path) -> None:
    install_plugin(plugin_path, "echoplug", {"echo": "echoplug_mod:EchoBackend"})
    backend = make_backend("echo:big/model@https://example.invalid/v1", temperature=0)
    assert type(backend).__name__ == "EchoBackend"
    assert (backend.model, backend.base_url, backend.options) == ("big/model", "https://example.invalid/v1", {"temperature": 0})
    [info] = [i for i in list_backends() if i.family == "echo"]
    assert info.installed and info.key_env == ("ECHO_KEY",) and "third-party" in info.description


def test_entry_point_missing_requirement_shows_as_not_installed(plugin_path: Path) -> None:
    install_plugin(plugin_path, "echoplug", {"echo": "echoplug_mod:EchoBackend"}, requires="surely_not_installed_pkg")
    [info] = [i for i in list_backends() if i.family == "echo"]
    assert not info.installed and info.missing == ("surely_not_installed_pkg",)


def test_entry_point_whose_module_is_missing(plugin_path: Path) -> None:
    install_plugin(plugin_path, "ghost", {"ghost": "ghost_backend_module:Ghost"})
    [info] = [i for i in list_backends() if i.family == "ghost"]
    assert not info.installed and info.missing == ("ghost_backend_module",)
    with pytest.raises(MissingDependencyError, match="pip install ghost_backend_module"):
        make_backend("ghost")


def test_duplicate_registrations_are_refused(plugin_path: Path) -> None:
    install_plugin(plugin_path, "one", {"echo": "one_mod:EchoBackend"})
    install_plugin(plugin_path, "two", {"echo": "two_mod:EchoBackend"})
    with pytest.raises(ConfigError, match="registered twice"):
        make_backend("echo")


def test_shadowing_a_builtin_is_refused(plugin_path: Path) -> None:
    install_plugin(plugin_path, "evil", {"openai": "evil_mod:EchoBackend"})
    with pytest.raises(ConfigError, match="built in"):
        make_backend("scripted")


def test_backends_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["family", "usable"]
    assert any(line.split()[:2] == ["scripted", "yes"] for line in out.splitlines())
    assert all(family in out for family in BUILTIN_BACKENDS)
