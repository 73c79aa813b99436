"""Guidance in a limited interval (Kynkäänniemi et al. 2024): CFG only for σ_lo < σ ≤ σ_hi, the conditional
prediction alone (one U-Net batch) elsewhere; the SamplerConfig field, the denoiser and generate()."""

import pytest
import torch

from hpyn.config import SamplerConfig
from hpyn.denoisers import CFGDenoiser
from hpyn.generate import generate
from hpyn.models import load_model
from hpyn.presets import classic_setting, load_preset

PROMPTS = ["a photo of a cat", "a red car"]


class CountingUNet:
    """Passes calls through to a UNet and records the batch size of each."""

    def __init__(self, unet):
        self.unet, self.batches = unet, []

    @property
    def dtype(self):
        return self.unet.dtype

    def __call__(self, x, t, **kw):
        self.batches.append(x.shape[0])
        return self.unet(x, t, **kw)


# ---- the config field -------------------------------------------------------------------------------------------
def test_default_none_and_old_configs_unchanged():
    cfg = load_preset("sd15", 5)
    assert cfg.guidance_interval is None and "guidance_interval" not in cfg.to_dict()
    assert all(cfg.guided_at(s) for s in (100.0, 1.0, 1e-3))


def test_json_round_trip_and_semantics():
    cfg = classic_setting(6).replace(guidance_interval=[0.3, 5])
    assert cfg.guidance_interval == (0.3, 5.0)
    assert cfg.to_dict()["guidance_interval"] == [0.3, 5.0]
    assert SamplerConfig.from_json(cfg.to_json()) == cfg
    assert [cfg.guided_at(s) for s in (5.0001, 5.0, 1.0, 0.3, 0.1)] == [False, True, True, False, False]


@pytest.mark.parametrize("bad,match", [
    ((1.0, 1.0), r"σ_lo < σ_hi, got \(1.0, 1.0\)"), ((2.0, 1.0), r"σ_lo < σ_hi, got \(2.0, 1.0\)"),
    ((-0.5, 2.0), r"σ_lo must be ≥ 0, got -0.5"), ((0.1, float("nan")), r"σ_hi must be a finite number, got nan"),
    ((0.1,), r"\(σ_lo, σ_hi\) or None, got \(0.1,\)"), ("ab", r"\(σ_lo, σ_hi\) or None, got 'ab'"),
    ((True, 2.0), "σ_lo must be a finite number, got True")])
def test_bad_intervals_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        classic_setting(5).replace(guidance_interval=bad)
    with pytest.raises(ValueError):
        SamplerConfig.from_dict({**classic_setting(5).to_dict(), "guidance_interval": bad})


# ---- the denoiser ---------------------------------------------------------------------------------------------
def _denoisers(m, interval, w=5.0):
    cond, uncond, _, _ = m.encode_prompts(PROMPTS)
    counted = CountingUNet(m.unet)
    gi = CFGDenoiser(counted, m.table, cond, uncond, guidance=w, guidance_interval=interval)
    plain = CFGDenoiser(m.unet, m.table, cond, uncond, guidance=w)
    cond_only = CFGDenoiser(m.unet, m.table, cond, uncond, guidance=1.0)
    return gi, counted, plain, cond_only


def test_inside_is_cfg_outside_is_the_conditional_branch_in_one_batch(tiny_model):
    gi, counted, plain, cond_only = _denoisers(tiny_model, (0.5, 4.0))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3.0
    for sigma in (4.0, 2.0, 0.51):        # inside (σ_hi itself included)
        assert torch.equal(gi(x, sigma), plain(x, sigma))
    assert counted.batches == [4, 4, 4]
    for sigma in (9.0, 4.01, 0.5, 0.1):   # outside (σ_lo itself excluded)
        d = gi(x, sigma)
        assert torch.equal(d, cond_only(x, sigma))
        assert not torch.allclose(d, plain(x, sigma))   # guidance would have changed it
    assert counted.batches == [4, 4, 4] + [2, 2, 2, 2]
    assert gi.nfe == 7


def test_sdxl_added_conditions_follow_the_branch(tiny_sdxl_dir):
    m = load_model(str(tiny_sdxl_dir), device="cpu")
    cond = m.encode_prompts(PROMPTS)
    x = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(1)) * 2.0
    gi = m.make_denoiser(cond, guidance=4.0, guidance_interval=(1.0, 3.0))
    assert torch.equal(gi(x, 2.0), m.make_denoiser(cond, guidance=4.0)(x, 2.0))
    assert torch.equal(gi(x, 5.0), m.make_denoiser(cond, guidance=1.0)(x, 5.0))


def test_generate_uses_the_interval(tiny_model):
    base = classic_setting(4).replace(guidance=6.0)
    everywhere = base.replace(guidance_interval=(0.0, 100.0))
    nowhere = base.replace(guidance_interval=(50.0, 100.0))
    ref = generate(tiny_model, base, PROMPTS, [0, 1])
    assert torch.equal(generate(tiny_model, everywhere, PROMPTS, [0, 1]), ref)
    assert torch.equal(generate(tiny_model, nowhere, PROMPTS, [0, 1]),
                       generate(tiny_model, base.replace(guidance=1.0), PROMPTS, [0, 1]))


def test_apply_refuses_an_interval_it_cannot_run(tiny_model):
    import hpyn

    with pytest.raises(ValueError, match=r"guidance_interval=\(0.5, 4.0\).*use hpyn.generate"):
        hpyn.apply(tiny_model.pipe, classic_setting(4).replace(guidance_interval=(0.5, 4.0)))


def test_comfyui_recipe_names_the_interval(sd_table):
    from hpyn.comfyui import comfyui_recipe

    cfg = classic_setting(5).replace(solver="unipc_bh2", guidance_interval=(0.28, 5.42))
    r = comfyui_recipe(cfg, cfg.sigmas(sd_table).tolist())
    assert r["sampler_name"] == "uni_pc_bh2" and not r["exact_sampler"]
    assert any("0.28 < σ ≤ 5.42" in n for n in r["notes"]) and any("order 3" in n for n in r["notes"])
