"""A diffusers user reproduces an exported schedule: search.reproduce (diffusers + torch only) draws the same
pixels as hpyn.generate from the export's σ and t arrays."""

from __future__ import annotations

import pytest

from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.generate import generate
from hpyn.presets import classic_setting, paper_setting
from hpyn.schedules import grid_info
from search.reproduce import sample

CONFIGS = {
    "paper-1S-residual": paper_setting("sd15", 3)[0].replace(freeu=(), guidance=5.0),
    "classic-2M-zero": classic_setting(3, 5.0),
    "2M-residual": SamplerConfig(steps=3, spacing="karras", rho=3.0, final="residual", epsilon=0.2, solver="dpmpp_2m",
                                 guidance=4.0),
    "3M-residual": SamplerConfig(steps=4, spacing="time", rho=1.5, final="residual", epsilon=0.1, solver="dpmpp_3m",
                                 guidance=6.0),
    "3M-zero": SamplerConfig(steps=4, spacing="time", rho=1.0, final="zero", sigma_min=0.1, solver="dpmpp_3m"),
    "freeu-diffusers": SamplerConfig(steps=3, epsilon=0.15, solver="dpmpp_1s", freeu_mapping="diffusers",
                                     freeu=(FreeUWindow(1, 3, 1.3, 1.2, 0.9, 0.5),)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_loop_matches_hpyn(tiny_model, name):
    config = CONFIGS[name]
    prompts, seeds = ["a photo of a cat", "a red car"], [3, 11]
    ours = generate(tiny_model, config, prompts, seeds)
    doc = {"config": config.to_dict(), **{k: v for k, v in grid_info(config, tiny_model.table).items()
                                          if k in ("sigmas", "timesteps")}}
    theirs = sample(tiny_model.pipe, doc, prompts, seeds)
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= 1 and diff.float().mean() < 0.05, (diff.max(), diff.float().mean())
