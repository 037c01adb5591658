"""State saved before a reward-fit field existed keeps the behaviour it was saved with."""

from __future__ import annotations

import json
from pathlib import Path

from rlvlmf.reward.config import FIELDS_SAVED_STATE_LACKS, PREFERENCE_SCALE_DEFAULT, SHIFT_PIXELS_DEFAULT
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.training.builder import build_config, load_config, read_config, save_config


def _without_new_fields(reward_model: dict) -> dict:
    return {k: v for k, v in reward_model.items() if k not in FIELDS_SAVED_STATE_LACKS}


def test_a_run_saved_before_the_fields_resumes_with_its_old_fit_but_a_written_config_gets_the_defaults(
        tmp_path: Path) -> None:
    save_config(build_config("pendulum", steps=100), tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    data["reward_model"] = _without_new_fields(data["reward_model"])
    path.write_text(json.dumps(data))
    resumed = load_config(tmp_path).reward_model
    assert (resumed.preference_scale, resumed.shift_pixels) == (1.0, 0)
    written = read_config(path).reward_model  # --config FILE: a person's file, today's defaults
    assert (written.preference_scale, written.shift_pixels) == (PREFERENCE_SCALE_DEFAULT, SHIFT_PIXELS_DEFAULT)


def test_a_reward_model_saved_before_the_fields_loads_with_its_old_fit() -> None:
    config = build_config("pendulum", ["reward_model.input=state"], steps=100).reward_model
    state = RewardEnsemble(config, seed=0).state()
    assert RewardEnsemble.from_state(state).config.preference_scale == PREFERENCE_SCALE_DEFAULT
    state["config"] = _without_new_fields(state["config"])
    old = RewardEnsemble.from_state(state).config
    assert (old.preference_scale, old.shift_pixels) == (1.0, 0)
