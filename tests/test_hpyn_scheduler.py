"""The diffusers scheduler and hpyn.apply: a pipeline with a schedule applied draws hpyn.generate's images.

Tolerance (CPU, float32): the pipeline applies classifier-free guidance to ε and hpyn to the denoised estimate
(equal in exact arithmetic, D is affine in ε), so images may differ by float rounding: at most 1 uint8 level on
at most 0.5 % of the values (measured on the toy: 0 to 2 values in 10⁴ off by 1, for 1S and 2M alike).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import hpyn
from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.generate import generate, initial_noise
from hpyn.presets import ays_setting, classic_setting, load_preset, unipc_karras_setting
from hpyn.scheduler import HpynScheduler
from hpyn.solvers import get_solver

PROMPTS = ["a photo of a sneaker", "a photo of a bag", "a photo of a dress"]
SEEDS = [0, 1, 2]

CONFIGS = {  # the toy shares SD's betas, so the SD1.5/SDXL published settings are valid grids for it
    "paper-sd15-5": load_preset("sd15", 5),                 # 1S, residual ending, FreeU on every step
    "paper-sdxl-6": load_preset("sdxl", 6),                 # 1S, residual ending, FreeU windows [1, 4) and [5, 6)
    "classic-2m-5": classic_setting(5, 3.0),                # 2M, Karras grid, ending at 0
    "3m-residual": SamplerConfig(steps=4, rho=1.5, epsilon=0.1, solver="dpmpp_3m", guidance=4.0,
                                 freeu=(FreeUWindow(1, 3, 1.2, 1.3, 0.8, 0.5),), freeu_mapping="diffusers"),
    "unipc-karras-5": unipc_karras_setting(5, 3.0),         # UniPC's corrector through the scheduler's step()
    "ays-sd15-5": ays_setting(None, 5, 3.0),                # a published grid ending in 0
}


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """The pipeline's output_type="pt" images (clamped (y+1)/2) as hpyn.models decodes them: ·255, truncated."""
    return images.mul(255).to(torch.uint8)


