"""Setting a study up, once for both backends (local `search.run`, Ray `search.ray_tune`).

`prepare(opts)` checks and resolves every input without writing anything and without loading a model: the
options (search.options), the model's name and noise table, the device, the CLIP spec, the storage URL, the
prompt and reference sets, the search space. It returns a frozen `Prepared`, with the study's settings (`attrs`,
recorded in the study and compared on resume) and the warnings a risky but valid input deserves. The rest makes
the study: its storage, TPE sampler, pruner (one reduction-factor rule for Optuna's SHA/Hyperband and Ray's ASHA),
the baselines (the paper's setting and the presets users pick: DPM++2M-Karras, AYS, Beta, UniPC-Karras), and
`open_study`, which creates the study or loads it and refuses one made with other settings. A study is only
created after every check passed and the model and the metrics loaded (see search.run).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.options import MUST_MATCH, RunOptions, flag, resolve
from search.facts import split_settings, study_settings

__all__ = [
    "SEED_STRIDE",
    "Prepared",
    "baselines",
    "check_clip",
    "check_device",
    "check_settings",
    "enqueue_baselines",
    "load_evaluator",
    "load_existing",
    "make_pruner",
    "make_sampler",
    "open_study",
    "prepare",
    "prompt_hash",
    "reduction_factor",
    "versions",
]

SEED_STRIDE = 1_000_000   # image i of a study with --seed s uses seed s·SEED_STRIDE + i


@dataclass(frozen=True)
class Prepared:
    """Everything checked and resolved before anything is written or loaded."""

    opts: RunOptions              # with the model's defaults filled in
    spec: Any                     # hpyn.models.ModelSpec
    table: Any                    # its noise table
    space: Any                    # search.space.Space
    prompts: tuple[str, ...]      # prompt of sample i (common random numbers: the same for every trial)
    seeds: tuple[int, ...]        # seed of sample i
    rungs: tuple[int, ...]
    storage_url: str
    study_name: str
    attrs: dict = field(default_factory=dict)       # the study's settings (search.options.MUST_MATCH and more)
    warnings: tuple[str, ...] = ()                  # valid but risky inputs, said once per run


def prompt_spec(spec: str) -> str:
    if spec.startswith("coco2014:") and spec.endswith(".json"):
        return "coco:" + spec[len("coco2014:"):]
    return spec


def reference_spec(spec: str) -> str:
    if spec.startswith("dir:"):
        return "folder:" + spec[4:]
    if spec.startswith("coco:"):
        return "coco2014:" + spec[5:]
    return spec


def prompt_hash(prompts: Sequence[str], seeds: Sequence[int]) -> str:
    h = hashlib.sha256()
    for p, s in zip(prompts, seeds):
        h.update(f"{s}\t{p}\n".encode())
    return h.hexdigest()


def check_device(device: str | None) -> None:
    """A torch device this machine has (`--device bogus`, `--device cuda` without a GPU: a message, not a crash)."""
    if device is None:
        return
    import torch
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r}: no CUDA GPU is visible here (torch.cuda.is_available() is "
                             "False); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device!r}: Apple MPS is not available here; use --device cpu")
    elif d.type != "cpu":
        raise ValueError(f"--device {device!r}: the search runs on cpu, cuda or mps devices")


def check_clip(spec: str, metrics: Sequence[str]) -> None:
    """The --clip spec's form (and its folder, if it names one); the model itself loads with the metrics."""
    from objectives.clip_score import (
        CLIP_MODELS,  # registered names (the toy's CLIP: "toy")
    )
    if spec == "none" or "clip" not in metrics or spec == "auto" or spec in CLIP_MODELS:
        return
    forms = f"auto | none | {' | '.join(sorted(CLIP_MODELS))} | open_clip:NAME/TAG | hf:ID_OR_FOLDER | FOLDER"
    if spec.startswith("open_clip:"):
        if not spec[len("open_clip:"):].strip("/"):
            raise ValueError(f"--clip {spec!r}: give the open_clip model, e.g. open_clip:ViT-B-32/openai")
        return
    if spec.startswith("hf:"):
        rest = spec[3:]
        if not rest or (rest.startswith(("/", ".", "~")) and not Path(rest).expanduser().is_dir()):
            raise ValueError(f"--clip {spec!r}: no such folder {rest!r}")
        return
    if not Path(spec).expanduser().is_dir():
        raise ValueError(f"--clip {spec!r}: not a CLIP spec ({forms}) and no such folder")


