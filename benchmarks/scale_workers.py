"""Scaling benchmark (not a test): trials per minute of one study with 1 and with 2 worker processes.

    python benchmarks/scale_workers.py                          # toy model if built, else a tiny pipeline
    python benchmarks/scale_workers.py --workers 1,2,4 --threads 1 --trials 12 --evaluator real
    python benchmarks/scale_workers.py --storage postgresql://u:p@host/db     # an existing server

Each setting runs a fresh study on PostgreSQL (a throwaway local cluster from tests/pgserver.py unless --storage is
given) with W worker processes started together, each with --threads torch threads; pruning is off so that
every trial costs the same. The rate is taken from the trials' own timestamps (first trial start to last trial
end), so process start-up and model loading are not counted: the steady-state throughput of the study.
Efficiency of W workers = (rate_W / rate_1) / W.

Evaluators: "real" = `python -m search.run` with the model's default metrics (the toy model: toy classifier
features FID/KID, CLIP score, PRD), "pixel" = tests/scale_helpers.py (real generation, a cheap pixel-statistics
FID: measures the generation + storage path alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def toy_available() -> bool:
    return (ROOT / "hpyn" / "toy" / "weights" / "pipeline" / "model_index.json").is_file()


def run_setting(url: str, study: str, workers: int, threads: int, trials: int, evaluator: str, model: str,
                ref: str | None, steps: int, rungs: str | None, extra: list[str], sleep: float = 0.0) -> dict:
    import optuna
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    art = tempfile.mkdtemp(prefix="hpyn-scale-artifacts-")
    if evaluator == "pixel":
        cmd = [sys.executable, str(ROOT / "tests" / "scale_helpers.py"), "--model", model, "--reference", ref,
               "--storage", url, "--study", study, "--trials", str(trials), "--steps", str(steps), "--pruner", "none",
               "--heartbeat", "5", "--threads", str(threads), "--sleep", str(sleep), "--artifacts", art] + \
              (["--rungs", rungs] if rungs else [])
    else:
        cmd = [sys.executable, "-m", "search.run", "--model", model, "--steps", str(steps), "--storage", url,
               "--study", study, "--trials", str(trials), "--pruner", "none", "--quiet", "--device", "cpu",
               "--artifacts", art] + \
              (["--rungs", rungs] if rungs else []) + (["--reference", ref] if ref else [])
    cmd += extra
    t0 = time.time()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t0
    bad = [o[-2000:] for p, o in zip(procs, outs) if p.returncode != 0]
    if bad:
        raise SystemExit("a worker failed:\n" + bad[0])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ts = [t for t in optuna.load_study(study_name=study, storage=url).get_trials()
          if t.state == optuna.trial.TrialState.COMPLETE]
    start = min(t.datetime_start for t in ts)
    end = max(t.datetime_complete for t in ts)
    span = (end - start).total_seconds()
    per_trial = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in ts)
    return {"workers": workers, "threads_per_worker": threads, "trials": len(ts), "span_s": round(span, 1),
            "wall_s": round(wall, 1), "trials_per_min": round(60 * len(ts) / span, 2),
            "median_trial_s": round(per_trial[len(per_trial) // 2], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--trials", type=int, default=12, help="trials per setting")
    p.add_argument("--evaluator", choices=("real", "pixel"), default=None,
                   help="default: real with the toy model, pixel with the tiny stand-in pipeline")
    p.add_argument("--model", help="default: toy if built, else a tiny pipeline built from configs")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rungs", help="default: the model's (toy 32,128); pixel/tiny: 8,16")
    p.add_argument("--storage", help="PostgreSQL URL (default: a throwaway local cluster)")
    p.add_argument("--sleep", type=float, default=0.0,
                   help="pixel evaluator: seconds of idle wait per rung, standing in for GPU work (the CPU is free "
                        "meanwhile, as on a GPU worker): shows the scaling of the study's coordination alone")
    p.add_argument("--json", help="write the results here")
    p.add_argument("extra", nargs="*", help="further arguments for each worker (after --)")
    a = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="hpyn-scale-"))
    from scale_helpers import make_reference
    model, ref = a.model, None
    if model is None:
        if toy_available():
            model = "toy"
        else:
            from conftest import build_tiny_pipeline
            model = str(build_tiny_pipeline(tmp))
    evaluator = a.evaluator or ("real" if model == "toy" else "pixel")
    rungs = a.rungs
    if evaluator == "pixel":
        ref = make_reference(tmp / "ref.npz", size=64 if model == "toy" else 16)
        rungs = rungs or "8,16"
    elif model != "toy":
        raise SystemExit("--evaluator real needs the toy model (or give --model toy and the extra args it needs)")

    from contextlib import nullcontext

    from pgserver import postgres_server
    ctx = nullcontext(a.storage) if a.storage else postgres_server()
    results = []
    with ctx as url:
        if url is None:
            raise SystemExit("no PostgreSQL: install the Debian package postgresql, or give --storage")
        stamp = time.strftime("%H%M%S")
        for w in [int(x) for x in a.workers.split(",")]:
            r = run_setting(url, f"scale-{stamp}-w{w}", w, a.threads, a.trials, evaluator, model, ref, a.steps,
                            rungs, a.extra, a.sleep)
            results.append(r)
            print(json.dumps(r), flush=True)
    base = results[0]["trials_per_min"] / results[0]["workers"]
    print(f"\nmodel {model}, evaluator {evaluator}" + (f" (+{a.sleep}s idle per rung)" if a.sleep else "")
          + f", {a.steps} steps, rungs {rungs or 'model default'}, {a.threads} thread(s) per worker, "
          f"{os.cpu_count()} CPU cores, load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>8} {'trials/min':>11} {'speed-up':>9} {'efficiency':>11} {'median trial s':>15}")
    for r in results:
        speed = r["trials_per_min"] / results[0]["trials_per_min"]
        r["efficiency"] = round(r["trials_per_min"] / (base * r["workers"]), 3)
        print(f"{r['workers']:>8} {r['trials_per_min']:>11.2f} {speed:>9.2f} {r['efficiency']:>11.2f} "
              f"{r['median_trial_s']:>15.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": model, "evaluator": evaluator, "sleep": a.sleep,
                                            "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
