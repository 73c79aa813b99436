"""search: an Optuna study over the paper's sampler design space, with the paper's setting as the baseline.

    python -m search.run --model toy --steps 5            # run, or resume, a study (~10 min on 2 CPU cores)
    optuna-dashboard sqlite:///studies/hpyn.db --artifact-dir studies/artifacts
    python -m search.export --study toy-5 --out best.json
    python -m hpyn.generate --model toy --config best.json --prompt 'a photo of a bag' --seeds 0-7 --out out/
    python -m search.reproduce --export best.json --model FOLDER --prompt '...' --out out/   # diffusers only

Modules, one concern each:
    space.py      define-by-run space → hpyn.config.SamplerConfig; baselines as points of the space; space files
    objective.py  trial → config → images per rung (common random numbers) → objectives.Evaluator → report/prune
    storage.py    SQLAlchemy URL → Optuna RDBStorage (the one place storage is made); artifact store
    run.py        `python -m search.run`: check inputs, open/resume the study, enqueue baselines, optimise
    export.py     `python -m search.export`: best / top-K / Pareto schedules as JSON (schema_version 1)
    reproduce.py  sample an export with plain diffusers + torch (no hpyn import)
    workers.py    many workers on one study: study lock, heartbeats + stale-trial retry, worker seeds;
                  `python -m search.workers --gpus all -- ARGS` (one search.run per GPU)
    ray_tune.py   `--backend ray`: trials on a Ray cluster via Ray Tune (OptunaSearch + ASHA); early stops told PRUNED
"""
