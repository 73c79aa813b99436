"""Run or resume an Optuna search for the best few-step sampler schedule of a diffusion model.

Checks every input first (model name, storage URL, prompt and reference sets, rungs, space file) and exits
with a message naming the bad value before any model is loaded. Then it creates the study, or loads it when a
study of that name exists (running the same command again resumes it: finished trials are kept, the study
goes on until it has --trials finished trials), enqueues the baselines once (the paper's setting and classic
DPM++2M-Karras, both at the study's guidance), loads the model and the metrics once, and optimises. A failing
trial (NaN, out of memory, an exception) is recorded as FAIL with its reason and the study goes on; Ctrl-C stops
cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["RunOptions", "run_study", "prepare", "main", "MODEL_DEFAULTS", "parse_rungs", "SEED_STRIDE"]

SEED_STRIDE = 1_000_000   # image i of a study with --seed s uses seed s·SEED_STRIDE + i
MAX_CONSECUTIVE_FAILURES = 5

# Defaults per model: the toy model is sized so that the default study takes about 10 minutes on 2 CPU cores.
MODEL_DEFAULTS = {
    "toy": {"prompts": "toy", "reference": "toy", "rungs": (32, 128), "trials": 20, "guidance": 2.0,
            "batch_size": 64, "n_reference": 500},
    None: {"prompts": "builtin", "reference": None, "rungs": (64, 256, 1024), "trials": 60, "guidance": 7.5,
           "batch_size": 16, "n_reference": None},
}

EPILOG = """\
examples:
  python -m search.run --model toy --steps 5                 # the embedded model: a complete study in ~10 min
  python -m search.run --model toy --steps 5                 # again: resumes the same study
  python -m search.run --model sd15 --steps 5 --reference coco2014:/data/coco --prompts coco2014:/data/coco
  python -m search.run --model sdxl --steps 8 --objective fid+clip --trials 100 --storage postgresql://u:p@host/db
  python -m search.workers --gpus all -- --model sd15 --steps 5 --storage postgresql://u:p@host/db   # 1 worker/GPU
  python -m search.run --model sd15 --steps 5 --storage postgresql://u:p@host/db --backend ray --ray-address auto
  python -m search.run --model toy --steps 4 --space my_space.json --study toy-4-narrow

then:
  optuna-dashboard sqlite:///studies/hpyn.db --artifact-dir studies/artifacts
  python -m search.export --study toy-5 --out best.json
  python -m hpyn.generate --model toy --config best.json --prompt 'a photo of a sneaker' --seeds 0-7 --out out/

objectives:
  fid       single objective: FID at the last rung (lower is better). FID is reported at every rung and the
            pruner stops poor trials early. --clip-margin M adds a constraint: CLIP score no worse than the
            paper baseline's by more than M (at the same N).
  fid+clip  two objectives (FID down, CLIP up); `search.export --pareto` exports the Pareto front. Optuna
            cannot prune multi-objective studies, so every trial is evaluated once, at the last rung.

prompts:    builtin | toy | coco2014:ROOT | coco2014:CAPTIONS.json | coco2017:ROOT | laion:FILE | file:PROMPTS.txt
reference:  toy | coco2014:ROOT | coco:ROOT | dir:DIR | folder:DIR | npz:FILE | laion:CAPTIONS:IMAGES_DIR
space:      default | full (also searches the FreeU factors) | a JSON file (see search/space.py), e.g.
            {"base": "default", "rho_time": [0.8, 2.0], "guidance": [3, 9]}   (examples: studies/spaces/)
