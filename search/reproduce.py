"""Sample an exported schedule with plain diffusers + torch (this file imports nothing from hpyn: copy it).

    python -m search.reproduce --export best.json --model path/or/hub-id --prompt "a photo of a cat" --seeds 0-3 \
        --out out/

It reads the export's explicit "sigmas" (σ_0 > … > σ_n, x = x0 + σ·noise) and "timesteps" (the fractional U-Net
timestep of each σ_i > 0) and runs DPM-Solver++ (order 1 = DDIM, 2M, 3M in λ = −log σ form) with classifier-free
guidance on a StableDiffusionPipeline's UNet. A "residual" ending decodes the latent at σ_n = ε directly; a "zero"
ending's last step returns the denoised latent. Initial noise of image i: `torch.randn(latent, generator=
torch.Generator("cpu").manual_seed(seed_i)) * σ_0`, as `hpyn.generate`, so the pixels match hpyn's
(tests/test_search_reproduce.py). FreeU windows use diffusers' `unet.enable_freeu` per step, which is the
"diffusers" mapping; a config with the paper's "reference" mapping needs hpyn for exact results (spec D.4).
SD1.5-style pipelines with ε-prediction only (SDXL needs its extra conditioning: use hpyn).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import torch

__all__ = ["load_schedule", "main", "parse_seeds", "sample"]


MAX_IMAGES = 10_000


def load_schedule(path) -> dict:
    """An export's config, σ grid and timesteps, checked: σ_0 > … > σ_n ≥ 0 finite, one timestep per σ_i > 0."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--export {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--export {str(path)!r}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--export {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):   # (a ValueError: a bad file is a bad input, like every other check here)
        raise ValueError(f"--export {str(path)!r} is not a search export (a JSON object with config, "  # noqa: TRY004
                         "sigmas, timesteps)")
    missing = [k for k in ("config", "sigmas", "timesteps") if k not in doc]
    if missing:
        raise ValueError(f"--export {str(path)!r} is not a search export (missing {missing})")
    cfg, sigmas, ts = doc["config"], doc["sigmas"], doc["timesteps"]
    if not isinstance(cfg, dict) or not isinstance(sigmas, list) or not isinstance(ts, list):
        raise ValueError(f"--export {str(path)!r}: config must be an object, sigmas and timesteps lists")  # noqa: TRY004
    if len(sigmas) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in sigmas):
        raise ValueError(f"--export {str(path)!r}: sigmas {sigmas!r} must be at least two finite numbers ≥ 0")
    rising = [i for i in range(len(sigmas) - 1) if not sigmas[i + 1] < sigmas[i]]
    if rising:
        i = rising[0]
        raise ValueError(f"--export {str(path)!r}: sigmas must decrease (σ_0 > … > σ_n), but σ_{i} = {sigmas[i]} "
                         f"and σ_{i + 1} = {sigmas[i + 1]}")
    positive = sum(1 for v in sigmas if v > 0)
    if len(ts) != positive or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in ts):
        raise ValueError(f"--export {str(path)!r}: needs one finite timestep per σ > 0 ({positive}), got {ts!r}")
    g = cfg.get("guidance")
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
        raise ValueError(f"--export {str(path)!r}: config guidance {g!r} must be a finite number ≥ 0")
    solver_order(cfg)
    return doc


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


DPMPP_ORDERS = {"dpmpp_1s": 1, "dpmpp_2m": 2, "dpmpp_3m": 3}   # hpyn.solvers names → DPM-Solver++ order


def solver_order(cfg: dict) -> int:
    """The DPM-Solver++ order of an exported config: its "solver" name (schema 2) or its "order" (schema 1)."""
    if "solver" in cfg:
        if cfg["solver"] not in DPMPP_ORDERS:
            raise ValueError(f"solver {cfg['solver']!r}: this short sampler runs {list(DPMPP_ORDERS)}; use hpyn")
        return DPMPP_ORDERS[cfg["solver"]]
    if cfg.get("order") not in (1, 2, 3):
        raise ValueError(f"config order {cfg.get('order')!r}: DPM-Solver++ orders are 1, 2, 3")
    return int(cfg["order"])


