"""Wall time of a toy study trial on the CPU: 256 images in 5 steps (paper setting) plus all metrics.

    HF_HUB_OFFLINE=1 python benchmarks/toy_speed.py            # prints a JSON line

Setup (loading the pipeline, Inception, the toy CLIP and the cached reference features) is timed apart:
a study pays it once. The issue's target: generate + all metrics < 60 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from hpyn.presets import paper_setting
    from hpyn.generate import generate
    from hpyn.models import load_model
    from objectives.evaluate import Evaluator

    t0 = time.perf_counter()
    model = load_model("toy", device="cpu")
    ev = Evaluator(reference="toy", prompts="toy", device="cpu")
    setup_s = time.perf_counter() - t0
    cfg, _ = paper_setting("sd15", a.steps)
    prompts = (ev.prompts * (a.n // len(ev.prompts) + 1))[:a.n]
    t1 = time.perf_counter()
    images = generate(model, cfg, prompts, list(range(a.n)), batch_size=128)
    gen_s = time.perf_counter() - t1
    m = ev.evaluate(images, prompts)
    total_s = time.perf_counter() - t1
    print(json.dumps({"n": a.n, "steps": a.steps, "setup_s": round(setup_s, 2), "generate_s": round(gen_s, 2),
                      "metrics_s": round(m["timings"]["total_s"], 2), "generate_plus_metrics_s": round(total_s, 2),
                      "metric_timings": {k: round(v, 2) for k, v in m["timings"].items()},
                      "fid": m["fid"], "clip_score": m["clip_score"], "threads": a.threads,
                      "load_avg_1min": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
