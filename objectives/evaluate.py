"""One call from generated images (+ prompts) to every metric a study optimises.

``Evaluator`` loads the feature extractor and CLIP model once, holds the reference features (computed
once, cached on disk), and ``evaluate(images, prompts)`` returns FID, KID, CLIP score and PRD with their
conventions. Inception features of the generated images are computed once and shared by FID, KID and PRD.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from objectives.clip_score import ClipModel, load_clip
from objectives.features import Extractor, as_uint8_nchw, default_device, get_extractor
from objectives.fid import (feature_statistics, fid_from_features, fid_from_features_and_statistics,
                            kid_from_features, kid_kernel, kid_subset_size)
from objectives.metrics import STAGES
from objectives.prd import PRDCurve, plot_prd, prd_from_features
from objectives.prompts import load_prompts
from objectives.references import REFERENCES, Reference, load_reference, reference_features

METRICS = STAGES   # the Evaluator's stages ("fid", "kid", "clip", "prd"); result keys: objectives.metrics


class Evaluator:
    """Metrics of generated images against a fixed reference.

    Args:
        reference: reference spec (``"toy"``, ``"npz:PATH"``, ``"folder:PATH"``, ``"coco2014:ROOT"``, ...) or a
            :class:`~objectives.references.Reference`.
        prompts: optional prompt-set spec or list (``"toy"``, ``"builtin"``, ``"coco2014:ROOT"``, ...); when given,
            ``evaluate(images)`` without prompts uses ``self.prompts[:N]``. ``None``: the prompt set registered
            with a named reference (``"toy"`` for the toy reference), else the reference's captions if it has
            any (COCO, LAION).
        clip: CLIP spec (see ``objectives.clip_score``), ``"auto"`` (the CLIP registered with a named
            reference, ``"toy"`` for the toy; else OpenAI ViT-B/32 through open_clip), a :class:`ClipModel`,
            or ``None`` to skip CLIP score.
        extractor: registered feature extractor name, or an :class:`Extractor`.
        inception_weights: weights file for the Inception extractor (default: see ``objectives.features``).
        device: torch device for the networks (default CUDA if available).
        n_reference: use the first ``n_reference`` reference images (default all).
        metrics: subset of ``("fid", "kid", "clip", "prd")``.
        kid_subsets, kid_subset_size: KID averaging (subset size is capped at min(N, n_reference)).
        prd_clusters, prd_angles, prd_runs: PRD settings (Sajjadi et al.: 20, 1001, 10).
        seed: seed of the KID subsets, the PRD reference subsample and the PRD clusterings.
        batch_size: network batch size (default 32 on CPU, 128 on CUDA).
        cache: cache folder (default ``$HPYN_CACHE`` or ``~/.cache/hpyn``).
    """

    def __init__(self, reference: str | Reference = "toy", prompts: str | Sequence[str] | None = None, *,
                 clip: str | ClipModel | None = "auto", extractor: str | Extractor = "inception-v3-compat",
                 inception_weights: str | os.PathLike | None = None, device=None, n_reference: int | None = None,
                 metrics: Sequence[str] = METRICS, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 prd_clusters: int = 20, prd_angles: int = 1001, prd_runs: int = 10, seed: int = 0,
                 batch_size: int | None = None, cache: str | os.PathLike | None = None):
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
        self.metrics = tuple(metrics)
        self.reference = load_reference(reference)
        self.n_reference = len(self.reference) if n_reference is None else min(n_reference, len(self.reference))
        named = REFERENCES.get(reference) if isinstance(reference, str) else None
        if isinstance(prompts, str) and prompts == "reference":
            prompts = None
        elif prompts is None and named is not None and named.prompts is not None:
            prompts = named.prompts
        self.prompts = load_prompts(prompts) if prompts is not None else self.reference.captions
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.prd_clusters, self.prd_angles, self.prd_runs = prd_clusters, prd_angles, prd_runs
        self.seed, self.cache = seed, cache
        self.last: dict = {}
        if batch_size is None:
            batch_size = 128 if default_device(device).type == "cuda" else 32

        # CLIP first: a missing checkpoint fails before minutes of reference features.
        self.clip: ClipModel | None = None
        if "clip" in self.metrics and clip is not None:
            if isinstance(clip, ClipModel):
                self.clip = clip
            else:
                if clip == "auto":
                    named = REFERENCES.get(self.reference.name)
                    clip = named.clip if named is not None else None
                self.clip = load_clip(clip, device=device, batch_size=max(batch_size, 64))

        need_features = bool({"fid", "kid", "prd"} & set(self.metrics))
        self.extractor: Extractor | None = None
        self.ref_features: torch.Tensor | None = None
        self._ref_stats = None
        if need_features:
            if isinstance(extractor, Extractor):
                self.extractor = extractor
            else:
                kw = {"device": device, "batch_size": batch_size}
                if extractor == "inception-v3-compat":
                    kw.update(weights=inception_weights, cache=cache)
                self.extractor = get_extractor(extractor, **kw)
            self.ref_features = reference_features(self.reference, self.extractor, self.n_reference, cache)
            # Large references (N_ref > D, e.g. 10k COCO images): FID from statistics computed once.
            self._ref_stats = (feature_statistics(self.ref_features)
                               if len(self.ref_features) > self.ref_features.shape[1] else None)
        self.device = default_device(device)
        # KID's reference kernel, computed once (n_ref² float64: 32 MB at 2,000, 200 MB at 5,000).
        self._ref_kernel = (kid_kernel(self.ref_features, device=self.device)
                            if "kid" in self.metrics and self.ref_features is not None
                            and len(self.ref_features) <= 5000 else None)

    # ------------------------------------------------------------------------------------------------
    def image_features(self, images) -> torch.Tensor:
        """Extractor features [N, D] of uint8 images (to keep across rungs and pass to ``evaluate``)."""
        if self.extractor is None:
            raise RuntimeError("this Evaluator computes no feature-based metric")
        return self.extractor(images)

    def clip_scores(self, images, prompts: Sequence[str]) -> np.ndarray:
        """Per-sample CLIP scores (100 * max(cos, 0))."""
        if self.clip is None:
            raise RuntimeError("this Evaluator has no CLIP model (clip=None or 'clip' not in metrics)")
        return self.clip.scores(images, list(prompts))

    def conventions(self, n: int) -> dict:
        conv: dict = {"n": n, **self.reference.conventions(), "n_reference": self.n_reference}
        if self.extractor is not None:
            conv.update(self.extractor.conventions())
            conv["resize"] = (f"generated: native -> {self.extractor.resize}; "
                              f"reference: {self.reference.prep} -> {self.extractor.resize}")
            conv["fid"] = f"Frechet distance of pool features, N={n} vs {self.n_reference} (biased by ~1/N)"
            conv["kid"] = {"subset_size": kid_subset_size(n, self.n_reference, self.kid_subset_size),
                           "subsets": self.kid_subsets, "kernel": "poly3 (gamma=1/D, coef0=1)", "seed": self.seed}
            conv["prd"] = {"clusters": self.prd_clusters, "angles": self.prd_angles, "runs": self.prd_runs,
                           "n_each": min(n, self.n_reference), "seed": self.seed,
                           "summary": "prd_f8 = max F_8 (recall), prd_f1_8 = max F_1/8 (precision)"}
        if self.clip is not None:
            conv.update(self.clip.conventions())
        return conv

    def evaluate(self, images=None, prompts: Sequence[str] | None = None, *, features: torch.Tensor | None = None,
                 clip_scores: np.ndarray | None = None, prd_plot: str | os.PathLike | None = None,
                 metrics: Sequence[str] | None = None) -> dict:
        """All metrics of ``images`` (uint8 [N, 3, H, W]) generated from ``prompts``.

        Pass ``features`` / ``clip_scores`` (from ``image_features`` / ``clip_scores``) instead of images to
        reuse work, e.g. across rungs. ``prd_plot``: write the PRD curve as a PNG there. ``metrics``: compute
        only these of the Evaluator's metrics in this call (e.g. skip PRD at early rungs).

        Returns a flat dict ``fid, kid_mean, kid_std, clip_score, prd_f8, prd_f1_8, n`` (metrics not computed
        are absent), plus ``conventions`` (dict) and ``timings`` (seconds per stage). ``self.last`` keeps the
        features, per-sample CLIP scores and PRD curve of the last call.
        """
        if metrics is None:
            metrics = self.metrics
        elif set(metrics) - set(self.metrics):
            raise ValueError(f"metrics {sorted(set(metrics) - set(self.metrics))} are not enabled in this Evaluator "
                             f"(enabled: {list(self.metrics)})")
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        if images is not None:
            images = as_uint8_nchw(images)
        n = len(images) if images is not None else len(features) if features is not None else len(clip_scores)
        out: dict = {}
        need_features = bool({"fid", "kid", "prd"} & set(metrics))
        if need_features:
            if features is None:
                if images is None:
                    raise ValueError("need images or features")
                t = time.perf_counter()
                features = self.image_features(images)
                timings["features_s"] = time.perf_counter() - t
            if len(features) != n:
                raise ValueError(f"{len(features)} feature rows for {n} samples")
        if "fid" in metrics:
            t = time.perf_counter()
            out["fid"] = (fid_from_features(features, self.ref_features) if self._ref_stats is None
                          else fid_from_features_and_statistics(features, *self._ref_stats))
            timings["fid_s"] = time.perf_counter() - t
        if "kid" in metrics:
            t = time.perf_counter()
            out["kid_mean"], out["kid_std"] = kid_from_features(
                features, self.ref_features, subsets=self.kid_subsets, subset_size=self.kid_subset_size,
                seed=self.seed, device=self.device, kernel_22=self._ref_kernel)
            timings["kid_s"] = time.perf_counter() - t
        curve = None
        if "prd" in metrics:
            t = time.perf_counter()
            curve = self.prd(features)
            out["prd_f8"], out["prd_f1_8"] = curve.f_beta(8)
            timings["prd_s"] = time.perf_counter() - t
            if prd_plot is not None:
                plot_prd(curve, prd_plot, title=f"PRD vs {self.reference.name} (N={min(n, self.n_reference)})")
        if "clip" in metrics and self.clip is not None:
            if clip_scores is None:
                if prompts is None:
                    if self.prompts is None:
                        raise ValueError("CLIP score needs prompts (pass prompts, or give the Evaluator a prompt set)")
                    if n > len(self.prompts):
                        raise ValueError(f"{n} images but the prompt set has only {len(self.prompts)} prompts")
                    prompts = self.prompts[:n]
                if images is None:
                    raise ValueError("CLIP score needs images or clip_scores")
                t = time.perf_counter()
                clip_scores = self.clip_scores(images, prompts)
                timings["clip_s"] = time.perf_counter() - t
            out["clip_score"] = float(np.mean(clip_scores))
        out["n"] = n
        out["conventions"] = self.conventions(n)
        timings["total_s"] = time.perf_counter() - t_start
        out["timings"] = timings
        self.last = {"features": features, "clip_scores": clip_scores, "prd": curve}
        return out

    def prd(self, features) -> PRDCurve:
        """PRD of ``features`` against an equal-size, seeded subsample of the reference features."""
        n = min(len(features), len(self.ref_features))
        g = torch.Generator().manual_seed(self.seed)
        ref = self.ref_features[torch.randperm(len(self.ref_features), generator=g)[:n]]
        gen = features[:n]
        return prd_from_features(gen, ref, num_clusters=self.prd_clusters, num_angles=self.prd_angles,
                                 num_runs=self.prd_runs, seed=self.seed)


def evaluate_config(model, config, evaluator: Evaluator, prompts: Sequence[str] | None = None,
                    seeds: Sequence[int] | None = None, n: int | None = None, batch_size: int = 16,
                    prd_plot: str | os.PathLike | None = None) -> dict:
    """Generate with ``hpyn.generate.generate(model, config, prompts, seeds)`` and evaluate.

    ``prompts`` default to the evaluator's prompt set, ``seeds`` to ``range(n)``; ``n`` defaults to
    ``len(prompts)``. Adds ``timings["generate_s"]`` and ``timings["metrics_share"]`` (metric time / trial time).
    """
    from hpyn.generate import generate

    if prompts is None:
        if evaluator.prompts is None:
            raise ValueError("no prompts given and the evaluator has no prompt set")
        prompts = evaluator.prompts
    prompts = list(prompts)
    n = len(prompts) if n is None else n
    if n > len(prompts):
        raise ValueError(f"n={n} but only {len(prompts)} prompts")
    prompts = prompts[:n]
    seeds = list(range(n)) if seeds is None else list(seeds)[:n]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} prompts")
    t = time.perf_counter()
    images = generate(model, config, prompts, seeds, batch_size=batch_size)
    gen_s = time.perf_counter() - t
    out = evaluator.evaluate(images, prompts, prd_plot=prd_plot)
    out["timings"]["generate_s"] = gen_s
    out["timings"]["metrics_share"] = out["timings"]["total_s"] / (out["timings"]["total_s"] + gen_s)
    return out


def main(argv=None) -> None:
    """Score a folder (or .npz) of generated images against a reference; prints the metrics as JSON.

    Examples:
        python -m objectives.evaluate out/images --reference toy --prompts toy
        python -m objectives.evaluate samples/ --reference coco2014:/data/coco --prompts prompts.txt \\
            --clip open_clip:ViT-B-32/openai --prd-plot prd.png --json metrics.json
    Images in a folder are read in sorted order and paired with the prompts in order (as the paper's
    CLIP-score script does); they are used at native size (all images must share one size).
    """
    import argparse
    import json

    from objectives.references import folder_reference, npz_reference

    ap = argparse.ArgumentParser(prog="python -m objectives.evaluate", description=main.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", help="folder of generated images, or an .npz with an 'images' uint8 array")
    ap.add_argument("--reference", required=True, help="toy | npz:PATH | folder:PATH | coco2014:ROOT | ...")
    ap.add_argument("--prompts", default=None, help="prompt set paired with the images (default: the reference's)")
    ap.add_argument("--clip", default="auto", help="CLIP spec, 'auto', or 'none'")
    ap.add_argument("--extractor", default="inception-v3-compat")
    ap.add_argument("--metrics", default="fid,kid,clip,prd")
    ap.add_argument("--n-reference", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--prd-plot", default=None, help="write the PRD curve as PNG here")
    ap.add_argument("--json", default=None, help="also write the metrics JSON here")
    ap.add_argument("--cache", default=None, help="cache folder (default $HPYN_CACHE or ~/.cache/hpyn)")
    a = ap.parse_args(argv)
    src = Path(a.images)
    gen = npz_reference(src) if src.suffix == ".npz" else folder_reference(src, prep="native")
    ev = Evaluator(a.reference, a.prompts, clip=None if a.clip == "none" else a.clip, extractor=a.extractor,
                   device=a.device, n_reference=a.n_reference, metrics=tuple(a.metrics.split(",")), cache=a.cache)
    out = ev.evaluate(gen.images(), prd_plot=a.prd_plot)
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
