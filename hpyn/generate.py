"""prompts + seeds + SamplerConfig → images.  `python -m hpyn.generate --help`

Image i depends only on (seeds[i], prompts[i], config): its initial noise comes from its own generator,
so batch size and order never change which noise an image gets. Everything that depends on the model family
(noise levels, prompt encoding, the denoiser, FreeU sites, decoding) is asked of the model (`hpyn.models`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hpyn.config import SamplerConfig
from hpyn.solvers import get_solver

__all__ = ["generate", "initial_noise", "parse_seeds", "main"]


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """z_i ~ N(0, I) of `shape` (per sample) from torch.Generator(cpu).manual_seed(seed_i), stacked."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for i, seed in enumerate(seeds):
        out[i] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)))
    return out


def generate(model, config: SamplerConfig, prompts: list[str], seeds: list[int], *, batch_size: int = 16,
             progress: bool = False, resolution: int | None = None) -> torch.Tensor:
    """Sample one image per (prompt, seed): uint8 [N, 3, H, W] on the CPU."""
    if len(prompts) != len(seeds):
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    sigmas = config.sigmas(model.table)
    solver = get_solver(config.solver)
    shape = model.latent_shape(1, resolution)[1:]
    freeu = model.freeu(config.freeu_mapping) if config.freeu else None
    step_hook = (lambda i: freeu.set(config.freeu_at(i))) if freeu else None
    images = []
    try:
        for lo in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="batches"):
            batch = list(prompts[lo:lo + batch_size])
            denoiser = model.make_denoiser(batch, guidance=config.guidance, resolution=resolution,
                                           guidance_interval=config.guidance_interval)
            x = initial_noise(seeds[lo:lo + batch_size], shape).to(model.device) * float(sigmas[0])
            x = solver(denoiser, x, sigmas, step_hook=step_hook)
            if not torch.isfinite(x).all():
                raise FloatingPointError(f"non-finite latents for seeds {seeds[lo:lo + batch_size]}")
            images.append(model.decode(x))
    finally:
        if freeu:
            freeu.remove()
    return torch.cat(images)


def parse_seeds(text: str) -> list[int]:
    """'0-7' → 0..7, '1,5,9' → [1, 5, 9], '3' → [3]; combinations like '0-3,10' work too."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi else a
        except ValueError:
            raise ValueError(f"bad seed spec {part!r} in {text!r}: use e.g. '0-7' or '1,5,9'") from None
        if a < 0 or b < a:
            raise ValueError(f"bad seed range {part!r} in {text!r}: seeds are ≥ 0 and ranges ascending")
        seeds.extend(range(a, b + 1))
    return seeds


def _config_from_arg(arg: str, model_name: str, steps: int | None) -> SamplerConfig:
    from hpyn.presets import preset
    if Path(arg).is_file() or arg.endswith(".json"):
        return SamplerConfig.load(arg)
    from hpyn.models import resolve
    if steps is None:
        raise ValueError(f"--config {arg!r} is a preset name: give --steps too")
    return preset(arg, resolve(model_name).family, steps)


def main(argv=None) -> int:
    from hpyn.presets import PRESETS
    p = argparse.ArgumentParser(
        prog="python -m hpyn.generate", description="Sample images with a sampler config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m hpyn.generate --model toy --config paper --steps 5 --prompt 'a photo of a sneaker' "
               "--seeds 0-7 --out out/\n"
               "  python -m hpyn.generate --model sd15 --config best.json --prompts prompts.txt --seeds 0-99 "
               "--out out/")
    p.add_argument("--model", default="toy", help="registry name, diffusers folder or hub id (default: toy)")
    p.add_argument("--config", required=True,
                   help=f"config/export JSON file, or a preset: {' | '.join(PRESETS)} (hpyn.presets.PRESET_INFO)")
    p.add_argument("--steps", type=int, help="steps for a preset")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    g.add_argument("--prompts", help="text file, one prompt per line")
    p.add_argument("--seeds", default="0", help="e.g. 0-7 or 1,5,9; prompts are cycled to match (default 0)")
    p.add_argument("--out", required=True, help="output folder for PNGs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--guidance", type=float, help="override the config's guidance scale")
    p.add_argument("--device")
    args = p.parse_args(argv)
    try:
        config = _config_from_arg(args.config, args.model, args.steps)
        if args.guidance is not None:
            config = config.replace(guidance=args.guidance)
        seeds = parse_seeds(args.seeds)
        if args.prompts:
            try:
                prompts = [ln.strip() for ln in Path(args.prompts).read_text().splitlines() if ln.strip()]
            except OSError as e:
                raise ValueError(f"cannot read --prompts {args.prompts!r}: {e.strerror}") from None
            if not prompts:
                raise ValueError(f"--prompts {args.prompts!r} has no prompts")
        else:
            prompts = args.prompt
        prompts = [prompts[i % len(prompts)] for i in range(len(seeds))]
        from hpyn.models import load_model, resolve
        resolve(args.model)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = load_model(args.model, device=args.device)
    images = generate(model, config, prompts, seeds, batch_size=args.batch_size, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    for img, seed, prompt in zip(images, seeds, prompts):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(out / f"{seed:06d}.png")
    (out / "prompts.txt").write_text("".join(f"{s:06d}\t{pr}\n" for s, pr in zip(seeds, prompts)))
    config.save(out / "config.json")
    print(f"wrote {len(images)} images to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
