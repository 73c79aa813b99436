"""The options of a search run: one frozen, validated dataclass from which everything else is derived.

`RunOptions` is the single definition: each field's metadata gives its command-line help and group, and whether
the study records it and refuses a resumed run that changes it ("must match"). `build_parser` makes the
`python -m search.run` parser from the fields, `from_args` the options from parsed arguments, `MUST_MATCH` lists
the recorded settings. Every check that needs no file, model or network happens when the options are built (an
error names the option and the bad value); `resolve(opts, spec)` fills the model's defaults and returns new
options (the input is never changed).

Adding an option: one field below (with `opt(...)` metadata); it then has a flag, a help line and its checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpyn.presets import PRESETS
from objectives.metrics import STAGES

__all__ = [
    "BACKENDS",
    "BASELINES",
    "MAX_SAMPLES",
    "MAX_STEPS",
    "METRIC_GROUPS",
    "MIN_RUNG",
    "MODEL_DEFAULTS",
    "MUST_MATCH",
    "OBJECTIVES",
    "PRUNERS",
    "RunOptions",
    "build_parser",
    "flag",
    "from_args",
    "parse_rungs",
    "resolve",
]

OBJECTIVES = ("fid", "fid+clip")
PRUNERS = ("sha", "hyperband", "median", "none")
SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")   # Optuna's; benchmarks/search_quality.py compares them
BACKENDS = ("local", "ray")
METRIC_GROUPS = STAGES   # the stages objectives.evaluate.Evaluator computes (its `metrics`): fid, kid, clip, prd
BASELINES = ("paper", *(p for p in PRESETS if p != "paper"))   # the paper's setting, then the presets users pick
MIN_RUNG = 2           # KID (and a covariance) need at least two samples
MAX_SAMPLES = 100_000  # the largest rung: FID-50k is the largest sample size in common use; twice that is absurd
MAX_STEPS = 1000       # the DDPM training grid has 1000 timesteps
MAX_SEED = 2**32 - 1
MAX_HEARTBEAT = 3600

# Defaults per model: the toy model is sized so that the default study takes about 10 minutes on 2 CPU cores.
MODEL_DEFAULTS = {
    "toy": {"prompts": "toy", "reference": "toy", "rungs": (32, 128), "trials": 20, "guidance": 2.0,
            "batch_size": 64, "n_reference": 500},
    None: {"prompts": "builtin", "reference": None, "rungs": (64, 256, 1024), "trials": 60, "guidance": 7.5,
           "batch_size": 16, "n_reference": None},
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, match: bool = False, group: str = "run",
        metavar: str | None = None, cli: bool = True):
    """A RunOptions field: `match` = recorded in the study, and a resumed run must have the same value."""
    return dataclasses.field(default=default, metadata={"help": help, "match": match, "group": group,
                                                        "metavar": metavar, "cli": cli})


def parse_rungs(text) -> tuple[int, ...]:
    """'64,256,1024' or a sequence → increasing sample counts, each ≥ 2 (KID), the last ≤ MAX_SAMPLES."""
    parts = list(text) if isinstance(text, (list, tuple)) else [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
            raise ValueError
        rungs = tuple(int(p) for p in parts)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"--rungs {text!r}: give increasing sample counts like 64,256,1024") from None
    if not rungs or any(b <= a for a, b in itertools.pairwise(rungs)):
        raise ValueError(f"--rungs {text!r}: give increasing sample counts like 64,256,1024")
    if rungs[0] < MIN_RUNG:
        raise ValueError(f"--rungs {text!r}: every rung needs at least {MIN_RUNG} samples (KID and the feature "
                         f"covariance of FID need two)")
    if rungs[-1] > MAX_SAMPLES:
        raise ValueError(f"--rungs {text!r}: the last rung asks for {rungs[-1]} samples; at most {MAX_SAMPLES} "
                         "(FID-50k is the largest sample size in common use)")
    return rungs


def _names(text) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(str(p).strip() for p in parts if str(p).strip())


@dataclass(frozen=True)
class RunOptions:
    """What `python -m search.run` is asked to do (see `build_parser` for the command line)."""

    model: str = opt(help="toy | sd15 | sdxl | dreamshaper-xl | a diffusers folder | org/name", match=True)
    steps: int = opt(help="solver steps = U-Net calls (CFG batched)", match=True)
    study: str | None = opt(None, "study name (default MODEL-STEPS, +'-fid+clip' for that objective)")
    storage: str | None = opt(None, "SQLAlchemy URL (default sqlite:///studies/hpyn.db)")
    trials: int | None = opt(None, "finished (complete + pruned) trials the study should reach (default 20 for toy, "
                                   "60 otherwise)")
    timeout: float | None = opt(None, "stop this run after S seconds (the study can be resumed)")
    prompts: str | None = opt(None, "prompt set (default: toy for toy; else coco2014:$HPYN_COCO if set, else "
                                    "builtin)", match=True)
    reference: str | None = opt(None, "reference image set (default: toy for toy; else coco2014:$HPYN_COCO if "
                                      "set; required otherwise)", match=True)
    rungs: tuple[int, ...] | None = opt(None, "sample counts per rung, e.g. 64,256,1024 (default 32,128 for toy)",
                                        match=True)
    guidance: float | None = opt(None, "CFG scale of every trial and the baselines (default 2 for toy, 7.5 "
                                       "otherwise); search it with a space file", match=True)
    objective: str = opt("fid", "fid (prunable) or fid+clip (multi-objective Pareto front; Optuna cannot prune "
                                "it)", match=True)
    space: str = opt("default", "default | full | FILE.json", match=True)
    seed: int = opt(0, "seeds of the images and of the sampler (default 0)", match=True)
    pruner: str = opt("sha", "sha = successive halving (default), hyperband, median, none")
    clip_margin: float | None = opt(None, "with --objective fid: CLIP score may be at most this much below the "
                                          "paper baseline's", match=True)
    clip: str = opt("auto", "CLIP model for CLIP score: auto | none | toy | open_clip:NAME/TAG | hf:ID | FOLDER",
                    match=True)
    metrics: tuple[str, ...] = opt(METRIC_GROUPS, "metrics to compute (default fid,kid,clip,prd)", match=True)
    baselines: tuple[str, ...] = opt(BASELINES, f"baselines enqueued once each (default {','.join(BASELINES)}: "
                                                "hpyn.presets; AYS only on SD's noise schedule)")
    device: str | None = opt(None, "torch device (default cuda if available)")
    batch_size: int | None = opt(None, "images per generation batch")
    n_reference: int | None = opt(None, "use the first N reference images (default 500 for toy, all otherwise; "
                                        "their features are computed once and cached)")
    artifacts: str | None = opt(None, "artifact folder for image grids (default: beside the SQLite file)")
    sampler: str = opt("tpe", "Optuna sampler: tpe (default; multivariate, grouped), random, cmaes (numeric "
                              "dimensions; categoricals drawn at random), gp, qmc (Sobol)")
    sampler_seed: int | None = opt(None, "seed of the Optuna sampler alone (default: --seed): replicate a search "
                                         "on the same images")
    startup_trials: int = opt(8, "random trials before TPE/CMA-ES/GP take over (default 8)")
    refine: int = opt(0, "stage 2: after the parametric trials, N trials that move the best one's interior grid "
                         "points by free log-σ offsets (search.refine; marked stage 2; default 0 = none)")
    quiet: bool = opt(False, "no per-trial progress lines")
    proxy: str | None = opt(None, "also record a reference-free proxy on each trial's first-rung images: the mean "
                                  "paired 1-cos distance, in this extractor's features (toy-classifier, "
                                  "inception-v3-compat, ...), to a 50-step DPM++2M-Karras teacher's images for the "
                                  "same prompts and seeds (objectives.proxy; trial attribute proxy_teacher). Recorded, "
                                  "not used for pruning: on the toy it ranks samplers like held-out FID at Spearman "
                                  "0.86, the first rung's FID at 0.98 (benchmarks/proxy_agreement.py)")
    no_validate: bool = opt(False, "skip the held-out validation of the finalists and baselines at the end "
                                   "(run it later with python -m search.validate)")
    no_report: bool = opt(False, "skip the study note, pictures and report.html at the end (python -m search.report)")
    heartbeat: int | None = opt(30, "seconds between heartbeats of a running trial (default 30; 0 = off). A trial "
                                    "of a killed worker is failed after 3x this and run again by a live worker",
                                group="workers")
    backend: str = opt("local", "local: trials in this process (run one process per GPU/machine on a shared "
                                "postgresql:// study); ray: trials on a Ray cluster through Ray Tune", group="workers")
    ray_address: str | None = opt(None, "Ray cluster address (default: start a local Ray; 'auto': the running one)",
                                  group="workers")
    gpus_per_trial: float | None = opt(None, "GPUs per Ray trial (default 1 if the cluster has GPUs)",
                                       group="workers")
    max_concurrent: int | None = opt(None, "most Ray trials at once (default: as resources allow)", group="workers")

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)
        if self.rungs is not None:
            set_("rungs", parse_rungs(self.rungs))
        set_("metrics", _names(self.metrics))
        set_("baselines", _names(self.baselines))
        if self.heartbeat == 0:
            set_("heartbeat", None)      # 0 switches heartbeats off
        _check(self)

    def replace(self, **changes) -> RunOptions:
        return dataclasses.replace(self, **changes)


def _bad(name: str, value, why: str) -> ValueError:
    return ValueError(f"{flag(name)} {value!r}: {why}")


def _int(o, name, lo, hi=None, *, optional=True):
    v = getattr(o, name)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(name, v, "give a whole number")
    if v < lo or (hi is not None and v > hi):
        raise _bad(name, v, f"must be ≥ {lo}" + (f" and ≤ {hi}" if hi is not None else ""))


def _float(o, name, lo, hi=None, *, lo_open=False):
    v = getattr(o, name)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(name, v, "give a finite number")
    if v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
        raise _bad(name, v, f"must be {'>' if lo_open else '≥'} {lo:g}" + (f" and ≤ {hi:g}" if hi is not None else ""))


def _text(o, name, choices=None, *, optional=True):
    v = getattr(o, name)
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip():
        raise _bad(name, v, "give a non-empty value")
    if choices is not None and v not in choices:
        raise _bad(name, v, f"use one of {', '.join(choices)}")


def _check(o: RunOptions) -> None:
    """Checks that need nothing but the options (each error names the option and the value)."""
    from search.space import BY_NAME
    _text(o, "model", optional=False)
    _int(o, "steps", 1, MAX_STEPS, optional=False)
    for name in ("study", "storage", "prompts", "reference", "device", "artifacts", "ray_address"):
        _text(o, name)
    _text(o, "space", optional=False)
    _text(o, "clip", optional=False)
    _text(o, "objective", OBJECTIVES)
    _text(o, "pruner", PRUNERS)
    _text(o, "sampler", SAMPLERS)
    if o.proxy is not None:
        from objectives.features import EXTRACTORS
        _text(o, "proxy", tuple(EXTRACTORS))
        if o.backend != "local":
            raise _bad("proxy", o.proxy, "is recorded by the local backend only; drop it with --backend ray")
    _text(o, "backend", BACKENDS)
    _int(o, "trials", 1, 10**6)
    _float(o, "timeout", 0, lo_open=True)
    g_lo, g_hi = BY_NAME["guidance"].valid[:2]   # the search space's bounds of w
    _float(o, "guidance", g_lo, g_hi)
    _int(o, "seed", 0, MAX_SEED, optional=False)
    _int(o, "sampler_seed", 0, MAX_SEED)
    _float(o, "clip_margin", 0)
    _int(o, "batch_size", 1, MAX_SAMPLES)
    _int(o, "n_reference", 2)
    _int(o, "startup_trials", 0, 10**6, optional=False)
    _int(o, "refine", 0, 10**6, optional=False)
    _int(o, "heartbeat", 1, MAX_HEARTBEAT)
    _float(o, "gpus_per_trial", 0)
    _int(o, "max_concurrent", 1)
    for name in ("quiet", "no_validate", "no_report"):
        if not isinstance(getattr(o, name), bool):
            raise _bad(name, getattr(o, name), "must be True or False")
    bad = [b for b in o.baselines if b not in BASELINES]
    if bad or len(set(o.baselines)) != len(o.baselines):
        raise ValueError(f"--baselines {','.join(o.baselines)!r}: choose each at most once from "
                         f"{','.join(BASELINES)}" + (f"; unknown: {','.join(bad)}" if bad else ""))
    bad = sorted(set(o.metrics) - set(METRIC_GROUPS))
    if bad or "fid" not in o.metrics:
        raise ValueError(f"--metrics {','.join(o.metrics)!r}: choose from {','.join(METRIC_GROUPS)} (fid is "
                         "required)" + (f"; unknown: {','.join(bad)}" if bad else ""))
    if o.clip_margin is not None and "paper" not in o.baselines:
        raise ValueError("--clip-margin measures CLIP against the paper baseline: keep 'paper' in --baselines")
    if o.clip_margin is not None and o.objective != "fid":
        raise ValueError("--clip-margin applies to --objective fid (with fid+clip, CLIP is an objective)")
    if o.objective == "fid+clip" and ("clip" not in o.metrics or o.clip == "none"):
        raise ValueError("--objective fid+clip needs the CLIP score (keep 'clip' in --metrics, --clip not 'none')")
    if o.refine and (o.backend != "local" or o.objective != "fid"):
        raise _bad("refine", o.refine, "stage 2 refines the one best trial of an --objective fid study on the local "
                   "backend")
    if o.backend == "ray" and (o.objective != "fid" or o.clip_margin is not None):
        raise ValueError("--backend ray runs --objective fid studies without --clip-margin; use the local backend")


MUST_MATCH = tuple(f.name for f in dataclasses.fields(RunOptions) if f.metadata["match"])


def model_defaults(spec) -> dict:
    """The option defaults of a model (`hpyn.models.ModelSpec`); $HPYN_COCO selects the paper's COCO protocol."""
    if spec.name == "toy":
        return dict(MODEL_DEFAULTS["toy"])
    d = dict(MODEL_DEFAULTS[None])
    coco = os.environ.get("HPYN_COCO")
    if coco:  # the paper's protocol (spec E): COCO-2014 val captions and their images
        d.update(prompts=f"coco2014:{coco}", reference=f"coco2014:{coco}")
    return d


