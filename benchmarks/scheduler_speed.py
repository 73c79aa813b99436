"""Scheduler speed: a diffusers pipeline with hpyn's scheduler (hpyn.apply) vs with DPMSolverMultistepScheduler.

    python benchmarks/scheduler_speed.py                                   # the embedded toy model, CPU
    python benchmarks/scheduler_speed.py --model sd15-random --device cuda --batch 4   # full SD1.5 UNet, 512²

The same pipeline object, prompts and number of U-Net calls (one per step, CFG batched); only `pipe.scheduler`
changes: diffusers' DPM-Solver++(2M) with Karras σ's, hpyn's HpynScheduler on the same classic grid (2M), and
hpyn's paper 5-step setting (1S, residual ending, FreeU hooks switched per step). `sd15-random` is SD1.5's
architecture with random weights built from configs (benchmarks/sampler_speed.py): speed does not depend on the
weights and nothing is downloaded. Prints seconds per image (best of --repeats after a warm-up) and the ratio to
diffusers, then the schedulers' own cost: a whole run of set_timesteps + scale_model_input + step on the batch's
latents with a fixed model output (no U-Net), which is what the choice of scheduler adds to a pipeline call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import hpyn  # noqa: E402
from hpyn.presets import classic_setting, load_preset  # noqa: E402
from sampler_speed import build_sd15_random, timed  # noqa: E402


def load_pipeline(name: str, device: torch.device, resolution: int | None):
    from diffusers import StableDiffusionPipeline

    from hpyn.toy import PIPELINE
    source = PIPELINE if name == "toy" else build_sd15_random(Path(tempfile.mkdtemp()), resolution or 512) \
        if name == "sd15-random" else Path(name)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False,
                                                   dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def scheduler_only(scheduler, latents: torch.Tensor, n: int, repeats: int, sync) -> float:
    """Seconds for one run of n steps of the scheduler alone (fixed ε = 0.1·latents, no U-Net)."""
    eps = 0.1 * latents

    def run():
        scheduler.set_timesteps(n, device=latents.device)
        x = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            scheduler.scale_model_input(torch.cat([x, x]), t)
            x = scheduler.step(eps, t, x, return_dict=False)[0]
    return timed(run, max(repeats, 20), sync)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy", help="toy | sd15-random | a StableDiffusionPipeline folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--batch", type=int, default=None, help="images per call (default 32 toy, 4 otherwise)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipe = load_pipeline(args.model, device, args.resolution)
    side = args.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    batch = args.batch or (32 if args.model == "toy" else 4)
    prompts = [f"a photo of thing number {i}" for i in range(batch)]
    n, w = args.steps, 7.5

    from diffusers import DPMSolverMultistepScheduler
    original = pipe.scheduler
    dpm = DPMSolverMultistepScheduler.from_config(original.config, use_karras_sigmas=True, final_sigmas_type="zero",
                                                  algorithm_type="dpmsolver++", solver_order=2)

    def call(**kw):
        gens = [torch.Generator("cpu").manual_seed(s) for s in range(batch)]
        return lambda: pipe(prompts, guidance_scale=w, generator=gens, height=side, width=side, output_type="pt", **kw)

    pipe.scheduler = dpm
    rows = [("diffusers DPMSolverMultistep (2M Karras)", timed(call(num_inference_steps=n), args.repeats, sync))]
    pipe.scheduler = original
    with hpyn.apply(pipe, classic_setting(n, w)):
        rows.append(("hpyn scheduler, same 2M Karras grid", timed(call(num_inference_steps=n), args.repeats, sync)))
    if n == 5:
        with hpyn.apply(pipe, load_preset("sd15", 5).replace(guidance=w)):
            rows.append(("hpyn scheduler, paper 5-step + FreeU", timed(call(num_inference_steps=n), args.repeats,
                                                                        sync)))
    from hpyn.scheduler import HpynScheduler
    latents = torch.randn(batch, 4, side // pipe.vae_scale_factor, side // pipe.vae_scale_factor, device=device,
                          dtype=pipe.unet.dtype)
    own = [("diffusers DPMSolverMultistep (2M Karras)", scheduler_only(dpm, latents, n, args.repeats, sync)),
           ("hpyn scheduler, same 2M Karras grid", scheduler_only(
               HpynScheduler.from_sampler_config(classic_setting(n, w), original.config), latents, n, args.repeats,
               sync))]
    base = rows[0][1]
    print(f"\nmodel={args.model} device={device} dtype={pipe.unet.dtype} resolution={side} batch={batch} "
          f"steps={n} (U-Net calls) torch_threads={torch.get_num_threads()}")
    print(f"{'scheduler':40s} {'s/image':>9s} {'vs diffusers':>13s}")
    for label, sec in rows:
        print(f"{label:40s} {sec / batch:9.4f} {sec / base:12.3f}x")
    print(f"\nscheduler alone, {n} steps on {tuple(latents.shape)} {str(latents.dtype)[6:]} latents (no U-Net):")
    for label, sec in own:
        print(f"{label:40s} {1000 * sec:7.2f} ms per run ({100 * sec / base:.1f} % of the diffusers pipeline call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
