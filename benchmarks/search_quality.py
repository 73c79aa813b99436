"""Which search engine finds the best sampler for a budget: Optuna's samplers compared on the toy, judged on held-out
images (issue 12 item 4).

    python benchmarks/search_quality.py                                   # TPE, random, CMA-ES, GP x 2 replicates
    python benchmarks/search_quality.py --samplers tpe,random --replicates 3 --trials 40 --rungs 32,128 --n 512

Every study searches the same images (prompts and seeds of `--seed`); replicates differ only in the Optuna sampler's
seed (`--sampler-seed`). Each study's winner (its best complete trial at the last rung) is then re-scored by the
validation stage (search.validate, top 1) on held-out prompts, seeds and reference images, N images, against every
baseline, with paired 95 % bootstrap intervals and the second judge (the toy classifier's Fréchet distance).
Baselines are the same configs on the same held-out images in every study, so their features are generated once
(the validation cache) and their held-out FIDs are identical across rows.

Printed per study: the winner, its search FID and held-out FID, its held-out difference to the best baseline with the
interval, the second judge's difference, the verdict, the trials and minutes until the search first beat the best
baseline's search FID, and the study's minutes. Then per sampler: mean and spread over replicates. Output: a text table
and `--json`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def first_beat(study) -> tuple[int | None, float | None, float]:
    """(trials, minutes) until a non-baseline trial first had a search FID at the last rung below every baseline's,
    counted in trial order from the study's first trial; and the study's minutes."""
    import optuna
    S = optuna.trial.TrialState
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    done = [t for t in trials if t.datetime_complete]
    t0 = min(t.datetime_start for t in trials if t.datetime_start)
    span = (max(t.datetime_complete for t in done) - t0).total_seconds() / 60
    base = [t.value for t in trials if t.user_attrs.get("baseline") and t.state == S.COMPLETE]
    if not base:
        return None, None, span
    bar = min(base)
    for i, t in enumerate(trials, 1):
        if t.state == S.COMPLETE and not t.user_attrs.get("baseline") and t.value < bar:
            return i, (t.datetime_complete - t0).total_seconds() / 60, span
    return None, None, span


def one(args, sampler: str, replicate: int, model, log) -> dict:
    from search.options import RunOptions
    from search.run import run_study
    from search.validate import ValidateOptions, run_validation
    name = f"sq-{sampler}-r{replicate}"
    opts = RunOptions(model="toy", steps=args.steps, trials=args.trials, rungs=tuple(args.rungs), sampler=sampler,
                      sampler_seed=1000 + replicate, seed=args.seed, study=name, storage=args.storage,
                      artifacts=str(Path(args.out) / "artifacts"), quiet=True, no_validate=True, no_report=True,
                      startup_trials=args.startup_trials, metrics=("fid",))   # the objective; validation scores all
    t = time.perf_counter()
    study = run_study(opts, model=model, log=log)
    search_min = (time.perf_counter() - t) / 60
    trials_to_beat, minutes_to_beat, span = first_beat(study)
    t = time.perf_counter()
    row = {"sampler": sampler, "replicate": replicate, "trials_to_beat": trials_to_beat,
           "minutes_to_beat": minutes_to_beat, "study_minutes": span, "search_minutes": search_min}
    try:
        summary = run_validation(study, ValidateOptions(top=1, n=args.n, cache=str(Path(args.out) / "cache"),
                                                        resamples=args.resamples), model=model, log=None)
    except ValueError as e:   # every searched trial pruned: the search found nothing to validate
        return {**row, "winner": None, "why": str(e), "search_fid": None, "heldout_fid": None, "baselines": {},
                "best_baseline": None, "diff_fid": None, "judge": None, "diff_judge": None, "verdict": "no winner"}
    validate_min = (time.perf_counter() - t) / 60
    cands = summary["candidates"]
    winner = next(k for k, c in cands.items() if c["kind"] == "finalist")
    bases = {k: c["metrics"]["fid"] for k, c in cands.items() if c["kind"] == "baseline"}
    best_base = min(bases, key=bases.get)
    cmp = next(c for c in summary["comparisons"] if c["finalist"] == winner and c["baseline"] == best_base)
    judge = next((m for m in cmp["diff"] if m.startswith("fd_")), None)
    return {**row, "winner": winner, "winner_config": study.trials[cands[winner]["trial"]].user_attrs["config"],
            "search_fid": cands[winner]["search_fid"], "heldout_fid": cands[winner]["metrics"]["fid"],
            "baselines": bases, "best_baseline": best_base, "diff_fid": cmp["diff"]["fid"],
            "judge": judge, "diff_judge": cmp["diff"].get(judge) if judge else None, "verdict": cmp["verdict"],
            "validate_minutes": validate_min, "n": summary["n"]}


def iv(x) -> str:
    return "—" if x is None else f"{x[0]:+.1f} [{x[1]:+.1f}, {x[2]:+.1f}]"


def table(rows: list[dict]) -> str:
    out = [f"{'sampler':<7} {'rep':>3} {'winner':<9} {'search':>7} {'held-out':>8}  {'Δ FID vs best baseline':<24} "
           f"{'Δ 2nd judge':<24} {'verdict':<20} {'beat@trial':>10} {'beat@min':>8} {'min':>5}"]
    for r in rows:
        if r["winner"] is None:
            out.append(f"{r['sampler']:<7} {r['replicate']:>3} no complete trial besides the baselines")
            continue
        out.append(f"{r['sampler']:<7} {r['replicate']:>3} {r['winner']:<9} {r['search_fid']:>7.1f} "
                   f"{r['heldout_fid']:>8.1f}  {iv(r['diff_fid']) + ' ' + r['best_baseline']:<24} "
                   f"{iv(r['diff_judge']):<24} {r['verdict']:<20} {r['trials_to_beat'] or '—':>10} "
                   f"{'—' if r['minutes_to_beat'] is None else format(r['minutes_to_beat'], '.1f'):>8} "
                   f"{r['study_minutes']:>5.1f}")
    bases = next((r["baselines"] for r in rows if r["baselines"]), {})
    out.append("held-out FID of the baselines (same images in every study): "
               + ", ".join(f"{k} {v:.1f}" for k, v in sorted(bases.items(), key=lambda kv: kv[1])))
    out.append(f"{'sampler':<7} {'winners held-out FID mean ± sd':<32} {'beat best baseline (CI < 0)':<28} "
               f"{'mean trials to beat':<20}")
    for s in dict.fromkeys(r["sampler"] for r in rows):
        rs = [r for r in rows if r["sampler"] == s and r["winner"] is not None]
        if not rs:
            out.append(f"{s:<7} no winner in any replicate")
            continue
        f = [r["heldout_fid"] for r in rs]
        sd = statistics.stdev(f) if len(f) > 1 else 0.0
        won = sum(r["diff_fid"][2] < 0 for r in rs)
        tb = [r["trials_to_beat"] for r in rs if r["trials_to_beat"]]
        out.append(f"{s:<7} {statistics.mean(f):>7.1f} ± {sd:<22.1f} {won}/{len(rs):<26} "
                   f"{statistics.mean(tb) if tb else float('nan'):<20.1f}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samplers", default="tpe,random,cmaes,gp")
    p.add_argument("--replicates", type=int, default=2)
    p.add_argument("--trials", type=int, default=24, help="trials per study, the 5 baselines included (default 24)")
    p.add_argument("--rungs", default="32,128")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="the images' seed, shared by every study")
    p.add_argument("--startup-trials", type=int, default=8)
    p.add_argument("--n", type=int, default=256, help="held-out images per candidate (default 256)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--out", default="runs/search_quality")
    p.add_argument("--json", default=None, help="write the rows here (default OUT/search_quality.json)")
    args = p.parse_args(argv)
    args.rungs = [int(x) for x in args.rungs.split(",")]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.storage = f"sqlite:///{Path(args.out).resolve() / 'search_quality.db'}"

    import optuna

    from hpyn.models import load_model
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = load_model("toy")
    rows = []
    for rep in range(args.replicates):
        for s in args.samplers.split(","):
            t = time.perf_counter()
            rows.append(one(args, s, rep, model, log=None))
            r = rows[-1]
            if r["winner"] is None:
                print(f"[{s} r{rep}] no winner: {r['why']}", flush=True)
                continue
            print(f"[{s} r{rep}] winner {r['winner']} held-out FID {r['heldout_fid']:.1f} vs {r['best_baseline']} "
                  f"{r['baselines'][r['best_baseline']]:.1f}: Δ {iv(r['diff_fid'])} {r['verdict']} "
                  f"({(time.perf_counter() - t) / 60:.1f} min)", flush=True)
    print()
    print(f"toy, {args.steps} steps, {args.trials} trials per study (5 baselines first), rungs {args.rungs}, "
          f"held-out N={args.n}, {args.replicates} replicates (sampler seeds), same images in every study")
    print(table(rows))
    Path(args.json or Path(args.out) / "search_quality.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
