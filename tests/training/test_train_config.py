"""The typed reward mode: the --reward flag, config.json (new and old), --set, run names."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlvlmf.config import apply_overrides, from_dict, to_dict
from rlvlmf.errors import ConfigError
from rlvlmf.evaluation.runs import load_run
from rlvlmf.training.builder import default_run_name, load_config, save_config
from rlvlmf.training.config import (
    ClipMode,
    CodeMode,
    EnvMode,
    PreferenceMode,
    TrainConfig,
    default_config,
    parse_reward,
)

MODES = [PreferenceMode(), EnvMode(), ClipMode("openai/clip-vit-base-patch32"), CodeMode("drawer_reward.json")]


@pytest.mark.parametrize(
    ("flag", "backend", "mode"),
    [
        ("preference", "scripted", PreferenceMode()),
        ("env", "scripted", EnvMode()),
        ("clip", "clip:openai/clip-vit-base-patch32", ClipMode("openai/clip-vit-base-patch32")),
        ("code:runs/r.py", "scripted", CodeMode("runs/r.py")),
        ("code:C:/rewards/r.py", "scripted", CodeMode("C:/rewards/r.py")),  # only the first colon splits
    ],
)
def test_reward_flag_reads_as_a_typed_mode(flag: str, backend: str, mode: object) -> None:
    parsed = parse_reward(flag, backend)
    assert parsed == mode
    assert parsed.flag == flag


@pytest.mark.parametrize(
    ("flag", "backend", "message"),
    [
        ("clip", "scripted", "clip needs --backend clip:<model id or path>"),
        ("pixels", "scripted", "reward must be preference, env, clip or code:FILE"),
        ("code:", "scripted", "reward must be .*code needs"),
        ("env:x", "scripted", "reward must be"),
    ],
)
def test_bad_reward_flag_says_what_to_write(flag: str, backend: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_reward(flag, backend)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.kind)
def test_config_json_keeps_the_mode_with_its_kind(tmp_path: Path, mode: object) -> None:
    config = dataclasses.replace(default_config("pendulum"), reward=mode)
    assert to_dict(config)["reward"]["kind"] == mode.kind  # type: ignore[attr-defined]
    assert from_dict(TrainConfig, to_dict(config)) == config
    save_config(config, tmp_path)
    assert load_config(tmp_path) == config


@pytest.mark.parametrize(
    ("saved", "backend", "mode"),
    [
        ("preference", "scripted", PreferenceMode()),
        ("env", "scripted", EnvMode()),
        ("clip", "clip:openai/clip-vit-base-patch32", ClipMode("openai/clip-vit-base-patch32")),
        ("code:drawer_reward.json", "scripted", CodeMode("drawer_reward.json")),
    ],
)
def test_old_config_json_with_reward_text_still_loads(tmp_path: Path, saved: str, backend: str, mode: object) -> None:
    data = to_dict(default_config("pendulum"))
    data.update(reward=saved, backend=backend)
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path).reward == mode


def test_set_switches_the_mode_or_one_of_its_fields() -> None:
    config = default_config("pendulum")
    assert apply_overrides(config, ["reward=env"]).reward == EnvMode()
    code = apply_overrides(config, ["reward=code:a.py"])
    assert code.reward == CodeMode("a.py") and not code.learns_reward
    assert apply_overrides(code, ["reward.file=b.py"]).reward == CodeMode("b.py")
    assert apply_overrides(config, ["reward=clip:m"]).reward == ClipMode("m")
    with pytest.raises(ConfigError, match="clip needs its model"):
        apply_overrides(config, ["reward=clip"])


def test_config_refuses_reward_text() -> None:
    with pytest.raises(ConfigError, match="parse_reward"):
        dataclasses.replace(default_config("pendulum"), reward="env")


@pytest.mark.parametrize(
    ("mode", "backend", "name"),
    [
        (PreferenceMode(), "openai:gpt-4o@http://localhost:1", "pendulum-preference-openai_gpt-4o-s3"),
        (EnvMode(), "scripted", "pendulum-env-s3"),
        (ClipMode("openai/clip-vit-base-patch32"), "clip:openai/clip-vit-base-patch32",
         "pendulum-clip-clip_openai_clip-vit-base-patch32-s3"),
        (CodeMode("r.py"), "scripted", "pendulum-code-s3"),
    ],
)
def test_default_run_name_per_mode(mode: object, backend: str, name: str) -> None:
    config = dataclasses.replace(default_config("pendulum"), reward=mode, backend=backend, seed=3)
    assert default_run_name(config) == name


@pytest.mark.parametrize("saved", ["code:r.py", {"kind": "code", "file": "r.py"}])
def test_report_labels_old_and_new_runs_alike(tmp_path: Path, saved: object) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"preset": "pendulum", "reward": saved, "backend": "scripted"}))
    assert load_run(tmp_path).method == "code:r.py"


def test_schedules_use_the_agents_sac_presets() -> None:
    from rlvlmf.agents.sac import DMC_PEBBLE, METAWORLD

    assert all(default_config(p).sac == DMC_PEBBLE for p in ("cartpole-swingup", "walker-walk", "cheetah-run", "reacher-easy"))
    assert all(default_config(p).sac == METAWORLD for p in ("drawer-open", "sweep-into", "soccer"))
    assert default_config("pendulum").sac == dataclasses.replace(DMC_PEBBLE, hidden_sizes=(256, 256), batch_size=256)


def test_sweep_run_names_are_path_safe_and_keep_their_parts() -> None:
    from rlvlmf.training.builder import sweep_run_name

    assert sweep_run_name("preference:scripted[x=1]", "dmc/cartpole", 2) == "preference-scripted-x-1__dmc-cartpole__s2"
    assert sweep_run_name("env", "PointReach-v0", 0) == "env__PointReach-v0__s0"
