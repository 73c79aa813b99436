"""Where a study's time goes: per-rung generation and metric seconds, trial states, wall time per trial.

    python benchmarks/search_timing.py                                   # every study in studies/hpyn.db
    python benchmarks/search_timing.py --storage sqlite:///studies/hpyn.db --study toy-5

Use it to size --rungs and --trials for a machine: a pruned trial costs about its first rung, a complete one
all rungs; the default toy study aims at about 10 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def report(storage: str, name: str) -> None:
    import optuna
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    walls = [t.user_attrs.get("wall_time_s") for t in trials if t.user_attrs.get("wall_time_s") is not None]
    span = [t for t in trials if t.datetime_start and t.datetime_complete]
    total = (max(t.datetime_complete for t in span) - min(t.datetime_start for t in span)).total_seconds() \
        if span else 0.0
    print(f"study {name}: {len(trials)} trials {states}; first start to last end {total:.0f}s; "
          f"trial wall time mean {statistics.mean(walls) if walls else 0:.1f}s")
    by_n: dict[int, list[tuple[float, float]]] = {}
    for t in trials:
        for r in t.user_attrs.get("rungs") or []:
            by_n.setdefault(r["n"], []).append((r["generate_s"], r["metrics_s"]))
    for n, rows in sorted(by_n.items()):
        g = statistics.mean(r[0] for r in rows)
        m = statistics.mean(r[1] for r in rows)
        print(f"  rung n={n:<5d} reached by {len(rows):3d} trials: generate {g:6.1f}s  metrics {m:6.1f}s "
              f"(new images only; metrics {100 * m / max(g + m, 1e-9):.0f}%)")


def main(argv=None) -> int:
    import optuna
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default="sqlite:///studies/hpyn.db")
    p.add_argument("--study", help="study name (default: all studies in the storage)")
    args = p.parse_args(argv)
    names = [args.study] if args.study else optuna.get_all_study_names(storage=args.storage)
    for name in names:
        report(args.storage, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
