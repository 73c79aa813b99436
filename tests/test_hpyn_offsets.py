"""SamplerConfig.offsets: per-point log-σ offsets of the interior grid points (a "refined" grid, search.refine)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from hpyn.comfyui import comfyui_recipe
from hpyn.config import SamplerConfig
from hpyn.noise import NoiseTable
from hpyn.presets import classic_setting, load_preset
from hpyn.schedules import grid_info
from hpyn.scheduler import HpynScheduler

TABLE = NoiseTable.from_betas()
CONFIGS = [load_preset("sd15", 5), classic_setting(5, 5.0), SamplerConfig(steps=4, spacing="beta", final="zero")]


@pytest.mark.parametrize("config", CONFIGS, ids=["paper", "karras", "beta"])
def test_zero_offsets_give_the_identical_grid(config):
    plain = config.sigmas(TABLE)
    refined = config.replace(offsets=(0.0,) * (config.steps - 1)).sigmas(TABLE)
    assert torch.equal(plain, refined)


def test_offsets_move_only_the_interior_points():
    config = load_preset("sd15", 5)
    off = (0.2, -0.1, 0.05, -0.3)
    plain, refined = config.sigmas(TABLE), config.replace(offsets=off).sigmas(TABLE)
    assert refined[0] == plain[0] and refined[-1] == plain[-1]
    assert torch.allclose(refined[1:-1].log() - plain[1:-1].log(), torch.tensor(off, dtype=torch.float64))
    zero = classic_setting(5, 5.0).replace(offsets=(0.1, 0.1, 0.1, 0.1)).sigmas(TABLE)
    assert zero[-1] == 0 and zero[-2] == pytest.approx(TABLE.sigma_min * math.exp(0.1))


def test_round_trip_and_no_key_without_offsets():
    config = load_preset("sd15", 5)
    assert "offsets" not in config.to_dict()   # existing configs, exports and presets serialize as before
    refined = config.replace(offsets=[0.25, -0.125, 0.0, 0.5])
    assert refined.offsets == (0.25, -0.125, 0.0, 0.5)   # a list becomes a tuple (hashable, frozen)
    d = json.loads(refined.to_json())
    assert d["offsets"] == [0.25, -0.125, 0.0, 0.5]
    assert SamplerConfig.from_dict(d) == refined and SamplerConfig.from_json(refined.to_json()) == refined
    assert torch.equal(SamplerConfig.from_dict(d).sigmas(TABLE), refined.sigmas(TABLE))


@pytest.mark.parametrize("offsets, match", [
    ((0.1, 0.2), r"steps−1 = 4 values.*got 2"),
    ((0.1, 0.2, 0.3, 0.4, 0.5), r"steps−1 = 4 values.*got 5"),
    ((0.1, float("nan"), 0.0, 0.0), r"offsets\[σ_2\] must be a finite number"),
    ((0.1, "x", 0.0, 0.0), r"offsets\[σ_2\] must be a finite number"),
    ("0.1", r"list of 4 log-σ offsets"),
    (0.1, r"list of 4 log-σ offsets"),
])
def test_bad_offsets_are_refused(offsets, match):
    with pytest.raises(ValueError, match=match):
        load_preset("sd15", 5).replace(offsets=offsets)


def test_a_grid_that_stops_decreasing_is_refused_naming_the_offsets():
    config = load_preset("sd15", 5).replace(offsets=(0.0, 1.5, 0.0, 0.0))   # σ_2·e^1.5 > σ_1
    with pytest.raises(ValueError, match=r"offsets \[0.0, 1.5, 0.0, 0.0\] make the σ grid not strictly decreasing"):
        config.sigmas(TABLE)
    with pytest.raises(ValueError, match="not strictly decreasing"):   # above σ_max
        load_preset("sd15", 5).replace(offsets=(1.5, 0.0, 0.0, 0.0)).sigmas(TABLE)


def test_one_step_config_takes_no_offsets():
    one = SamplerConfig(steps=1, epsilon=0.5)
    assert torch.equal(one.replace(offsets=()).sigmas(TABLE), one.sigmas(TABLE))
    with pytest.raises(ValueError, match="steps−1 = 0"):
        one.replace(offsets=(0.1,))


def test_scheduler_comfyui_and_grid_info_use_the_refined_grid():
    refined = load_preset("sd15", 5).replace(offsets=(0.2, -0.1, 0.05, -0.3))
    s = refined.sigmas(TABLE)
    info = grid_info(refined, TABLE)
    assert info["sigmas"] == s.tolist() and info["config"]["offsets"] == list(refined.offsets)
    sched = HpynScheduler.from_sampler_config(refined, {"num_train_timesteps": 1000, "beta_start": 0.00085,
                                                        "beta_end": 0.012, "beta_schedule": "scaled_linear"})
    assert torch.allclose(sched.sigmas, s)
    recipe = comfyui_recipe(refined, s.tolist())
    assert recipe["sigmas"].startswith("14.6146") and any("refined" in n for n in recipe["notes"])


def test_generate_with_offsets_on_the_toy():
    from hpyn import toy
    if not (toy.PIPELINE / "model_index.json").exists():
        pytest.skip("toy weights not built")
    from hpyn.generate import generate
    from hpyn.models import load_model
    model = load_model("toy", device="cpu")
    config = load_preset("sd15", 5).replace(guidance=2.0)
    prompts, seeds = ["a photo of a sneaker", "a photo of a bag"], [0, 1]
    plain = generate(model, config, prompts, seeds)
    same = generate(model, config.replace(offsets=(0.0,) * 4), prompts, seeds)
    moved = generate(model, config.replace(offsets=(0.3, -0.2, 0.1, -0.1)), prompts, seeds)
    assert torch.equal(plain, same)
    assert moved.shape == plain.shape and moved.dtype == torch.uint8 and not torch.equal(moved, plain)
