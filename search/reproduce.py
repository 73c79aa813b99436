"""The independent check of an exported schedule through diffusers itself: diffusers' own scheduler against hpyn.

    python -m search.reproduce --export best.json --model path/or/hub-id --prompt "a photo of a cat" --seeds 0-3 \
        --out out/

For an export on a classic grid (Karras σ's with ρ = 7 down to the model's σ_min, then 0), diffusers has a scheduler
of its own: `DPMSolverMultistepScheduler(use_karras_sigmas=True, final_sigmas_type="zero", algorithm_type=
"dpmsolver++")` of the export's order for DPM-Solver++, `UniPCMultistepScheduler(solver_type="bh2", ...)` for UniPC.
This command runs the pipeline (StableDiffusion or StableDiffusionXL) twice on the same initial noise: with that
scheduler, and with `hpyn.apply(pipe, export)` (hpyn's scheduler, whose solver mathematics are hpyn.solvers'),
writes diffusers' images and prints how far the two are apart. Two conventions differ and are accounted for:
diffusers rounds the U-Net timestep to an integer (hpyn: fractional t(σ)), which leaves ≤ 2–3 uint8 levels on a
few pixels; and it works in the VP frame with init_noise_sigma = 1, so it is given z·σ_0/sqrt(1 + σ_0²) for hpyn's
σ_0·z. Other grids (the paper's time spacing, residual endings, FreeU windows, guidance intervals) have no diffusers
scheduler: sample them in diffusers with `hpyn.apply(pipe, "best.json")`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

__all__ = ["diffusers_scheduler", "load_schedule", "main", "parse_seeds", "sample"]

MAX_IMAGES = 10_000
DIFFUSERS_SOLVERS = ("dpmpp_1s", "dpmpp_2m", "dpmpp_3m", "unipc_bh2")


def load_schedule(path):
    """The export's SamplerConfig, checked: a readable export whose σ grid decreases and matches its config."""
    from hpyn.config import config_from_document
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--export {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--export {str(path)!r}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--export {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "config" not in doc:
        raise ValueError(f"--export {str(path)!r} is not a search export (a JSON object with a config)")
    sigmas = doc.get("sigmas")
    if sigmas is not None:
        if not isinstance(sigmas, list) or len(sigmas) < 2 or \
                not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in sigmas):
            raise ValueError(f"--export {str(path)!r}: sigmas {sigmas!r} must be at least two finite numbers ≥ 0")
        rising = [i for i in range(len(sigmas) - 1) if not sigmas[i + 1] < sigmas[i]]
        if rising:
            i = rising[0]
            raise ValueError(f"--export {str(path)!r}: sigmas must decrease (σ_0 > … > σ_n), but σ_{i} = {sigmas[i]} "
                             f"and σ_{i + 1} = {sigmas[i + 1]}")
    try:
        return config_from_document(doc)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--export {str(path)!r}: {e}") from None


def parse_seeds(text: str) -> list[int]:
    """'0-3' or '1,5,9' (or both: '0-3,10') → seeds ≥ 0, ranges ascending, at most MAX_IMAGES of them."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        lo, dash, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if dash else (int(part), int(part))
        except ValueError:
            raise ValueError(f"--seeds {text!r}: give seeds like 0-3 or 1,5,9 (whole numbers ≥ 0)") from None
        if a < 0 or b < a:
            raise ValueError(f"--seeds {text!r}: {part!r} is not an ascending range of seeds ≥ 0")
        if len(seeds) + b - a + 1 > MAX_IMAGES:
            raise ValueError(f"--seeds {text!r}: more than {MAX_IMAGES} images")
        seeds.extend(range(a, b + 1))
    return seeds


def check_classic(config) -> None:
    """ValueError naming what diffusers' own schedulers cannot run (then hpyn.apply is the way)."""
    why = []
    if not (config.spacing == "karras" and config.rho == 7 and config.final == "zero" and config.sigma_min is None):
        why.append(f"the grid (spacing {config.spacing!r}, rho {config.rho}, final {config.final!r}, "
                   f"sigma_min {config.sigma_min}) is not the classic Karras ρ = 7 grid to the model's σ_min then 0")
    if config.solver not in DIFFUSERS_SOLVERS:
        why.append(f"solver {config.solver!r} has no diffusers scheduler here ({list(DIFFUSERS_SOLVERS)})")
    if config.freeu:
        why.append("it has a FreeU window")
    if getattr(config, "guidance_interval", None):
        why.append(f"it has a guidance interval {config.guidance_interval}")
    if why:
        raise ValueError("diffusers has no scheduler for this export: " + "; ".join(why)
                         + ". Sample it in diffusers with hpyn.apply(pipe, 'best.json')")


def diffusers_scheduler(scheduler_config, config):
    """diffusers' own scheduler for a classic export (see the module docstring)."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
    check_classic(config)
    if config.solver == "unipc_bh2":
        return UniPCMultistepScheduler.from_config(
            scheduler_config, solver_order=2, solver_type="bh2", predict_x0=True, use_karras_sigmas=True,
            final_sigmas_type="zero", lower_order_final=True, disable_corrector=[])
    return DPMSolverMultistepScheduler.from_config(
        scheduler_config, use_karras_sigmas=True, final_sigmas_type="zero", algorithm_type="dpmsolver++",
        solver_order=config.order)


def _uint8(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(0, 1).mul(255).to(torch.uint8).cpu()   # as hpyn decodes: ·255, truncated (spec C.3)


@torch.no_grad()
def sample(pipe, config, prompts: list[str], seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(diffusers' images, hpyn's images), uint8 [N, 3, H, W], from one pipeline and the same initial noise."""
    import hpyn
    from hpyn.generate import initial_noise

    check_classic(config)
    unet = pipe.unet
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    side = int(unet.config.sample_size)
    z = initial_noise(seeds, (unet.config.in_channels, side, side)).to(pipe.device)
    size = {"height": side * scale, "width": side * scale}
    with hpyn.apply(pipe, config) as applied:
        s0 = float(applied.scheduler.init_noise_sigma)
        ours = pipe(prompts, **applied.call_kwargs, latents=z, output_type="pt", **size).images
    original = pipe.scheduler
    pipe.scheduler = diffusers_scheduler(original.config, config)
    try:
        theirs = pipe(prompts, num_inference_steps=config.steps, guidance_scale=config.guidance,
                      latents=z * (s0 / math.sqrt(1 + s0 * s0)), output_type="pt", **size).images
    finally:
        pipe.scheduler = original
    return _uint8(theirs), _uint8(ours)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="JSON written by python -m search.export (classic grid)")
    p.add_argument("--model", required=True, help="diffusers pipeline folder or hub id (SD or SDXL)")
    p.add_argument("--prompt", required=True, action="append")
    p.add_argument("--seeds", default="0-3", help="a-b or a,b,c")
    p.add_argument("--out", required=True, help="output folder for diffusers' images (created if missing)")
    args = p.parse_args(argv)
    try:   # every input is checked before diffusers loads anything
        config = load_schedule(args.export)
        check_classic(config)
        seeds = parse_seeds(args.seeds)
        if any(not prompt.strip() for prompt in args.prompt):
            raise ValueError("--prompt '': give a non-empty prompt")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out!r} is a file; give a folder")
        if args.model.startswith(("/", ".", "~")) and not Path(args.model).expanduser().is_dir():
            raise ValueError(f"--model {args.model!r}: no such folder")
        from diffusers import DiffusionPipeline
        try:
            pipe = DiffusionPipeline.from_pretrained(args.model)
        except Exception as e:  # noqa: BLE001 - a hub id offline, a folder that is not a pipeline, ...
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            raise ValueError(f"--model {args.model!r}: cannot load a diffusers pipeline "
                             f"({type(e).__name__}: {first})") from None
        pipe.to("cuda" if torch.cuda.is_available() else "cpu")
        pipe.set_progress_bar_config(disable=True)
        prompts = [args.prompt[i % len(args.prompt)] for i in range(len(seeds))]
        theirs, ours = sample(pipe, config, prompts, seeds)
        out.mkdir(parents=True, exist_ok=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from PIL import Image
    for img, seed in zip(images := theirs, seeds, strict=True):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(out / f"{seed:06d}.png")
    d = (theirs.int() - ours.int()).abs().float()
    print(f"wrote {len(images)} images (diffusers' {type(diffusers_scheduler(pipe.scheduler.config, config)).__name__})"
          f" to {out}/; vs hpyn on the same noise: max {d.max():.0f}, mean {d.mean():.3f} uint8 levels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