def run(pipe, applied, prompts, seeds, shape) -> torch.Tensor:
    out = pipe(prompts, **applied.call_kwargs, latents=initial_noise(seeds, shape), output_type="pt").images
    return as_uint8(out)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    d = (a.int() - b.int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() <= 0.005, (d.max().item(), (d > 0).float().mean().item())


@pytest.fixture(scope="module")
def toy():
    from hpyn.models import load_model
    return load_model("toy", device="cpu")


@pytest.fixture(scope="module")
def toy_pipe():
    from diffusers import StableDiffusionPipeline

    from hpyn.toy import PIPELINE
    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", list(CONFIGS))
def test_toy_pipeline_with_schedule_matches_generate(name, toy, toy_pipe):
    config = CONFIGS[name]
    ref = generate(toy, config, PROMPTS, SEEDS)
    with hpyn.apply(toy_pipe, config) as applied:
        seen = []  # FreeU factors in force at each U-Net call (the hook before ours ran first)
        probe = toy_pipe.unet.register_forward_pre_hook(
            lambda m, a: seen.append(applied.freeu.factors if applied.freeu else None))
        try:
            out = run(toy_pipe, applied, PROMPTS, SEEDS, toy.latent_shape(1)[1:])
        finally:
            probe.remove()
    assert_close(out, ref)
    assert seen == [config.freeu_at(i) for i in range(config.steps)]


def test_readme_recipe_with_per_seed_generators(toy, toy_pipe, tmp_path):
    # the user's path: an export file, CPU generators per image (the pipeline draws each image's noise with its own
    # generator, in the shape hpyn.generate draws it), no latents
    (tmp_path / "best.json").write_text(json.dumps({"schema_version": 2, "config": CONFIGS["paper-sd15-5"].to_dict()}))
    applied = hpyn.apply(toy_pipe, tmp_path / "best.json")
    try:
        gens = [torch.Generator().manual_seed(s) for s in SEEDS]
        out = as_uint8(toy_pipe(PROMPTS, **applied.call_kwargs, generator=gens, output_type="pt").images)
    finally:
        applied.undo()
    assert_close(out, generate(toy, CONFIGS["paper-sd15-5"], PROMPTS, SEEDS))


def test_freeu_window_changes_the_images(toy, toy_pipe):
    # the agreement above is only meaningful if the FreeU window has an effect on these images
    config = CONFIGS["paper-sdxl-6"]
    with hpyn.apply(toy_pipe, config) as a:
        on = run(toy_pipe, a, PROMPTS, SEEDS, toy.latent_shape(1)[1:])
    with hpyn.apply(toy_pipe, config.replace(freeu=())) as a:
        off = run(toy_pipe, a, PROMPTS, SEEDS, toy.latent_shape(1)[1:])
    assert (on.int() - off.int()).abs().float().mean() > 1.0


@pytest.mark.parametrize("config", [load_preset("sdxl", 6).replace(guidance=5.0), classic_setting(4, 5.0)],
                         ids=["paper-sdxl-6", "classic-2m-4"])
def test_tiny_sdxl_pipeline_with_schedule_matches_generate(config, tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    from hpyn.models import load_model
    model = load_model(str(tiny_sdxl_dir), device="cpu")
    ref = generate(model, config, PROMPTS[:2], SEEDS[:2])
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    pipe.set_progress_bar_config(disable=True)
    with hpyn.apply(pipe, config) as applied:
        out = run(pipe, applied, PROMPTS[:2], SEEDS[:2], model.latent_shape(1)[1:])
    assert_close(out, ref)


def test_undo_restores_the_pipeline_bit_for_bit(toy, toy_pipe):
    shape = toy.latent_shape(1)[1:]
    call = dict(num_inference_steps=6, guidance_scale=4.0, output_type="pt")
    before = toy_pipe(PROMPTS, latents=initial_noise(SEEDS, shape), **call).images
    config_before, scheduler_before = dict(toy_pipe.config), toy_pipe.scheduler
    applied = hpyn.apply(toy_pipe, load_preset("sdxl", 6).replace(guidance=4.0))
    assert isinstance(toy_pipe.scheduler, HpynScheduler) and toy_pipe.config["scheduler"][1] == "HpynScheduler"
    during = toy_pipe(PROMPTS, latents=initial_noise(SEEDS, shape), **call).images
    applied.undo()
    applied.undo()  # idempotent
    after = toy_pipe(PROMPTS, latents=initial_noise(SEEDS, shape), **call).images
    assert torch.equal(before, after) and not torch.equal(before, during)
    assert toy_pipe.scheduler is scheduler_before and dict(toy_pipe.config) == config_before
    assert not toy_pipe.unet._forward_pre_hooks
    assert all(not r._forward_pre_hooks for b in toy_pipe.unet.up_blocks for r in b.resnets)


def test_scheduler_config_round_trip(tmp_path, sd_table):
    from diffusers import DDIMScheduler
    base = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    s = HpynScheduler.from_sampler_config(load_preset("sd15", 8), base.config)
    s.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "HpynScheduler" and saved["solver"] == "dpmpp_2m" and len(saved["sigmas"]) == 9
    back = HpynScheduler.from_pretrained(tmp_path)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert public(back.config) == public(s.config)
    assert torch.equal(back.sigmas, s.sigmas) and torch.equal(back.timesteps, s.timesteps)
    assert torch.equal(s.sigmas, load_preset("sd15", 8).sigmas(sd_table))
    assert back.init_noise_sigma == s.init_noise_sigma == s.sigmas[0].item()


def test_pipeline_saved_with_the_scheduler_loads_it_back(toy_pipe, tmp_path):
    from diffusers import StableDiffusionPipeline
    with hpyn.apply(toy_pipe, load_preset("sd15", 5)):
        toy_pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["hpyn.scheduler", "HpynScheduler"]
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path, safety_checker=None, requires_safety_checker=False)
    assert isinstance(pipe.scheduler, HpynScheduler) and pipe.scheduler.config.solver == "dpmpp_1s"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("solver", ["dpmpp_1s", "dpmpp_2m", "dpmpp_3m"])
@pytest.mark.parametrize("final", ["residual", "zero"])
def test_step_by_step_equals_the_solver_loop(solver, final, prediction_type, sd_table):
    # a synthetic network: ε(x_in, t) with x_in = c_in·x; the scheduler's D must be the denoiser the loop sees
    net = lambda x_in, t: torch.sin(x_in) * 0.3 + t / 1000.0
    cfg = SamplerConfig(steps=5, final=final, epsilon=0.2 if final == "residual" else None, solver=solver)
    sched = HpynScheduler.from_sampler_config(cfg, {"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                                    "beta_end": 0.012, "prediction_type": prediction_type})

    def denoiser(x, sigma):  # as hpyn.denoisers.CFGDenoiser: float32 timestep of map 1, c_in = 1/sqrt(σ²+1)
        c_in = 1.0 / math.sqrt(sigma * sigma + 1.0)
        out = net(x * c_in, torch.tensor(float(sd_table.t_of_sigma(sigma)), dtype=torch.float32).item())
        return x - sigma * out if prediction_type == "epsilon" else x * (c_in * c_in) - (sigma * c_in) * out

    z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    expected = get_solver(solver)(denoiser, z * cfg.sigmas(sd_table)[0].item(), cfg.sigmas(sd_table))
    sched.set_timesteps(5)
    x = z * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(net(sched.scale_model_input(x, t), float(t)), t, x).prev_sample
    assert torch.equal(x, expected)


def test_matches_diffusers_dpmsolver_on_a_karras_grid(toy_pipe):
    # diffusers' DPM-Solver++(2M) with Karras σ's, ending at 0, against ours on the same grid. Two conventions
    # differ: diffusers rounds the U-Net timestep to an integer (ours is fractional) and starts from the VP latent
    # z (the VE latent z·sqrt(1+σ_0²)); fed z·σ_0/sqrt(1+σ_0²) it starts where we start (x = σ_0·z). Measured on
    # the toy: ≤ 2 uint8 levels, mean ≤ 0.08, where 1S instead of 2M moves the mean by 1.2-12 levels.
    from diffusers import DPMSolverMultistepScheduler
    original = toy_pipe.scheduler
    z = initial_noise(SEEDS, (4, 8, 8))
    for n in (5, 10):
        with hpyn.apply(toy_pipe, classic_setting(n, 3.0)) as a:
            s0 = a.scheduler.init_noise_sigma
            ours = as_uint8(toy_pipe(PROMPTS, **a.call_kwargs, latents=z, output_type="pt").images)
        with hpyn.apply(toy_pipe, classic_setting(n, 3.0).replace(solver="dpmpp_1s")) as a:
            first_order = as_uint8(toy_pipe(PROMPTS, **a.call_kwargs, latents=z, output_type="pt").images)
        toy_pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            original.config, use_karras_sigmas=True, final_sigmas_type="zero", algorithm_type="dpmsolver++",
            solver_order=2)
        try:
            theirs = as_uint8(toy_pipe(PROMPTS, num_inference_steps=n, guidance_scale=3.0,
                                       latents=z * (s0 / math.sqrt(1 + s0 * s0)), output_type="pt").images)
        finally:
            toy_pipe.scheduler = original
        d = (ours.int() - theirs.int()).abs()
        assert d.max() <= 3 and d.float().mean() <= 0.15, (n, d.max().item(), d.float().mean().item())
        assert (ours.int() - first_order.int()).abs().float().mean() > 10 * d.float().mean()


@pytest.mark.parametrize("doc,match", [
    ({"schema_version": 99, "config": load_preset("sd15", 5).to_dict()}, "schema_version 99"),
    ({"schema_version": 2, "config": load_preset("sd15", 5).to_dict(),
      "sigmas": [0.132, 0.5, 1.0, 1.96, 4.5, 14.6]}, r"\"sigmas\".*decreasing.*0\.132, 0\.5"),
    ({"schema_version": 2, "config": {**load_preset("sd15", 5).to_dict(), "solver": "euler_a"}},
     r"unknown solver 'euler_a'.*dpmpp_1s"),
    ({"schema_version": 2, "config": load_preset("sd15", 5).to_dict(), "sigmas": [14.6, 5.0, 2.0, 1.0, 0.5, 0.2]},
     "differ from its config's grid"),
])
def test_bad_exports_name_the_value(doc, match, toy_pipe, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        hpyn.apply(toy_pipe, path)
    assert not isinstance(toy_pipe.scheduler, HpynScheduler)


def test_schema_1_export_applies(toy_pipe, tmp_path):
    old = load_preset("sd15", 8).to_dict()
    old["order"] = {"dpmpp_1s": 1, "dpmpp_2m": 2}[old.pop("solver")]
    (tmp_path / "v1.json").write_text(json.dumps({"schema_version": 1, "config": old}))
    with hpyn.apply(toy_pipe, tmp_path / "v1.json") as a:
        assert a.scheduler.config.solver == "dpmpp_2m" and a.config == load_preset("sd15", 8)


def test_wrong_step_count_and_guidance_are_named(toy_pipe):
    with hpyn.apply(toy_pipe, load_preset("sd15", 5)) as applied:
        with pytest.raises(ValueError, match="has 5 steps.*num_inference_steps=5, got num_inference_steps=50"):
            toy_pipe(PROMPTS[:1], output_type="pt")
        with pytest.warns(UserWarning, match=r"guidance_scale=7\.5.*5\.5"):
            toy_pipe(PROMPTS[:1], num_inference_steps=5, guidance_scale=7.5, output_type="pt")
        with pytest.raises(ValueError, match="already runs an hpyn schedule"):
            hpyn.apply(toy_pipe, load_preset("sd15", 5))
    assert applied.call_kwargs == {"num_inference_steps": 5, "guidance_scale": 5.5}


def test_bad_scheduler_arguments():
    with pytest.raises(ValueError, match=r"decreasing.*\[1\.0, 2\.0\]"):
        HpynScheduler(sigmas=[1.0, 2.0])
    with pytest.raises(ValueError, match="needs the σ grid"):
        HpynScheduler()
    with pytest.raises(ValueError, match="'euler'"):
        HpynScheduler(sigmas=[2.0, 1.0], solver="euler")
    with pytest.raises(ValueError, match="'sample'"):
        HpynScheduler(sigmas=[2.0, 1.0], prediction_type="sample")
    s = HpynScheduler(sigmas=[14.6, 3.0, 0.5])
    with pytest.raises(RuntimeError, match="set_timesteps"):
        s.scale_model_input(torch.ones(1), 0)
    s.set_timesteps(2)
    with pytest.raises(ValueError, match="timestep 500.0000 at step 0"):
        s.scale_model_input(torch.ones(1), torch.tensor(500.0))
