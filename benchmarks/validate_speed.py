"""Cost of the held-out validation (search.validate): generation + features per image, and the paired bootstrap.

    python benchmarks/validate_speed.py                        # toy, CPU: N=256, 5 candidates, 1000 resamples
    python benchmarks/validate_speed.py --n 128 --candidates 8 --reference 500
    python benchmarks/validate_speed.py --synthetic --n 5000 --reference 10000 --device cuda   # real-model sizes

Toy mode measures, on the shipped toy model at 5 steps, the seconds per image of generation and of every feature
pass validation makes (Inception for FID/KID, the toy classifier for the second judge, the toy CLIP for CLIP score),
then times the bootstrap (FID, KID, CLIP score and the judge's FD of every candidate, one set of resamples) on
those features, and prints the projected wall time of a validation of K candidates x N images against a held-out
reference of M images, with the bootstrap's share.
Synthetic mode times only the bootstrap at real-model sizes (random features: Inception 2048-d, CLIP ViT-B/32
512-d, DINOv2 ViT-L/14 1024-d) on the chosen device; generation there is measured by benchmarks/sampler_speed.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t, time.process_time() - c


def bootstrap_seconds(cands: dict, refs: dict, n: int, resamples: int, device) -> float:
    """Seconds of search.validate's bootstrap stage for these candidates' features (dict name -> features)."""
    from objectives.bootstrap import (
        FrechetResampler,
        KIDResampler,
        resample_counts,
        weighted_means,
    )

    def run():
        counts = resample_counts(n, resamples, 0, device=device)
        fds = {k: FrechetResampler(r, device=device) for k, r in refs.items()}
        kid = KIDResampler(refs["inception"], device=device)
        for f in cands.values():
            for k, fr in fds.items():
                fr.point(f[k]), fr.distances(f[k], counts)
            kid.point(f["inception"]), kid.mmd2(f["inception"], counts)
            weighted_means(f["clip"], counts.cpu())
    return timed(run, device)[1]


def toy(a) -> None:
    from hpyn.config import SamplerConfig
    from hpyn.generate import generate
    from hpyn.models import load_model
    from objectives.clip_score import clip_scores, load_clip
    from objectives.features import get_extractor
    from objectives.prompts import load_prompts
    from objectives.references import load_reference

    dev = a.device
    model = load_model("toy", device=dev)
    config = SamplerConfig(steps=5, spacing="karras", rho=7.0, final="zero", solver="dpmpp_2m", guidance=2.0)
    prompts, seeds = load_prompts("toy")[:a.n], list(range(500_000, 500_000 + a.n))
    images, gen_s, gen_c = timed(lambda: generate(model, config, prompts, seeds, batch_size=64), dev)
    inc = get_extractor("inception-v3-compat", device=dev, batch_size=32 if dev == "cpu" else 128)
    clf = get_extractor("toy-classifier", device=dev)
    clip = load_clip("toy", device=dev)
    inc(images[:2])   # warm-up
    f_inc, inc_s, inc_c = timed(lambda: inc(images), dev)
    f_clf, clf_s, clf_c = timed(lambda: clf(images), dev)
    (emb, txt), clip_s, clip_c = timed(lambda: (clip.image_features(images), clip.text_features(prompts)), dev)
    scores = clip_scores(emb, txt)
    print(f"toy, {dev}, torch threads {torch.get_num_threads()}, N={a.n} images (seconds per image, wall / CPU):")
    for name, s, c in (("generation (5 steps, DPM++2M)", gen_s, gen_c), ("Inception pool3 (FID, KID)", inc_s, inc_c),
                       ("toy classifier (second judge)", clf_s, clf_c), ("toy CLIP (CLIP score)", clip_s, clip_c)):
        print(f"  {name:32s} {s / a.n * 1000:8.1f} ms  / {c / a.n * 1000:8.1f} ms CPU   ({a.n / s:6.1f} img/s)")
    per_image = (gen_s + inc_s + clf_s + clip_s) / a.n
    ref = load_reference("toy").images(a.reference)
    refs = {"inception": inc(ref[:min(len(ref), 64)]), "classifier": clf(ref)}
    ref_s = (inc_s + clf_s) / a.n * a.reference
    if a.reference > 64:   # Inception on the whole reference would take minutes: its cost is projected
        refs["inception"] = torch.cat([refs["inception"], inc_like(refs["inception"], a.reference - 64)])
    g = torch.Generator().manual_seed(0)
    cands = {f"c{i}": {"inception": f_inc + 0.05 * i * torch.randn(f_inc.shape, generator=g),
                       "classifier": f_clf + 0.05 * i * torch.randn(f_clf.shape, generator=g),
                       "clip": scores + i} for i in range(a.candidates)}
    boot = bootstrap_seconds(cands, refs, a.n, a.resamples, dev)
    gen_feat = a.candidates * a.n * per_image
    total = gen_feat + ref_s + boot
    print(f"validation of {a.candidates} candidates x N={a.n}, held-out reference M={a.reference}, "
          f"{a.resamples} resamples:")
    print(f"  generation + features  {gen_feat:7.1f} s  ({gen_feat / total:5.1%})")
    print(f"  reference features     {ref_s:7.1f} s  ({ref_s / total:5.1%}; once per machine, then cached)")
    print(f"  bootstrap              {boot:7.1f} s  ({boot / total:5.1%})")
    print(f"  total                  {total:7.1f} s  (a re-run after the first: {gen_feat + boot:.1f} s)")


def inc_like(x: torch.Tensor, n: int) -> torch.Tensor:
    """n rows with the mean and a covariance like x's (x's rows reshuffled plus noise), for timing only."""
    g = torch.Generator().manual_seed(1)
    return x[torch.randint(0, len(x), (n,), generator=g)] + 0.1 * x.std(0) * torch.randn(n, x.shape[1], generator=g)


def synthetic(a) -> None:
    dev = a.device
    g = torch.Generator().manual_seed(0)
    dims = {"inception": 2048, "clip-image": 512, "dinov2": 1024}
    refs = {k: torch.randn(a.reference, d, generator=g) for k, d in dims.items()}
    cands = {f"c{i}": {**{k: torch.randn(a.n, d, generator=g) + 0.01 * i for k, d in dims.items()},
                       "clip": np.full(a.n, 30.0)} for i in range(a.candidates)}
    boot = bootstrap_seconds(cands, refs, a.n, a.resamples, dev)
    print(f"synthetic bootstrap on {dev}: {a.candidates} candidates x N={a.n}, reference {a.reference}, "
          f"features {dims}, {a.resamples} resamples: {boot:.1f} s ({boot / a.candidates:.1f} s per candidate)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="held-out images per candidate")
    p.add_argument("--candidates", type=int, default=5, help="finalists + baselines (default 3 + 2)")
    p.add_argument("--reference", type=int, default=500, help="held-out reference images")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--synthetic", action="store_true", help="bootstrap only, random features at real-model sizes")
    a = p.parse_args()
    synthetic(a) if a.synthetic else toy(a)


if __name__ == "__main__":
    main()