def resolve(o: RunOptions, spec) -> RunOptions:
    """New options with the model's defaults filled in (the input is not changed)."""
    d = model_defaults(spec)
    fill = {k: d[k] for k in ("trials", "rungs", "guidance", "batch_size", "n_reference", "prompts", "reference")
            if getattr(o, k) is None}
    out = o.replace(**fill)
    return out.replace(guidance=float(out.guidance))


# ---- the command line ------------------------------------------------------------------------------------
def build_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The parser of `python -m search.run`: one flag per RunOptions field."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {"run": p, "workers": p.add_argument_group("many workers (see README, 'Many workers')")}
    for f in dataclasses.fields(RunOptions):
        m = f.metadata
        if not m["cli"]:
            continue
        kw: dict[str, Any] = {"help": m["help"], "dest": f.name}
        required = f.default is dataclasses.MISSING
        if f.type in ("bool",):
            kw["action"] = "store_true"
        else:
            kw["type"] = _CLI_TYPES.get(f.name, str)
            if required:
                kw["required"] = True
            else:
                kw["default"] = _cli_default(f.default)
            if f.name in _CHOICES:
                kw["choices"] = _CHOICES[f.name]
        groups[m["group"]].add_argument(flag(f.name), **kw)
    return p


_CHOICES = {"objective": OBJECTIVES, "pruner": PRUNERS, "backend": BACKENDS, "sampler": SAMPLERS}


def _cli_default(default):
    return ",".join(default) if isinstance(default, tuple) else default


def _cli_types() -> dict:
    hints = {f.name: str(f.type) for f in dataclasses.fields(RunOptions)}
    out = {}
    for name, t in hints.items():
        if t.startswith("int"):
            out[name] = int
        elif t.startswith("float"):
            out[name] = float
    return out


_CLI_TYPES = _cli_types()


def from_args(args: argparse.Namespace) -> RunOptions:
    """RunOptions from `build_parser().parse_args(...)` (raises ValueError naming a bad value)."""
    return RunOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)
                         if f.metadata["cli"]})


def option_names() -> Sequence[str]:
    return [f.name for f in dataclasses.fields(RunOptions)]