def prepare(opts: RunOptions) -> Prepared:
    """Check and resolve every input; raise ValueError naming the bad value. Writes nothing, loads no model."""
    from hpyn.models import noise_table
    from hpyn.models import resolve as resolve_model
    from objectives.prompts import load_prompts
    from objectives.references import load_reference
    from search.space import load_space
    from search.storage import DEFAULT_STORAGE, check_url

    try:
        spec = resolve_model(opts.model)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ValueError(f"--model {opts.model!r}: {e}") from None
    o = resolve(opts, spec)
    url = o.storage or DEFAULT_STORAGE
    check_url(url)
    check_device(o.device)
    check_clip(o.clip, o.metrics)
    try:
        prompt_set = load_prompts(prompt_spec(o.prompts))
    except (OSError, ValueError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--prompts {o.prompts!r}: cannot load it ({e})") from None
    if o.reference is None:
        raise ValueError(f"--reference is needed for model {spec.name!r} (e.g. coco2014:/data/coco or dir:FOLDER, "
                         "or set HPYN_COCO=/data/coco for the paper's COCO-2014 prompts and images); only the toy "
                         "model ships a reference set")
    try:
        ref = load_reference(reference_spec(o.reference))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--reference {o.reference!r}: cannot load it ({e})") from None
    if len(ref) < 2:
        raise ValueError(f"--reference {o.reference!r} has {len(ref)} image(s); FID needs at least 2")
    try:
        table = noise_table(spec)
    except Exception as e:  # noqa: BLE001 - a hub model without network, a folder without a scheduler, ...
        raise ValueError(f"--model {opts.model!r}: cannot read its noise schedule ({e})") from None
    space = load_space(o.space, table, o.steps, o.guidance)

    n = o.rungs[-1]
    notes = []
    if len(prompt_set) < n:
        notes.append(f"prompt set {o.prompts!r} has {len(prompt_set)} prompt(s) for {n} samples: prompts are "
                     f"recycled (sample i gets prompt i mod {len(prompt_set)}); CLIP score and FID see repeats")
    if o.n_reference is not None and o.n_reference > len(ref):
        notes.append(f"{flag('n_reference')} {o.n_reference}: the reference {o.reference!r} has only {len(ref)} "
                     "images; using all of them")
    prompts = tuple(prompt_set[i % len(prompt_set)] for i in range(n))
    seeds = tuple(o.seed * SEED_STRIDE + i for i in range(n))
    name = o.study or f"{spec.name}-{o.steps}" + ("" if o.objective == "fid" else "-fid+clip")
    recorded = {   # the settings whose value is not the option's own
        "model": spec.name, "rungs": list(o.rungs), "metrics": list(o.metrics), "space": space.to_dict(),
        "prompts": {"spec": o.prompts, "sha256": prompt_hash(prompts, seeds), "n": n, "set_size": len(prompt_set)},
        "reference": {"spec": o.reference, "name": ref.name, "content_id": getattr(ref, "content_id", None),
                      "n": min(len(ref), o.n_reference or len(ref))},
    }
    attrs = {k: recorded.get(k, getattr(o, k)) for k in MUST_MATCH}
    attrs.update(model_source=spec.source, model_family=spec.family, space_source=space.source,
                 batch_size=o.batch_size,   # images per batch change PRD's k-means draws: reports redraw the same
                 seeds={"first": seeds[0], "count": n, "rule": f"seed·{SEED_STRIDE} + i"})
    return Prepared(o, spec, table, space, prompts, seeds, o.rungs, url, name, attrs, tuple(notes))


# ---- sampler and pruner ------------------------------------------------------------------------------------
def reduction_factor(rungs: Sequence[int]) -> int:
    """η of successive halving, for Optuna's SHA/Hyperband and Ray's ASHA alike: the ratio of the first two rungs,
    rounded to a whole number, at least 2 (keep the top 1/η at each rung)."""
    return max(2, round(rungs[1] / rungs[0])) if len(rungs) > 1 else 2


def worker_seed(seed: int, n_existing: int, worker_index: int) -> int:
    """The sampler seed of a worker: reproducible for one worker, different for workers that start together."""
    return seed * 7919 + n_existing + 104_729 * worker_index


def make_pruner(name: str, rungs: Sequence[int]):
    import optuna
    rf = reduction_factor(rungs)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=rf)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1], reduction_factor=rf)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def make_sampler(opts: RunOptions, n_existing: int, worker_index: int = 0):
    """The study's Optuna sampler (--sampler). The seed moves on with the study, so a resumed run does not replay
    the first run's random trials, and each worker of a study gets its own seed."""
    import optuna
    seed = worker_seed(opts.seed if opts.sampler_seed is None else opts.sampler_seed, n_existing, worker_index)
    S = optuna.samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)   # warn_independent_sampling: deprecated, still honoured
        if opts.sampler == "random":
            return S.RandomSampler(seed=seed)
        if opts.sampler == "qmc":
            return S.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
        if opts.sampler == "cmaes":
            # CMA-ES models the numeric dimensions present in every trial; categorical and conditional ones
            # (spacing, solver, ε vs σ_min) fall back to random draws
            return S.CmaEsSampler(seed=seed, n_startup_trials=opts.startup_trials, warn_independent_sampling=False,
                                  independent_sampler=S.RandomSampler(seed=seed))
        if opts.sampler == "gp":
            return S.GPSampler(seed=seed, n_startup_trials=opts.startup_trials, deterministic_objective=False,
                               warn_independent_sampling=False)   # conditional dimensions: drawn at random
        # constant_liar: trials running elsewhere count as bad
        return S.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=opts.startup_trials,
                            constant_liar=True)


