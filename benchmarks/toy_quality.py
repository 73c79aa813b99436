"""Measure the shipped toy model's quality and write hpyn/toy/weights/quality.json (the documented numbers).

    HF_HUB_OFFLINE=1 python benchmarks/toy_quality.py              # N=500 per sampler, ~10 min on 2 CPU cores
    HF_HUB_OFFLINE=1 python benchmarks/toy_quality.py --n 256 --out /tmp/q.json

For each sampler: FID / KID / PRD (Inception pool3 via objectives, against the 2,000 held-out test images in
reference.npz), CLIP score with the toy CLIP for the image's own caption and for a caption of another class,
and the fraction of images the toy classifier assigns to the prompted class. Prompts are the reference's
class-balanced captions, seeds 0..N-1 (the same for every sampler). Also writes the regression baseline
(N=64: class accuracy and the toy CLIP own-vs-shuffled gap) that tests/test_toy.py compares against.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def samplers(guidance: float | None):
    from hpyn.presets import classic_setting, paper_setting
    paper, _ = paper_setting("sd15", 5)
    out = {
        "dpmpp2m-karras-50": classic_setting(50),
        "dpmpp2m-karras-2": classic_setting(2),
        "dpmpp2m-karras-5": classic_setting(5),
        "paper-5": paper,
    }
    if guidance is not None:
        out = {k: v.replace(guidance=guidance) for k, v in out.items()}
    return out


def real_floor(ev, n: int) -> dict | None:
    """Metrics of n *other* real test images (not in the reference): the floor FID at this N."""
    from hpyn import toy
    from hpyn.toy.data import load_split
    try:
        xt, yt = load_split("test")
    except FileNotFoundError:
        return None
    with np.load(toy.REFERENCE) as z:
        used = set(z["test_index"].tolist())
    rest = np.array([i for i in range(len(xt)) if i not in used])[:n]
    imgs = torch.from_numpy(xt[rest])
    caps = [toy.caption(int(c), 0) for c in yt[rest]]
    m = ev.evaluate(imgs, caps)
    return {k: m[k] for k in ("fid", "kid_mean", "kid_std", "clip_score", "prd_f8", "prd_f1_8", "n")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="images per sampler (default 500)")
    p.add_argument("--guidance", type=float, default=None, help="override every sampler's guidance")
    p.add_argument("--only", nargs="*", help="subset of samplers")
    p.add_argument("--out", default=None, help="JSON path (default hpyn/toy/weights/quality.json)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from hpyn import toy
    from hpyn.models import load_model
    from hpyn.toy import quality
    from objectives.clip_score import load_clip
    from objectives.evaluate import Evaluator

    model = load_model("toy", device="cpu")
    ev = Evaluator(reference="toy", prompts="toy", device="cpu")
    classifier = toy.load_classifier()
    clip = load_clip("toy", device="cpu")   # the toy CLIP score lives once, in objectives (objectives.toy)
    prompts = ev.prompts[:a.n]
    seeds = list(range(a.n))
    from hpyn.generate import generate
    result = {"n": a.n, "prompts": "objectives 'toy' prompt set (reference captions), first N", "seeds": f"0..{a.n - 1}",
              "host": {"cpu_threads": a.threads, "load_avg": os.getloadavg(), "python": platform.python_version(),
                       "torch": torch.__version__}, "samplers": {}}
    todo = samplers(a.guidance)
    if a.only:
        todo = {k: v for k, v in todo.items() if k in a.only}
    for name, cfg in todo.items():
        t = time.perf_counter()
        images = generate(model, cfg, prompts, seeds, batch_size=100)
        gen_s = time.perf_counter() - t
        m = ev.evaluate(images, prompts)
        shuf = quality.shuffled(prompts, seed=1)
        own_toy = float(clip.scores(images, prompts).mean())
        shuf_toy = float(clip.scores(images, shuf).mean())
        row = {k: m[k] for k in ("fid", "kid_mean", "kid_std", "clip_score", "prd_f8", "prd_f1_8")}
        row.update(clip_score_shuffled=float(np.mean(ev.clip_scores(images, shuf))),
                   clip_score_toy_own=own_toy, clip_score_toy_shuffled=shuf_toy,
                   class_accuracy=quality.class_accuracy(images, prompts, classifier),
                   generate_s=gen_s, metrics_s=m["timings"]["total_s"], config=cfg.to_dict())
        result["samplers"][name] = row
        result["conventions"] = m["conventions"]
        print(f"{name:20s} FID {row['fid']:7.2f}  KID {row['kid_mean']:.4f}  CLIP own {row['clip_score']:.2f} "
              f"shuffled {row['clip_score_shuffled']:.2f}  class acc {row['class_accuracy']:.3f}  "
              f"PRD F8 {row['prd_f8']:.3f} F1/8 {row['prd_f1_8']:.3f}  ({gen_s:.1f}s gen)", flush=True)
    floor = real_floor(ev, a.n)
    if floor:
        result["real_test_images_not_in_reference"] = floor
        print(f"{'real test images':20s} FID {floor['fid']:7.2f}  CLIP {floor['clip_score']:.2f}", flush=True)

    # regression baseline for tests/test_toy.py (toy classifier + toy CLIP, N=64, seeds 0..63)
    from hpyn.presets import classic_setting, paper_setting
    reg = {}
    for name, cfg in {"paper-5": paper_setting("sd15", 5)[0], "dpmpp2m-karras-5": classic_setting(5)}.items():
        imgs, caps = quality.sample(cfg, n=64, seed=0, model=model)
        own = float(clip.scores(imgs, caps).mean())
        shuf = float(clip.scores(imgs, quality.shuffled(caps, seed=1)).mean())
        reg[name] = {"class_accuracy": quality.class_accuracy(imgs, caps, classifier), "clip_own": own,
                     "clip_shuffled": shuf, "n": 64, "seed": 0}
        print(f"regression {name}: {reg[name]}", flush=True)
    result["regression"] = reg
    out = Path(a.out) if a.out else toy.WEIGHTS / "quality.json"
    if a.only and out.exists():   # merge a partial run into the existing file
        old = json.loads(out.read_text())
        old["samplers"].update(result["samplers"])
        old["regression"] = result["regression"]
        result = {**old, **{k: v for k, v in result.items() if k != "samplers"}, "samplers": old["samplers"]}
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
