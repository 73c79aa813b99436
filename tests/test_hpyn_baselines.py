"""The samplers users pick, as σ grids and presets: Align Your Steps, Beta sampling, UniPC-Karras (hpyn.schedules,
hpyn.presets), checked against their published sources."""

import itertools
import math

import pytest
import torch

from hpyn import schedules as S
from hpyn.config import SamplerConfig
from hpyn.noise import NoiseTable
from hpyn.presets import PRESET_INFO, PRESETS, ays_setting, beta_setting, preset, unipc_karras_setting


def sd_grid(spacing, steps, table):
    return S.build(table, steps, spacing=spacing, final="zero").tolist()


@pytest.mark.parametrize("spacing,key", [("ays_sd15", "StableDiffusion"), ("ays_sdxl", "StableDiffusionXL")])
def test_ays_ten_steps_are_the_published_schedule(spacing, key, sd_table):
    from diffusers.schedulers import AysSchedules

    g = sd_grid(spacing, 10, sd_table)
    assert g[:-1] == list(S.AYS_TABLES[spacing][:-1]) and g[-1] == 0.0   # σ_min becomes 0, as ComfyUI writes it
    # the how-to's timesteps as σ's of SD's table (ComfyUI builds ā by a float64 cumprod, diffusers in float32)
    ts = AysSchedules[key + "Timesteps"]
    assert g[:-1] == pytest.approx([sd_table.sigmas[t].item() for t in ts], rel=1e-5)
    # diffusers' 3-decimal continuous σ's: within 1.5 % (SDXL's 0.113 vs 0.1114)
    assert g == pytest.approx(AysSchedules[key + "Sigmas"], rel=1.5e-2)


@pytest.mark.parametrize("spacing", ["ays_sd15", "ays_sdxl"])
def test_ays_log_linear_interpolation(spacing, sd_table):
    ref = S.AYS_TABLES[spacing]
    # 5 steps: 6 points at every other node of the 11-point table
    assert sd_grid(spacing, 5, sd_table) == pytest.approx(list(ref[::2][:-1]) + [0.0], rel=1e-12)
    # 20 steps: the nodes, and between two nodes their geometric mean (log σ linear in position)
    g = sd_grid(spacing, 20, sd_table)
    assert g[0:-1:2] == pytest.approx(ref[:-1], rel=1e-12)
    assert g[1::2] == pytest.approx([math.sqrt(a * b) for a, b in itertools.pairwise(ref)], rel=1e-12)
    assert g[-1] == 0.0 and all(b < a for a, b in itertools.pairwise(g))


def test_ays_refuses_a_model_with_another_noise_schedule():
    other = NoiseTable.from_betas(0.0001, 0.02, beta_schedule="linear")
    with pytest.raises(ValueError, match=r"ays_sd15.*SD's noise schedule.*this model's runs from"):
        SamplerConfig(steps=5, spacing="ays_sd15", final="zero").sigmas(other)


def test_beta_sampling_matches_comfyui_rule(sd_table):
    from scipy.stats import beta

    g = sd_grid("beta", 5, sd_table)
    ts = [999, 876, 637, 362, 123]   # rint(999·F⁻¹(1 − i/5)) for Beta(0.6, 0.6)
    assert g == [sd_table.sigmas[t].item() for t in ts] + [0.0]
    # independent check: the Beta(0.6, 0.6) CDF at t_i/999 is 1 − i/n up to the rounding of t
    for i, t in enumerate(ts):
        lo, hi = beta.cdf((t - 0.5) / 999, 0.6, 0.6), beta.cdf((t + 0.5) / 999, 0.6, 0.6)
        assert lo <= 1 - i / 5 <= hi + 1e-12
    assert sd_grid("beta", 1, sd_table) == [sd_table.sigma_max, 0.0]


def test_beta_sampling_refuses_repeated_timesteps(sd_table):
    sd_grid("beta", 138, sd_table)
    with pytest.raises(ValueError, match="139 steps put two grid points on one of the 1000 timesteps"):
        sd_grid("beta", 139, sd_table)


@pytest.mark.parametrize("spacing", sorted(S.ZERO_ENDED))
def test_published_grids_need_the_zero_ending_and_no_sigma_min(spacing):
    with pytest.raises(ValueError, match=rf"spacing '{spacing}'.*final='zero', got final='residual'"):
        SamplerConfig(steps=5, spacing=spacing, epsilon=0.1)
    with pytest.raises(ValueError, match=rf"sigma_min=0.05 has no effect with spacing '{spacing}'"):
        SamplerConfig(steps=5, spacing=spacing, final="zero", sigma_min=0.05)
    with pytest.raises(ValueError, match="needs final='zero' and no sigma_min"):
        S.build(NoiseTable.from_betas(), 5, spacing=spacing, final="zero", sigma_min=0.05)


def test_unknown_spacing_lists_every_name():
    with pytest.raises(ValueError, match=r"'gits'.*\['ays_sd15', 'ays_sdxl', 'beta', 'karras', 'time'\]"):
        SamplerConfig(steps=5, spacing="gits", final="zero")


def test_presets_named_and_described():
    assert PRESETS == ("paper", "dpmpp2m-karras", "ays", "beta", "unipc-karras")
    assert set(PRESET_INFO) == set(PRESETS) and all(PRESET_INFO.values())
    with pytest.raises(ValueError, match=r"'euler'.*'unipc-karras'"):
        preset("euler", "sd15", 5)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("steps", [1, 2, 5, 8])
def test_every_preset_builds_and_round_trips(name, steps, sd_table):
    cfg = preset(name, "sd15", steps)
    sig = cfg.sigmas(sd_table)
    assert len(sig) == steps + 1 and bool((sig[1:] < sig[:-1]).all())
    assert SamplerConfig.from_json(cfg.to_json()) == cfg


def test_ays_preset_picks_the_family_table():
    assert ays_setting("sdxl", 6).spacing == "ays_sdxl"
    assert ays_setting("sd15", 6).spacing == ays_setting(None, 6).spacing == "ays_sd15"   # toy/unknown: SD1.5's
    assert preset("ays", "sdxl", 6) == ays_setting("sdxl", 6)
    assert ays_setting("sd15", 6).solver == beta_setting(6).solver == "dpmpp_2m"


def test_unipc_karras_grid_is_diffusers_use_karras_sigmas(sd_table):
    from diffusers import UniPCMultistepScheduler

    sch = UniPCMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  use_karras_sigmas=True, final_sigmas_type="zero")
    for n in (4, 8):
        sch.set_timesteps(n)
        cfg = unipc_karras_setting(n)
        assert cfg.solver == "unipc_bh2" and cfg.final == "zero"
        ours = cfg.sigmas(sd_table)
        assert torch.allclose(ours, sch.sigmas.double(), rtol=1e-6, atol=0)   # diffusers keeps float32