# ---- baselines ---------------------------------------------------------------------------------------------
def baselines(prep: Prepared) -> list[tuple[str, Any, str]]:
    """(name, config, note): the paper's setting for this model and step count, and the samplers users pick
    (hpyn.presets: DPM++2M-Karras, Align Your Steps, Beta sampling, UniPC-Karras), all at the study's guidance.
    AYS only where its published σ's fit the model's noise schedule (SD's, e.g. the toy)."""
    from hpyn.presets import (
        PRESET_INFO,
        ays_setting,
        beta_setting,
        classic_setting,
        paper_setting,
        unipc_karras_setting,
    )
    g, n = prep.opts.guidance, prep.opts.steps
    paper, note = paper_setting(prep.spec.family, n)
    note += f"; guidance {g} (the study's, for all trials)"
    if prep.spec.family is None:
        note += "; model family unknown: SD1.5's settings (σ grids are model-agnostic)"
    out = [("paper", paper.replace(guidance=g), note)]
    for name, config in (("dpmpp2m-karras", classic_setting(n, g)), ("ays", ays_setting(prep.spec.family, n, g)),
                         ("beta", beta_setting(n, g)), ("unipc-karras", unipc_karras_setting(n, g))):
        try:
            config.sigmas(prep.table)
        except ValueError:  # AYS on a model with another noise schedule
            continue
        out.append((name, config, f"{PRESET_INFO[name]}; guidance {g}" +
                    (f" (spacing {config.spacing})" if name == "ays" else "")))
    return [b for b in out if b[0] in prep.opts.baselines]   # --baselines (default: all)


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


# ---- the study ---------------------------------------------------------------------------------------------
def check_settings(prep: Prepared, study) -> None:
    """Refuse to resume a study made with other settings (its trials would not be comparable)."""
    old = study_settings(study.user_attrs) or None
    if old is None:
        raise ValueError(f"study {prep.study_name!r} in {prep.storage_url} was not made by search.run; "
                         "pick another --study name")
    diff = [f"{k}: study has {old.get(k)!r}, this run {prep.attrs.get(k)!r}" for k in MUST_MATCH
            if json.dumps(old.get(k), sort_keys=True) != json.dumps(prep.attrs.get(k), sort_keys=True)]
    if diff:
        raise ValueError(f"study {prep.study_name!r} was made with other settings, so its trials are not "
                         "comparable with this run's:\n  " + "\n  ".join(diff) +
                         "\nrun with the study's settings to resume it, or give a new --study name")


def load_existing(prep: Prepared, storage):
    """The study of this name if it exists (its settings checked), else None."""
    import optuna
    try:
        study = optuna.load_study(study_name=prep.study_name, storage=storage)
    except KeyError:
        return None
    check_settings(prep, study)
    return study


def open_study(prep: Prepared, storage=None):
    """Create the study, or load it and check that it was made with the same settings. Hold `study_lock` (see
    search.workers) around this when several workers may start at once."""
    import optuna

    from search.storage import open_storage
    storage = storage or open_storage(prep.storage_url, prep.opts.heartbeat)
    existing = load_existing(prep, storage)
    n_existing = len(existing.trials) if existing is not None else 0
    worker_index = int(existing.user_attrs.get("worker_starts", 0)) if existing is not None else 0
    kw = {"directions": ["minimize", "maximize"]} if prep.opts.objective == "fid+clip" else \
        {"direction": "minimize"}
    study = optuna.create_study(storage=storage, study_name=prep.study_name, load_if_exists=True,
                                sampler=make_sampler(prep.opts, n_existing, worker_index),
                                pruner=make_pruner(prep.opts.pruner, prep.rungs), **kw)
    if existing is None:
        # under optuna-dashboard's 1,024-character limit: the largest settings in their own attributes
        settings = {**prep.attrs, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "versions": versions()}
        for key, value in split_settings(settings).items():
            study.set_user_attr(key, value)
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


def load_evaluator(prep: Prepared):
    """The metrics of the study (objectives.evaluate.Evaluator): loads the feature extractor and CLIP model."""
    from objectives.evaluate import Evaluator
    o = prep.opts
    return Evaluator(reference=reference_spec(o.reference), clip=None if o.clip == "none" else o.clip,
                     device=o.device, metrics=tuple(o.metrics), n_reference=o.n_reference)