def _dpmpp_step(x, d, s, s_next, hist, order):
    """One DPM-Solver++ multistep update from σ = s to s_next; `hist` = earlier (denoised, h) pairs, newest last."""
    if s_next == 0:
        return d                                      # a jump to σ = 0 returns the denoised latent
    h = math.log(s / s_next)
    if order == 3:                                    # exponential integrator with φ₂, φ₃ (hpyn.solvers, 3M)
        phi1 = -math.expm1(-h)
        phi2 = 1 - phi1 / h
        x_next = math.exp(-h) * x + phi1 * d
        if len(hist) >= 2:
            (d1, h1), (d2, h2) = hist[-1], hist[-2]
            r0, r1 = h1 / h, h2 / h
            d1_0, d1_1 = (d - d1) / r0, (d1 - d2) / r1
            first = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            second = (d1_0 - d1_1) / (r0 + r1)
            x_next = x_next + phi2 * first - 2 * (phi2 / h - 0.5) * second
        elif hist:
            d1, h1 = hist[-1]
            x_next = x_next + phi2 * (d - d1) / (h1 / h)
        return x_next
    if order == 2 and hist:                           # 2M: D̃ = (1 + 1/2r)·D − (1/2r)·D_prev, r = h_prev/h
        d1, h1 = hist[-1]
        r = h1 / h
        d = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d1
    ratio = s_next / s                                # 1S (DDIM): x' = (σ'/σ)·x + (1 − σ'/σ)·D
    return ratio * x + (1 - ratio) * d


@torch.no_grad()
def sample(pipe, schedule: dict, prompts: list[str], seeds: list[int]) -> torch.Tensor:
    """uint8 [N, 3, H, W] images of an exported schedule on a diffusers StableDiffusionPipeline."""
    cfg, sigmas, ts = schedule["config"], [float(s) for s in schedule["sigmas"]], [float(t) for t in schedule["timesteps"]]
    unet, vae, device = pipe.unet, pipe.vae, pipe.device
    if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError("this short sampler handles ε-prediction models; use hpyn for v-prediction")
    windows = cfg.get("freeu") or []
    if windows and cfg.get("freeu_mapping") != "diffusers":
        warnings.warn("this schedule uses FreeU with the paper's 'reference' mapping; diffusers' enable_freeu is the "
                      "'diffusers' mapping, so images will differ slightly from hpyn's (spec D.4)")
    w, order = float(cfg["guidance"]), solver_order(cfg)
    cond, uncond = pipe.encode_prompt(prompts, device, 1, True)
    context = torch.cat([uncond, cond])
    side = unet.config.sample_size
    x = torch.stack([torch.randn((unet.config.in_channels, side, side), generator=torch.Generator("cpu").manual_seed(s))
                     for s in seeds]).to(device) * sigmas[0]
    hist = []
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        win = next((v for v in windows if v["start"] <= i < v["end"]), None)
        if win:
            unet.enable_freeu(s1=win["s1"], s2=win["s2"], b1=win["b1"], b2=win["b2"])
        elif windows:
            unet.disable_freeu()
        xin = torch.cat([x, x]) / math.sqrt(s * s + 1)
        t = torch.full((xin.shape[0],), ts[i], device=device, dtype=torch.float32)
        eps = unet(xin.to(unet.dtype), t, encoder_hidden_states=context, return_dict=False)[0].to(x.dtype)
        d_u, d_c = (torch.cat([x, x]) - s * eps).chunk(2)
        d = d_u + w * (d_c - d_u)                     # CFG on the denoised outputs (= CFG on ε)
        x = _dpmpp_step(x, d, s, s_next, hist, order)
        if s_next > 0:
            hist = (hist + [(d, math.log(s / s_next))])[-2:]
    if windows:
        unet.disable_freeu()
    z = x / vae.config.scaling_factor
    y = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()
    return ((y + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).cpu()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="JSON written by python -m search.export")
    p.add_argument("--model", required=True, help="diffusers StableDiffusionPipeline folder or hub id")
    p.add_argument("--prompt", required=True, action="append")
    p.add_argument("--seeds", default="0-3", help="a-b or a,b,c")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    args = p.parse_args(argv)
    try:   # every input is checked before diffusers loads anything
        schedule = load_schedule(args.export)
        seeds = parse_seeds(args.seeds)
        if any(not prompt.strip() for prompt in args.prompt):
            raise ValueError("--prompt '': give a non-empty prompt")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out!r} is a file; give a folder")
        if args.model.startswith(("/", ".", "~")) and not Path(args.model).expanduser().is_dir():
            raise ValueError(f"--model {args.model!r}: no such folder")
        from diffusers import StableDiffusionPipeline
        try:
            pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None,
                                                           requires_safety_checker=False)
        except Exception as e:  # noqa: BLE001 - a hub id offline, a folder that is not a pipeline, ...
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            raise ValueError(f"--model {args.model!r}: cannot load a StableDiffusionPipeline "
                             f"({type(e).__name__}: {first})") from None
        pipe.to("cuda" if torch.cuda.is_available() else "cpu")
        prompts = [args.prompt[i % len(args.prompt)] for i in range(len(seeds))]
        images = sample(pipe, schedule, prompts, seeds)
        out.mkdir(parents=True, exist_ok=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from PIL import Image
    for img, seed in zip(images, seeds, strict=True):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(out / f"{seed:06d}.png")
    print(f"wrote {len(images)} images to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
