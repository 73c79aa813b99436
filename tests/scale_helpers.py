"""Helpers of tests/test_scale_*.py and benchmarks/scale_workers.py: a cheap deterministic evaluator (FID of
pixel statistics, with an optional delay per rung so that a worker can be killed mid-trial) and a worker process
entry point that runs `search.run.run_study` (the same code as `python -m search.run`) with the real generation
of a small diffusers pipeline.

    python tests/scale_helpers.py --model DIR --reference npz:FILE --storage URL --study NAME --trials N \\
        [--steps 3 --rungs 4,8 --sleep 0.5 --heartbeat 1 --pruner sha --threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class PixelEvaluator:
    """FID (objectives.fid.fid_from_features) between per-channel pixel means/stds of the images and of a
    reference set: cheap, deterministic, and it ranks sampler configs (brightness and contrast follow the σ grid).
    `sleep` seconds are spent per evaluate call (a stand-in for Inception on a real model)."""

    def __init__(self, reference, sleep: float = 0.0):
        if isinstance(reference, (str, os.PathLike)):
            reference = np.load(str(reference).removeprefix("npz:"))["images"]
        self.ref = self.features(reference)
        self.sleep = sleep
        self.calls = 0

    @staticmethod
    def features(images) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64) / 255.0
        return np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)

    def evaluate(self, images, prompts):
        from objectives.fid import fid_from_features
        self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        f = self.features(images.numpy() if hasattr(images, "numpy") else images)
        fid = float(fid_from_features(f, self.ref)) * 100.0
        return {"fid": fid, "n": len(images), "conventions": {"extractor": "pixel-mean-std", "n": len(images)}}


def make_reference(path: Path, n: int = 16, size: int = 16, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    base = rng.integers(70, 150, (n, 3, 1, 1))
    images = np.clip(base + rng.integers(-40, 40, (n, 3, size, size)), 0, 255).astype(np.uint8)
    np.savez(path, images=images)
    return f"npz:{path}"


def ray_factory(sleep: float = 0.0):
    """For --backend ray in tests: `factory(prep) -> (model, evaluator)` run once in each Ray worker process."""
    def factory(prep):
        import torch

        from hpyn.models import load_model
        torch.set_num_threads(1)
        return load_model(prep.opts.model, device="cpu"), PixelEvaluator(prep.opts.reference, sleep=sleep)
    return factory


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rungs", default="4,8")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--heartbeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pruner", default="sha")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--artifacts", help="artifact folder (default: a temporary one)")
    a = p.parse_args(argv)

    import tempfile

    import torch
    torch.set_num_threads(a.threads)
    from hpyn.models import load_model
    from search.options import RunOptions
    from search.run import run_study

    opts = RunOptions(model=a.model, steps=a.steps, study=a.study, storage=a.storage, trials=a.trials,
                      prompts="builtin", reference=a.reference, rungs=a.rungs, guidance=5.0, seed=a.seed,
                      pruner=a.pruner, metrics=("fid",), clip="none", device="cpu", batch_size=8,
                      heartbeat=a.heartbeat, startup_trials=4, baselines=("paper", "dpmpp2m-karras"),
                      artifacts=a.artifacts or tempfile.mkdtemp(prefix="hpyn-artifacts-"))
    t = time.perf_counter()
    model = load_model(a.model, device="cpu")
    print(f"worker {os.getpid()} loaded the model in {time.perf_counter() - t:.1f}s", flush=True)
    from search.run import RunFailed
    from search.trials import Interrupted
    try:   # the exit codes of `python -m search.run`
        run_study(opts, evaluator=PixelEvaluator(a.reference, a.sleep), model=model,
                  log=lambda s: print(s, flush=True))
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted:
        return 143
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT)]
    raise SystemExit(main())
