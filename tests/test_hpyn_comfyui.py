"""ComfyUI export: the σ string parses back with ManualSigmas' own regex, samplers and notes follow the config."""

import re

import pytest
import torch

from hpyn.comfyui import comfyui_recipe, comfyui_sigmas
from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.presets import classic_setting, load_preset


def manual_sigmas(text: str) -> torch.Tensor:
    """What ComfyUI's ManualSigmas node does with its string (comfy_extras/nodes_custom_sampler.py)."""
    return torch.FloatTensor([float(i) for i in re.findall(r"[-+]?(?:\d*\.*\d+)", text)])


@pytest.mark.parametrize("cfg", [load_preset("sd15", 5), classic_setting(8),
                                 SamplerConfig(steps=4, spacing="karras", rho=12.0, epsilon=0.0292)])
def test_sigma_string_round_trips_through_manual_sigmas(cfg, sd_table):
    sig = cfg.sigmas(sd_table)
    text = comfyui_sigmas(sig.tolist())
    assert "e" not in text.lower()  # the node's regex has no exponent: 1e-05 would become two numbers
    assert torch.equal(manual_sigmas(text), sig.float())  # float32-exact


def test_tiny_sigmas_are_written_without_exponent():
    text = comfyui_sigmas([3.0, 1.25e-05, 0.0])
    assert text == "3, 0.0000125, 0"
    assert manual_sigmas(text).tolist() == pytest.approx([3.0, 1.25e-05, 0.0])


def test_recipe_names_sampler_and_what_cannot_be_expressed(sd_table):
    paper = load_preset("sdxl", 6)  # FreeU on steps 1-3 and 5 (spec D.3)
    r = comfyui_recipe(paper, paper.sigmas(sd_table).tolist())
    assert r["sampler_name"] == "euler" and r["exact_sampler"] and r["steps"] == 6 and r["cfg"] == paper.guidance
    assert any("cannot be expressed" in n and "[1, 4)" in n for n in r["notes"])
    r = comfyui_recipe(classic_setting(5), classic_setting(5).sigmas(sd_table).tolist())
    assert r["sampler_name"] == "dpmpp_2m" and r["sigmas"].endswith(", 0")
    assert not any("FreeU" in n or "residual" in n for n in r["notes"])
    cfg3 = SamplerConfig(steps=3, epsilon=0.2, solver="dpmpp_3m", freeu=(FreeUWindow(0, 3),))
    r = comfyui_recipe(cfg3, cfg3.sigmas(sd_table).tolist())
    assert r["sampler_name"] == "dpmpp_3m_sde" and not r["exact_sampler"]
    assert any("FreeU on every step" in n for n in r["notes"])


def test_recipe_rejects_a_grid_of_the_wrong_length(sd_table):
    with pytest.raises(ValueError, match="5-step config needs 6 sigmas, got 3"):
        comfyui_recipe(load_preset("sd15", 5), [14.6, 1.0, 0.1])
    with pytest.raises(ValueError, match="decreasing"):
        comfyui_recipe(SamplerConfig(steps=1, epsilon=0.1), [0.1, 14.6])
