"""End-to-end generation offline on a diffusers Stable Diffusion pipeline built from local configs."""

import math

import pytest
import torch

from hpyn.presets import classic_setting, load_preset
from hpyn.denoisers import CFGDenoiser
from hpyn.generate import generate, initial_noise, main, parse_seeds
from hpyn.models import load_model, noise_table, resolve

PROMPTS = ["a photo of a cat", "a red car", "a shoe on a table"]


def test_model_resolution(tiny_pipeline_dir):
    spec = resolve(str(tiny_pipeline_dir))
    assert spec.adapter == "sd" and spec.is_local
    assert resolve("sd15").family == "sd15" and resolve("dreamshaper-xl").adapter == "sdxl"
    assert resolve("someone/some-model").source == "someone/some-model"
    with pytest.raises(ValueError, match=r"unknown model 'sd-1\.5'.*sd15"):
        resolve("sd-1.5")
    # noise tables of named models need no download; a local folder's comes from its scheduler config
    assert noise_table("sdxl") == noise_table("sd15") == noise_table(str(tiny_pipeline_dir))


def test_generate_paper_and_classic(tiny_model):
    for cfg in (load_preset("sd15", 5), classic_setting(5)):
        imgs = generate(tiny_model, cfg, PROMPTS, [0, 1, 2], batch_size=2)
        assert imgs.shape == (3, 3, 16, 16) and imgs.dtype == torch.uint8
        assert imgs.float().std() > 1  # not a constant image


def test_image_depends_only_on_its_seed_prompt_and_config(tiny_model):
    cfg = load_preset("sd15", 5)
    a = generate(tiny_model, cfg, PROMPTS, [10, 11, 12], batch_size=3)
    b = generate(tiny_model, cfg, PROMPTS[::-1], [12, 11, 10], batch_size=1)
    assert torch.equal(a, b.flip(0))  # batch size and order do not change pixels
    assert torch.equal(a, generate(tiny_model, cfg, PROMPTS, [10, 11, 12], batch_size=2))
    c = generate(tiny_model, cfg, PROMPTS, [13, 11, 12], batch_size=3)
    assert not torch.equal(a[0], c[0]) and torch.equal(a[1:], c[1:])


def test_initial_noise_is_per_seed():
    z = initial_noise([3, 4], (4, 2, 2))
    assert torch.equal(z[1], initial_noise([4], (4, 2, 2))[0])
    assert torch.equal(z[0], torch.randn(4, 2, 2, generator=torch.Generator().manual_seed(3)))


def test_freeu_window_changes_only_its_steps(tiny_model):
    base = load_preset("sd15", 5)
    off = generate(tiny_model, base.replace(freeu=()), PROMPTS[:1], [0])
    on = generate(tiny_model, base, PROMPTS[:1], [0])
    assert not torch.equal(off, on)
    # the hooks are removed afterwards: plain sampling is unchanged
    assert torch.equal(off, generate(tiny_model, base.replace(freeu=()), PROMPTS[:1], [0]))


def test_cfg_in_denoised_space_equals_cfg_in_eps_space(tiny_model):
    m = tiny_model
    cond, uncond, _, _ = m.encode_prompts(PROMPTS[:2])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3.0
    sigma, w = 3.0, 6.5
    d = CFGDenoiser(m.unet, m.table, cond, uncond, guidance=w)(x, sigma)
    assert torch.equal(d, m.make_denoiser(PROMPTS[:2], guidance=w)(x, sigma))   # what generate() asks the model for
    c_in = 1 / math.sqrt(sigma**2 + 1)
    t = torch.full((2,), float(m.table.t_of_sigma(sigma)))
    with torch.no_grad():
        eu = m.unet(x * c_in, t, encoder_hidden_states=uncond).sample
        ec = m.unet(x * c_in, t, encoder_hidden_states=cond).sample
    assert torch.allclose(d, x - sigma * (eu + w * (ec - eu)), atol=1e-4)
    # guidance 1 runs the conditional branch only
    d1 = CFGDenoiser(m.unet, m.table, cond, uncond, guidance=1.0)
    assert torch.allclose(d1(x, sigma), x - sigma * ec, atol=1e-4) and d1.nfe == 1


def test_v_prediction_denoiser_recovers_x0():
    # a fake UNet that returns the exact v for a known x0 and noise: D must give back x0
    from hpyn.noise import NoiseTable
    x0, n, sigma = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), 2.5
    x = x0 + sigma * n
    a = 1 / math.sqrt(1 + sigma**2)

    class FakeUNet:
        dtype = torch.float32

        def __call__(self, xin, t, encoder_hidden_states=None, return_dict=False):
            return (a * n - sigma * a * x0,)  # v = α·ε − s·x0 with s = σ·α

    d = CFGDenoiser(FakeUNet(), NoiseTable.from_betas(), torch.zeros(1, 1, 1), None, prediction_type="v_prediction")
    assert torch.allclose(d(x, sigma), x0, atol=1e-5)
    with pytest.raises(ValueError, match="'sample'"):
        CFGDenoiser(FakeUNet(), NoiseTable.from_betas(), torch.zeros(1), prediction_type="sample")


def test_generate_rejects_mismatched_inputs(tiny_model):
    with pytest.raises(ValueError, match="2 prompts and 1 seeds"):
        generate(tiny_model, load_preset("sd15", 5), PROMPTS[:2], [0])


def test_parse_seeds():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds("7") == [7]
    for bad in ("a", "5-2", "1,,2"):
        with pytest.raises(ValueError, match="seed"):
            parse_seeds(bad)


def test_generate_cli_writes_pngs(tiny_pipeline_dir, tmp_path, capsys):
    from PIL import Image
    out = tmp_path / "imgs"
    rc = main(["--model", str(tiny_pipeline_dir), "--config", "paper", "--steps", "4", "--prompt", "a cat",
               "--seeds", "0-2", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    assert Image.open(out / "000001.png").size == (16, 16)
    ref = generate(load_model(str(tiny_pipeline_dir), device="cpu"), load_preset("sd15", 5).__class__.load(
        out / "config.json"), ["a cat"], [1])
    assert torch.equal(torch.from_numpy(__import__("numpy").array(Image.open(out / "000001.png"))).permute(2, 0, 1),
                       ref[0])
    assert main(["--model", "nope", "--config", "paper", "--steps", "4", "--prompt", "x", "--out", str(out)]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main(["--model", str(tiny_pipeline_dir), "--config", "paper", "--steps", "4",
                 "--prompts", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_sdxl_pipeline_with_added_conditions(tiny_sdxl_dir):
    m = load_model(str(tiny_sdxl_dir), device="cpu")
    assert m.spec.adapter == "sdxl" and m.adapter.name == "sdxl"
    cond, uncond, added, added_u = m.encode_prompts(["a cat", "a dog"])
    assert added["text_embeds"].shape == (2, 16) and added["time_ids"].tolist()[0] == [16, 16, 0, 0, 16, 16]
    # force_zeros_for_empty_prompt (SDXL default): the unconditional branch is zeros, as in the paper's scripts
    assert uncond.abs().max() == 0 and added_u["text_embeds"].abs().max() == 0
    cfg = load_preset("sdxl", 6)
    imgs = generate(m, cfg, ["a cat", "a dog"], [0, 1])
    assert imgs.shape == (2, 3, 16, 16)
    assert torch.equal(imgs[1:], generate(m, cfg, ["a dog"], [1]))