"""


@dataclass
class RunOptions:
    model: str
    steps: int
    study: str | None = None
    storage: str | None = None
    trials: int | None = None
    timeout: float | None = None
    prompts: str | None = None
    reference: str | None = None
    rungs: Sequence[int] | None = None
    guidance: float | None = None
    objective: str = "fid"
    space: str = "default"
    seed: int = 0
    pruner: str = "sha"
    clip_margin: float | None = None
    clip: str = "auto"
    metrics: Sequence[str] = ("fid", "kid", "clip", "prd")
    device: str | None = None
    batch_size: int | None = None
    n_reference: int | None = None
    artifacts: str | None = None
    startup_trials: int = 8
    quiet: bool = False
    heartbeat: int | None = 30          # seconds; a running trial without a heartbeat for 3x this is failed, retried
    backend: str = "local"              # local | ray
    ray_address: str | None = None
    gpus_per_trial: float | None = None  # Ray: default 1 when the cluster has GPUs, else 0
    max_concurrent: int | None = None


@dataclass
class Prepared:
    """Everything checked and resolved before any model is loaded."""

    opts: RunOptions
    spec: Any                     # hpyn.models.ModelSpec
    table: Any
    space: Any
    prompts: list[str]
    seeds: list[int]
    rungs: list[int]
    storage_url: str
    study_name: str
    attrs: dict = field(default_factory=dict)


def parse_rungs(text) -> list[int]:
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        rungs = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"--rungs {text!r}: give increasing sample counts like 64,256,1024") from None
    if not rungs or any(r < 1 for r in rungs) or any(b <= a for a, b in zip(rungs, rungs[1:])):
        raise ValueError(f"--rungs {text!r}: give increasing positive sample counts like 64,256,1024")
    return rungs


def _prompt_spec(spec: str) -> str:
    if spec.startswith("coco2014:") and spec.endswith(".json"):
        return "coco:" + spec[len("coco2014:"):]
    return spec


def _reference_spec(spec: str) -> str:
    if spec.startswith("dir:"):
        return "folder:" + spec[4:]
    if spec.startswith("coco:"):
        return "coco2014:" + spec[5:]
    return spec


def _defaults(spec) -> dict:
    if spec.name == "toy":
        return MODEL_DEFAULTS["toy"]
    d = dict(MODEL_DEFAULTS[None])
    coco = os.environ.get("HPYN_COCO")
    if coco:  # the paper's protocol (spec E): COCO-2014 val captions and their images
        d.update(prompts=f"coco2014:{coco}", reference=f"coco2014:{coco}")
    return d


def prompt_hash(prompts: Sequence[str], seeds: Sequence[int]) -> str:
    h = hashlib.sha256()
    for p, s in zip(prompts, seeds):
        h.update(f"{s}\t{p}\n".encode())
    return h.hexdigest()


def prepare(opts: RunOptions) -> Prepared:
    """Check and resolve every input; raise ValueError naming the bad value. Loads no model."""
    from hpyn.models import noise_table, resolve
    from search.space import load_space
    from search.storage import DEFAULT_STORAGE, check_url

    if isinstance(opts.steps, bool) or not isinstance(opts.steps, int) or opts.steps < 1:
        raise ValueError(f"--steps {opts.steps!r}: the number of steps must be an integer ≥ 1")
    try:
        spec = resolve(opts.model)
    except FileNotFoundError as e:
        raise ValueError(f"--model {opts.model!r}: {e}") from None
    d = _defaults(spec)
    if opts.objective not in ("fid", "fid+clip"):
        raise ValueError(f"--objective {opts.objective!r}: use 'fid' or 'fid+clip'")
    if opts.pruner not in PRUNERS:
        raise ValueError(f"--pruner {opts.pruner!r}: use one of {list(PRUNERS)}")
    if opts.trials is not None and opts.trials < 1:
        raise ValueError(f"--trials {opts.trials!r}: must be ≥ 1")
    if opts.timeout is not None and opts.timeout <= 0:
        raise ValueError(f"--timeout {opts.timeout!r}: must be > 0 seconds")
    if opts.clip_margin is not None:
        if opts.objective != "fid":
            raise ValueError("--clip-margin applies to --objective fid (with fid+clip, CLIP is an objective)")
        if opts.clip_margin < 0:
            raise ValueError(f"--clip-margin {opts.clip_margin!r}: must be ≥ 0")
    bad = sorted(set(opts.metrics) - {"fid", "kid", "clip", "prd"})
    if bad or "fid" not in opts.metrics:
        raise ValueError(f"--metrics {','.join(opts.metrics)!r}: choose from fid,kid,clip,prd (fid is required)")
    if opts.objective == "fid+clip" and ("clip" not in opts.metrics or opts.clip == "none"):
        raise ValueError("--objective fid+clip needs the CLIP score (keep 'clip' in --metrics, --clip not 'none')")
    if opts.seed < 0:
        raise ValueError(f"--seed {opts.seed!r}: must be ≥ 0")
    if opts.heartbeat is not None and (isinstance(opts.heartbeat, bool) or not isinstance(opts.heartbeat, int)
                                       or opts.heartbeat < 0):
        raise ValueError(f"--heartbeat {opts.heartbeat!r}: give whole seconds ≥ 1 (or 0 to switch heartbeats off)")
    if opts.backend not in ("local", "ray"):
        raise ValueError(f"--backend {opts.backend!r}: use 'local' or 'ray'")
    if opts.backend == "ray" and (opts.objective != "fid" or opts.clip_margin is not None):
        raise ValueError("--backend ray runs --objective fid studies without --clip-margin; use the local backend")
    if opts.gpus_per_trial is not None and opts.gpus_per_trial < 0:
        raise ValueError(f"--gpus-per-trial {opts.gpus_per_trial!r}: must be ≥ 0")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise ValueError(f"--max-concurrent {opts.max_concurrent!r}: must be ≥ 1")
    rungs = parse_rungs(opts.rungs if opts.rungs is not None else d["rungs"])
    guidance = d["guidance"] if opts.guidance is None else opts.guidance
    if not guidance >= 0:
        raise ValueError(f"--guidance {guidance!r}: must be ≥ 0")
    opts.guidance = float(guidance)
    opts.trials = d["trials"] if opts.trials is None else opts.trials
    opts.batch_size = d["batch_size"] if opts.batch_size is None else opts.batch_size
    opts.n_reference = d["n_reference"] if opts.n_reference is None else opts.n_reference
    if opts.n_reference is not None and opts.n_reference < 2:
        raise ValueError(f"--n-reference {opts.n_reference!r}: must be ≥ 2")
    if opts.batch_size < 1:
        raise ValueError(f"--batch-size {opts.batch_size!r}: must be ≥ 1")

    storage = opts.storage or DEFAULT_STORAGE
    check_url(storage)

    from objectives.prompts import load_prompts
    from objectives.references import load_reference
    pspec = opts.prompts or d["prompts"]
    try:
        prompt_set = load_prompts(_prompt_spec(pspec))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"--prompts {pspec!r}: cannot load it ({e})") from None
    rspec = opts.reference or d["reference"]
    if rspec is None:
        raise ValueError(f"--reference is needed for model {spec.name!r} (e.g. coco2014:/data/coco or dir:FOLDER, "
                         "or set HPYN_COCO=/data/coco for the paper's COCO-2014 prompts and images); only the toy "
                         "model ships a reference set")
    try:
        ref = load_reference(_reference_spec(rspec))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--reference {rspec!r}: cannot load it ({e})") from None
    if len(ref) < 2:
        raise ValueError(f"--reference {rspec!r} has {len(ref)} image(s); FID needs at least 2")
    opts.prompts, opts.reference = pspec, rspec

    try:
        table = noise_table(spec)
    except Exception as e:  # noqa: BLE001 - a hub model without network, a folder without a scheduler, ...
        raise ValueError(f"--model {opts.model!r}: cannot read its noise schedule ({e})") from None
    space = load_space(opts.space, table, opts.steps, opts.guidance)

    n = rungs[-1]
    prompts = [prompt_set[i % len(prompt_set)] for i in range(n)]
    seeds = [opts.seed * SEED_STRIDE + i for i in range(n)]
    name = opts.study or f"{spec.name}-{opts.steps}" + ("" if opts.objective == "fid" else "-fid+clip")
    attrs = {
        "model": spec.name, "model_source": spec.source, "model_family": spec.family, "steps": opts.steps,
        "objective": opts.objective, "rungs": rungs, "guidance": opts.guidance, "seed": opts.seed,
        "seeds": {"first": seeds[0], "count": n, "rule": f"seed·{SEED_STRIDE} + i"},
        "prompts": {"spec": pspec, "sha256": prompt_hash(prompts, seeds), "n": n, "set_size": len(prompt_set)},
        "reference": {"spec": rspec, "name": ref.name, "content_id": getattr(ref, "content_id", None),
                      "n": min(len(ref), opts.n_reference or len(ref))},
        "space": space.to_dict(), "space_source": space.source,
        "metrics": list(opts.metrics), "clip": opts.clip, "clip_margin": opts.clip_margin,
    }
    return Prepared(opts, spec, table, space, prompts, seeds, rungs, storage, name, attrs)


# ---- study --------------------------------------------------------------------------------------------
PRUNERS = ("sha", "hyperband", "median", "none")
MUST_MATCH = ("model", "steps", "objective", "rungs", "guidance", "seed", "prompts", "reference",
              "space", "metrics", "clip", "clip_margin")


def make_pruner(name: str, rungs: Sequence[int]):
    import optuna
    rf = max(2, round(rungs[1] / rungs[0])) if len(rungs) > 1 else 2
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=rf)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1], reduction_factor=rf)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def make_sampler(opts: RunOptions, n_existing: int, worker_index: int = 0):
    import optuna
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # the seed moves on with the study, so a resumed run does not replay the first run's random trials
        # and each worker of a study gets its own seed; constant_liar: trials running elsewhere count as bad
        from search.workers import worker_seed
        return optuna.samplers.TPESampler(seed=worker_seed(opts.seed, n_existing, worker_index), multivariate=True,
                                          group=True, n_startup_trials=opts.startup_trials, constant_liar=True)


def open_study(prep: Prepared, storage=None):
    """Create the study, or load it and check that it was made with the same settings."""
    import optuna
    from search.workers import open_storage

    storage = storage or open_storage(prep.storage_url, prep.opts.heartbeat or None)
    try:
        existing = optuna.load_study(study_name=prep.study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        old = existing.user_attrs.get("hpyn")
        if old is None:
            raise ValueError(f"study {prep.study_name!r} in {prep.storage_url} was not made by search.run; "
                             "pick another --study name")
        diff = [f"{k}: study has {old.get(k)!r}, this run {prep.attrs.get(k)!r}"
                for k in MUST_MATCH if json.dumps(old.get(k), sort_keys=True) != json.dumps(prep.attrs.get(k),
                                                                                               sort_keys=True)]
        if diff:
            raise ValueError(f"study {prep.study_name!r} was made with other settings, so its trials are not "
                             "comparable with this run's:\n  " + "\n  ".join(diff) +
                             "\nrun with the study's settings to resume it, or give a new --study name")
    n_existing = len(existing.trials) if existing is not None else 0
    worker_index = int(existing.user_attrs.get("worker_starts", 0)) if existing is not None else 0
    kw = dict(directions=["minimize", "maximize"]) if prep.opts.objective == "fid+clip" else \
        dict(direction="minimize")
    study = optuna.create_study(storage=storage, study_name=prep.study_name, load_if_exists=True,
                                sampler=make_sampler(prep.opts, n_existing, worker_index),
                                pruner=make_pruner(prep.opts.pruner, prep.rungs), **kw)
    if existing is None:
        study.set_user_attr("hpyn", {**prep.attrs, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     "versions": versions()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["FID"] if prep.opts.objective == "fid" else ["FID", "CLIP score"])
    study.set_user_attr("worker_starts", worker_index + 1)   # how many worker processes the study has had
    return study


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": sys.version.split()[0]}
    for pkg in ("hpyn", "optuna", "torch", "diffusers", "transformers", "numpy", "scipy", "open_clip_torch",
                "torch-fidelity"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def baselines(prep: Prepared) -> list[tuple[str, Any, str]]:
    """(name, config, note): the paper's setting for this model and step count, and classic DPM++2M-Karras."""
    from hpyn.config import classic_setting, paper_setting
    g = prep.opts.guidance
    paper, note = paper_setting(prep.spec.family, prep.opts.steps)
    note += f"; guidance {g} (the study's, for all trials)"
    if prep.spec.family is None:
        note += "; model family unknown: SD1.5's settings (σ grids are model-agnostic)"
    return [("paper", paper.replace(guidance=g), note),
            ("dpmpp2m-karras", classic_setting(prep.opts.steps, g),
             f"DPM-Solver++2M, Karras ρ=7 σ grid to the model's σ_min then 0, guidance {g}")]


