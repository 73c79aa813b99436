"""search: an Optuna study over the paper's sampler design space, with the paper's setting as the baseline.

    python -m search.run --model toy --steps 5            # run, or resume, a study (~10 min on 2 CPU cores)
    optuna-dashboard sqlite:///studies/hpyn.db --artifact-dir studies/artifacts
    python -m search.export --study toy-5 --out best.json
    python -m hpyn.generate --model toy --config best.json --prompt 'a photo of a bag' --seeds 0-7 --out out/
    python -m search.reproduce --export best.json --model FOLDER --prompt '...' --out out/   # diffusers only

Modules, one concern each (imports point one way: run → study → options/space/storage; ray_tune → study):
    options.py     RunOptions: the frozen, validated options; the CLI flags, the recorded settings and the
                   "must match on resume" list are derived from its fields
    dimensions.py  each search dimension defined once (range, when it acts, paper symbol, bounds, config mapping)
    space.py       concrete spaces (default, full, space files), define-by-run `suggest_config`, baselines as points
    study.py       setting a study up for both backends: prepare (every check, nothing written), sampler, pruner
                   (one reduction-factor rule), baselines, create/load a study and check its settings
    trials.py      what a trial records and the state it ends in: the one bookkeeping path of both backends
    objective.py   trial → config → images per rung (common random numbers) → objectives.Evaluator → report/prune
    storage.py     SQLAlchemy URL → Optuna RDBStorage (the one place storage is made), the study lock, artifacts
    workers.py     many workers on one study: heartbeats, dead and interrupted trials retried, the SQLite worker
                   lock; `python -m search.workers --gpus all -- ARGS` (one search.run per GPU)
    run.py         `python -m search.run`: prepare, load the model and metrics, open the study, the local backend
    ray_tune.py    `--backend ray`: trials on a Ray cluster via Ray Tune (OptunaSearch + ASHA); early stops told PRUNED
    export.py      `python -m search.export`: best / top-K / Pareto schedules as JSON (hpyn.config.SCHEMA_VERSION)
    reproduce.py   sample an export with plain diffusers + torch (no hpyn import)
"""
