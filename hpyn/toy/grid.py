"""Grid PNG of the toy model: the paper's 5-step schedule (residual ε) vs classic DPM++2M-Karras, one column per class.

    python -m hpyn.toy.grid --out toy_grid.png                 # 5 steps, 2 seeds (rows) per class (columns)
    python -m hpyn.toy.grid --out g.png --steps 6 --seeds 3 --scale 4
"""
from __future__ import annotations

import argparse
import sys

import torch

from . import CLASS_NAMES, caption


def rows(steps: int):
    """(label, SamplerConfig) for the two samplers compared in the grid."""
    from hpyn.presets import classic_setting, paper_setting
    paper, _ = paper_setting("sd15", steps)
    return [(f"paper {steps}-step (time-spaced, residual eps={paper.epsilon:.3g}, order {paper.order})", paper),
            (f"DPM++2M-Karras {steps}-step (sigma_min then 0)", classic_setting(steps))]


def make_grid(steps: int = 5, seeds_per_class: int = 2, scale: int = 3, model=None):
    """PIL image: one block per sampler with a row per seed and a column per class; same seeds and prompts
    ("a photo of a <class>") in every block."""
    from PIL import Image, ImageDraw
    from hpyn.generate import generate
    from hpyn.models import load_model
    model = model or load_model("toy", device="cpu")
    n_cls = len(CLASS_NAMES)
    prompts = [caption(c, 0) for _ in range(seeds_per_class) for c in range(n_cls)]
    seeds = [s for s in range(seeds_per_class) for _ in range(n_cls)]
    res, pad, label_h = model.resolution * scale, 2, 14
    blocks = [(label, generate(model, cfg, prompts, seeds, batch_size=len(prompts))) for label, cfg in rows(steps)]
    W = n_cls * (res + pad) + pad
    H = label_h + len(blocks) * (label_h + seeds_per_class * (res + pad)) + pad
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    for c in range(n_cls):
        draw.text((pad + c * (res + pad), 1), CLASS_NAMES[c], fill="black")
    y = label_h
    for label, imgs in blocks:
        draw.text((pad, y + 1), label, fill="black")
        y += label_h
        for i, img in enumerate(imgs):
            tile = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((res, res), Image.NEAREST)
            canvas.paste(tile, (pad + (i % n_cls) * (res + pad), y + (i // n_cls) * (res + pad)))
        y += seeds_per_class * (res + pad)
    return canvas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpyn.toy.grid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seeds", type=int, default=2, help="seeds per class (columns per class)")
    p.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of the 32x32 images")
    a = p.parse_args(argv)
    for name in ("steps", "seeds", "scale"):
        if getattr(a, name) < 1:
            print(f"error: --{name} must be >= 1, got {getattr(a, name)}", file=sys.stderr)
            return 2
    torch.set_num_threads(min(2, torch.get_num_threads()))
    make_grid(a.steps, a.seeds, a.scale).save(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