def enqueue_baselines(study, prep: Prepared) -> list[tuple[str, str]]:
    """Enqueue each baseline unless the study already has it (finished, running or waiting)."""
    import optuna
    from search.space import NotInSpace, baseline_params
    S = optuna.trial.TrialState
    have = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)
            if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)}
    added = []
    for name, config, note in baselines(prep):
        if name in have:
            continue
        attrs = {"baseline": name, "baseline_note": note}
        try:
            params = baseline_params(config, prep.space)
        except NotInSpace as e:
            params = {}
            attrs.update(fixed_config=config.to_dict(), baseline_note=note + f"; run as a fixed config ({e})")
        study.enqueue_trial(params, user_attrs=attrs)
        added.append((name, attrs["baseline_note"]))
    return added


def counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


class _Stopper:
    """Stops the study at `target` finished (complete or pruned) trials, or after repeated failures."""

    def __init__(self, target: int, log):
        self.target, self.log, self.fails = target, log, 0

    def __call__(self, study, trial) -> None:
        import optuna
        self.fails = self.fails + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        c = counts(study)
        if c.get("COMPLETE", 0) + c.get("PRUNED", 0) >= self.target and not c.get("WAITING"):
            study.stop()   # (WAITING: an enqueued baseline or a dead worker's retried trial still to run)
        elif self.fails >= MAX_CONSECUTIVE_FAILURES:
            self.log(f"stopping: the last {self.fails} trials failed (see their fail_reason in the dashboard)")
            study.stop()


