"""Small-sample behaviour of FID, KID and PRD: real Fashion-MNIST images scored against the toy reference.

    python benchmarks/metrics_small_sample.py                              # toy-classifier features (fast)
    python benchmarks/metrics_small_sample.py --extractor inception-v3-compat --sizes 32,64,128 --repeats 2

"Generated" sets are N real training images (class-balanced), so the true distance to the reference
(held-out test images) is ~0: what is printed is the small-sample bias and spread. FID's bias shrinks
roughly like 1/N, which is why trials are compared at the same N (common random numbers); KID is unbiased
(mean ~0 at every N) with a spread that shrinks with N.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extractor", default="toy-classifier")
    ap.add_argument("--sizes", default="32,64,128,256,512")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prd-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from hpyn.toy.data import load_split
    from objectives.features import get_extractor
    from objectives.fid import fid_from_features, kid_from_features
    from objectives.prd import prd_from_features
    from objectives.references import load_reference, reference_features

    ref = load_reference("toy")
    ext = get_extractor(a.extractor, device="cpu")
    ref_f = reference_features(ref, ext)
    x, y = load_split("train")
    sizes = [int(s) for s in a.sizes.split(",")]
    need = max(sizes) * a.repeats
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: need // 10 + 1] for c in range(10)])
    idx = rng.permutation(idx)[:need]
    t = time.perf_counter()
    pool = ext(torch.from_numpy(x[idx]))
    print(f"# {ext.id}: {len(idx)} real train images in {time.perf_counter() - t:.1f} s; reference {ref.name} "
          f"N={len(ref_f)}")
    print(f"{'N':>5} {'FID mean':>9} {'sd':>6} {'KID mean':>9} {'sd':>7} {'PRD F8':>7} {'F1/8':>6}")
    for n in sizes:
        fids, kids, f8s, f18s = [], [], [], []
        for r in range(a.repeats):
            g = pool[r * n: (r + 1) * n]
            fids.append(fid_from_features(g, ref_f))
            kids.append(kid_from_features(g, ref_f, subsets=50, seed=r)[0])
            m = min(n, len(ref_f))   # PRD needs equal sizes
            sub = ref_f[torch.randperm(len(ref_f), generator=torch.Generator().manual_seed(r))[:m]]
            f8, f18 = prd_from_features(g[:m], sub, num_runs=a.prd_runs, seed=r).f_beta(8)
            f8s.append(f8)
            f18s.append(f18)
        print(f"{n:5d} {np.mean(fids):9.3f} {np.std(fids):6.3f} {np.mean(kids):9.5f} {np.std(kids):7.5f} "
              f"{np.mean(f8s):7.3f} {np.mean(f18s):6.3f}")


if __name__ == "__main__":
    main()