def load_evaluator(prep: Prepared):
    from objectives.evaluate import Evaluator
    o = prep.opts
    return Evaluator(reference=_reference_spec(o.reference), clip=None if o.clip == "none" else o.clip,
                     device=o.device, metrics=tuple(o.metrics), n_reference=o.n_reference)


def run_study(opts: RunOptions, *, evaluator=None, model=None, callbacks: Sequence[Callable] = (),
              log: Callable[[str], None] | None = print, ray_factory: Callable | None = None):
    """Run (or resume) a study; returns it. `evaluator`/`model` may be passed in (tests, notebooks); with
    `opts.backend == "ray"`, `ray_factory(prep) -> (model, evaluator)` builds them in each Ray worker."""
    import optuna
    from search.objective import Objective
    from search.storage import artifact_dir, artifact_store
    from search.workers import fail_stale, open_storage, study_lock, warn_shared_sqlite

    say = log or (lambda s: None)
    prep = prepare(opts)
    storage = open_storage(prep.storage_url, opts.heartbeat or None)
    # one worker at a time creates/checks the study and enqueues missing baselines (see search/workers.py)
    with study_lock(prep.storage_url, prep.study_name):
        study = open_study(prep, storage)
        added = enqueue_baselines(study, prep)
    warn_shared_sqlite(prep.storage_url, study, opts.heartbeat)
    stale = fail_stale(study)
    if stale:
        say(f"failed trial(s) {stale}: their worker died (no heartbeat for {3 * (opts.heartbeat or 0)}s); "
            "they are retried")
    c = counts(study)
    done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
    art = artifact_dir(prep.storage_url, opts.artifacts)
    say(f"study {prep.study_name!r} in {prep.storage_url}: model {prep.spec.name}, {opts.steps} steps, objective "
        f"{opts.objective}, rungs {prep.rungs}, guidance {opts.guidance}; {done} finished trial(s) of {opts.trials}"
)
    for name, note in added:
        say(f"  enqueued baseline {name}: {note}")
    if done >= opts.trials and not c.get("WAITING"):
        say(f"the study already has {done} finished trials (target {opts.trials}); give a larger --trials to go on")
        summary(study, say)
        return study
    if opts.backend == "ray":
        from search.ray_tune import run_ray
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        run_ray(opts, prep, study, storage, factory=ray_factory, log=log)
        summary(study, say, prep.storage_url, art)
        return study
    if model is None:
        from hpyn.models import load_model
        t = time.perf_counter()
        model = load_model(opts.model, device=opts.device)
        say(f"loaded model {prep.spec.name} on {model.device} in {time.perf_counter() - t:.1f}s")
    if evaluator is None:
        t = time.perf_counter()
        evaluator = load_evaluator(prep)
        say(f"loaded metrics ({','.join(opts.metrics)}; reference {opts.reference}) in {time.perf_counter() - t:.1f}s")
    objective = Objective(model=model, evaluator=evaluator, space=prep.space, prompts=prep.prompts,
                          seeds=prep.seeds, rungs=prep.rungs, multi=opts.objective == "fid+clip",
                          clip_margin=opts.clip_margin, artifacts=artifact_store(art), batch_size=opts.batch_size,
                          log=log)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    try:
        study.optimize(objective, timeout=opts.timeout, catch=(Exception,),
                       callbacks=[_Stopper(opts.trials, say), *callbacks])
    except KeyboardInterrupt:
        say(f"\ninterrupted after {time.perf_counter() - t0:.0f}s; finished trials are kept. "
            "Run the same command again to resume.")
        raise
    say(f"ran for {time.perf_counter() - t0:.0f}s")
    summary(study, say, prep.storage_url, art)
    return study


def summary(study, say, storage_url: str | None = None, art=None) -> None:
    import optuna
    from search.objective import trial_metrics
    S = optuna.trial.TrialState
    c = counts(study)
    say("trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(c.items())))
    attrs = study.user_attrs.get("hpyn", {})
    last = attrs.get("rungs", [None])[-1]
    for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)):
        if t.user_attrs.get("baseline"):
            m = trial_metrics(t, last)
            if m:
                from search.objective import format_metrics
                say(f"  baseline {t.user_attrs['baseline']:15s} (trial {t.number}) n={last}: {format_metrics(m)}")
    try:
        if len(study.directions) == 1:
            best = study.best_trial
            m = trial_metrics(best, last)
            say(f"  best                     (trial {best.number}) n={last}: {format_metrics(m) if m else best.value}")
        else:
            say(f"  Pareto front: trials {[t.number for t in study.best_trials]}")
    except ValueError:
        say("  no complete trial yet")
    if storage_url:
        say(f"next: optuna-dashboard {storage_url} --artifact-dir {art}\n"
            f"      python -m search.export --storage {storage_url} --study {study.study_name} --out best.json")


# ---- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="toy | sd15 | sdxl | dreamshaper-xl | a diffusers folder | org/name")
    p.add_argument("--steps", required=True, type=int, help="solver steps = U-Net calls (CFG batched)")
    p.add_argument("--study", help="study name (default MODEL-STEPS, +'-fid+clip' for that objective)")
    p.add_argument("--storage", help="SQLAlchemy URL (default sqlite:///studies/hpyn.db)")
    p.add_argument("--trials", type=int, help="finished (complete + pruned) trials the study should reach "
                                              "(default 20 for toy, 60 otherwise)")
    p.add_argument("--timeout", type=float, help="stop this run after S seconds (the study can be resumed)")
    p.add_argument("--prompts", help="prompt set (default: toy for toy; else coco2014:$HPYN_COCO if set, else builtin)")
    p.add_argument("--reference", help="reference image set (default: toy for toy; else coco2014:$HPYN_COCO if set; "
                                       "required otherwise)")
    p.add_argument("--rungs", help="sample counts per rung, e.g. 64,256,1024 (default 32,128 for toy)")
    p.add_argument("--guidance", type=float, help="CFG scale of every trial and the baselines (default 2 for toy, "
                                                  "7.5 otherwise); search it with a space file")
    p.add_argument("--objective", default="fid", choices=("fid", "fid+clip"),
                   help="fid (prunable) or fid+clip (multi-objective Pareto front; Optuna cannot prune it)")
    p.add_argument("--space", default="default", help="default | full | FILE.json")
    p.add_argument("--seed", type=int, default=0, help="seeds of the images and of the sampler (default 0)")
    p.add_argument("--pruner", default="sha", choices=PRUNERS,
                   help="sha = successive halving (default), hyperband, median, none")
    p.add_argument("--clip-margin", type=float, help="with --objective fid: CLIP score may be at most this much "
                                                     "below the paper baseline's")
    p.add_argument("--clip", default="auto", help="CLIP model for CLIP score: auto | none | toy | open_clip:NAME/TAG "
                                                  "| hf:ID | FOLDER")
    p.add_argument("--metrics", default="fid,kid,clip,prd", help="metrics to compute (default fid,kid,clip,prd)")
    p.add_argument("--device", help="torch device (default cuda if available)")
    p.add_argument("--batch-size", type=int, help="images per generation batch")
    p.add_argument("--n-reference", type=int, help="use the first N reference images (default 500 for toy, all "
                                                   "otherwise; their features are computed once and cached)")
    p.add_argument("--artifacts", help="artifact folder for image grids (default: beside the SQLite file)")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    w = p.add_argument_group("many workers (see README, 'Many workers')")
    w.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between heartbeats of a running trial (default 30; 0 = off). A trial of a killed "
                        "worker is failed after 3x this and run again by a live worker")
    w.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: trials in this process (run one process per GPU/machine on a shared "
                        "postgresql:// study); ray: trials on a Ray cluster through Ray Tune")
    w.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray; 'auto': the running one)")
    w.add_argument("--gpus-per-trial", type=float, help="GPUs per Ray trial (default 1 if the cluster has GPUs)")
    w.add_argument("--max-concurrent", type=int, help="most Ray trials at once (default: as resources allow)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    opts = RunOptions(model=args.model, steps=args.steps, study=args.study, storage=args.storage, trials=args.trials,
                      timeout=args.timeout, prompts=args.prompts, reference=args.reference, rungs=args.rungs,
                      guidance=args.guidance, objective=args.objective, space=args.space, seed=args.seed,
                      pruner=args.pruner, clip_margin=args.clip_margin, clip=args.clip,
                      metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()), device=args.device,
                      batch_size=args.batch_size, n_reference=args.n_reference, artifacts=args.artifacts,
                      quiet=args.quiet, heartbeat=args.heartbeat or None, backend=args.backend,
                      ray_address=args.ray_address, gpus_per_trial=args.gpus_per_trial,
                      max_concurrent=args.max_concurrent)
    try:
        run_study(opts, log=None if args.quiet else print)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
