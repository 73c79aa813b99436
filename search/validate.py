"""Held-out validation of a study's finalists: `python -m search.validate --study NAME` (see --help).

The search's best trial is the minimum of many noisy scores measured on the very prompts, seeds and reference
images it optimised (the winner's curse). This stage re-generates the top-k complete trials and every baseline
on a held-out set and says, with paired 95 % bootstrap intervals, whether each finalist really beats each baseline.

* Held-out set: prompts at indices the search never used (after its last rung in the study's prompt set, or a
  separate `--prompts` set); seeds s·1,000,000 + 500,000 + j where the search used s·1,000,000 + i (i < its last
  rung ≤ 500,000); reference images after the first n_reference the search scored against, when the reference
  has enough of them (`--reference-split`). Image j has the same prompt and seed for every candidate (common
  random numbers): that pairing is what makes small differences detectable.
* Metrics from one pass over the images: FID and KID (Inception, the search's objective), CLIP score, and Fréchet
  distances in the second judges' feature spaces (toy: the toy classifier; real models: the CLIP-score model's
  image features, FD-CLIP, and DINOv2, FD-DINOv2, where its weights are available).
* Intervals: objectives.bootstrap; image indices resampled jointly for all candidates, the reference held fixed.
* Verdict (`verdict`): "confirmed better" when the FID difference's interval lies below zero and no second judge's
  interval lies above it; "worse" when the FID interval lies above zero; otherwise "not distinguishable".
* Resumable: the features of each chunk of 64 images are cached on disk by (model, config, prompts, seeds,
  extractors) and written atomically; a killed validation resumes where it stopped, a re-run reuses everything.
* Results go into the study's user attributes (`validation`, `validation:sets`, `validation:conventions`,
  `validation:c:<candidate>`, `validation:v:<finalist>|<baseline>`, each under the dashboard's 1,024 characters);
  `validation_summary(study)` reads them back, `format_table(summary)` prints the verdict table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "SEED_OFFSET",
    "Candidate",
    "Plan",
    "ValidateOptions",
    "format_table",
    "main",
    "plan_validation",
    "run_validation",
    "validation_summary",
    "verdict",
]

SEED_STRIDE = 1_000_000        # the search's rule: image i of a study with --seed s uses seed s·SEED_STRIDE + i
SEED_OFFSET = 500_000          # held-out image j uses s·SEED_STRIDE + SEED_OFFSET + j (disjoint while i, j < 500,000)
CHUNK = 64                     # images per cache file (the resume granularity), independent of the batch size
ATTR_LIMIT = 1024              # optuna-dashboard truncates longer user attributes
MIN_AUTO_REFERENCE = 500       # --reference-split auto: fewer held-out reference images than this -> the search's
PRIMARY = "inception-v3-compat"
# toy: N sized so that `make demo` (study + validation) stays near 10 min on 2 cores: ~73 ms per toy image
# (generation 11 + Inception 62) x 8 candidates (3 finalists, 5 baselines) x 256 ≈ 150 s, + 31 s once for the
# held-out reference's features; paired FID intervals ±5 wide at 128, ±3.7 at 256 (benchmarks/validate_speed.py)
DEFAULTS = {
    "toy": {"n": 256, "n_reference": 500, "judges": ("toy-classifier",), "batch_size": 64},
    None: {"n": 5000, "n_reference": None, "judges": ("clip-image", "dinov2"), "batch_size": 16},
}
LABELS = {"fid": "FID", "kid": "KID", "clip_score": "CLIP", "fd_toy-classifier": "FD-classifier",
          "fd_clip-image": "FD-CLIP", "fd_dinov2": "FD-DINOv2"}
HIGHER_IS_BETTER = ("clip_score",)
VERDICTS = ("confirmed better", "not distinguishable", "worse")


@dataclass(frozen=True)
class ValidateOptions:
    top: int = 3                        # finalists: the K best complete non-baseline trials
    n: int | None = None                # held-out images per candidate (default: DEFAULTS)
    n_reference: int | None = None      # held-out reference images (default: DEFAULTS; None = all that remain)
    reference_split: str = "auto"       # auto | heldout | same
    prompts: str | None = None          # a separate held-out prompt set (default: the study's, unused indices)
    judges: tuple[str, ...] | None = None   # second-judge extractors (default: DEFAULTS; missing weights skipped)
    dinov2: str | None = None           # DINOv2 weights (folder, hub id, torchhub:NAME)
    resamples: int = 1000
    level: float = 0.95
    seed: int = 0                       # of the bootstrap resamples
    batch_size: int | None = None
    device: str | None = None
    cache: str | None = None
    model: str | None = None            # load this model instead of the study's (same weights elsewhere)


@dataclass(frozen=True)
class Candidate:
    name: str                           # "trial-18", or the baseline's name
    kind: str                           # "finalist" | "baseline"
    trial: int
    config: dict = field(repr=False)
    search_fid: float | None = None     # FID at the search's last rung (on the search's own images)
    rank: int | None = None             # finalists: 1 = the search's best


@dataclass(frozen=True)
class Plan:
    """Everything checked before any model is loaded or image generated."""

    study: str
    attrs: dict = field(repr=False)
    candidates: tuple[Candidate, ...]
    n: int
    prompts: tuple[str, ...] = field(repr=False)
    seeds: tuple[int, ...] = field(repr=False)
    sets: dict                          # what was held out, and how (stored in the study)
    reference: Any = field(repr=False)  # objectives.references.Reference: the held-out slice
    judges: tuple[str, ...]
    judges_required: bool               # False: default judges, skipped (with a note) when their weights are missing
    batch_size: int


def _bad(flag: str, value, why: str) -> ValueError:
    return ValueError(f"{flag} {value!r}: {why}")


def _search_names():
    try:
        from search.study import prompt_spec, reference_spec
    except ImportError:   # before the search/ restructure
        from search.run import _prompt_spec as prompt_spec
        from search.run import _reference_spec as reference_spec
    return prompt_spec, reference_spec


def select_candidates(study, top: int) -> list[Candidate]:
    """The `top` best complete trials that are not baselines (Pareto front by FID for fid+clip), then every baseline
    (its first complete trial)."""
    import optuna
    S = optuna.trial.TrialState
    done = [t for t in study.get_trials(deepcopy=False, states=(S.COMPLETE,)) if t.user_attrs.get("config")]
    if not done:
        raise ValueError(f"study {study.study_name!r} has no complete trials to validate; run `python -m search.run` "
                         "on it first")
    fid = lambda t: t.user_attrs.get("fid", t.values[0])
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        pool = [t for t in done if t.number in front]
    else:
        # --clip-margin studies: a trial whose CLIP score fell below the paper baseline's by more is infeasible
        pool = [t for t in done if (t.user_attrs.get("clip_constraint") or 0.0) <= 0]
    finalists = sorted((t for t in pool if not t.user_attrs.get("baseline")), key=fid)[:top]
    if not finalists:
        raise ValueError(f"study {study.study_name!r} has no complete trial besides its baselines "
                         f"({sorted({t.user_attrs['baseline'] for t in done if t.user_attrs.get('baseline')})})")
    out = [Candidate(f"trial-{t.number}", "finalist", t.number, t.user_attrs["config"], fid(t), i + 1)
           for i, t in enumerate(finalists)]
    for t in sorted(done, key=lambda t: t.number):
        name = t.user_attrs.get("baseline")
        if name and all(c.name != name for c in out):
            out.append(Candidate(name, "baseline", t.number, t.user_attrs["config"], fid(t)))
    if not any(c.kind == "baseline" for c in out):
        raise ValueError(f"study {study.study_name!r} has no complete baseline trial to compare against")
    return out


def _check_options(o: ValidateOptions) -> None:
    for flag, v, lo in (("--top", o.top, 1), ("--n", o.n, 2), ("--n-reference", o.n_reference, 2),
                        ("--resamples", o.resamples, 100), ("--batch-size", o.batch_size, 1), ("--seed", o.seed, 0)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise _bad(flag, v, f"give an integer ≥ {lo}")
    if not 0.5 <= o.level < 1:
        raise _bad("--level", o.level, "the interval's coverage, e.g. 0.95")
    if o.reference_split not in ("auto", "heldout", "same"):
        raise _bad("--reference-split", o.reference_split, "use auto, heldout or same")
    if o.n is not None and o.n > SEED_OFFSET:
        raise _bad("--n", o.n, f"at most {SEED_OFFSET} (held-out seeds must stay clear of the next study seed's)")


def _held_out_prompts(attrs: dict, o: ValidateOptions, n: int) -> tuple[list[str], dict]:
    """Prompts the search never used: indices [n_search, n_search + n) of the study's set (the search cycles through
    its set, so indices ≥ n_search are unused only while n_search < the set's size), or the first n of --prompts."""
    from objectives.prompts import load_prompts
    prompt_spec, _ = _search_names()
    spec, n_search = attrs["prompts"]["spec"], int(attrs["seeds"]["count"])
    own = o.prompts is None or o.prompts == spec
    try:
        prompts = load_prompts(prompt_spec(spec if own else o.prompts))
    except (OSError, ValueError, KeyError) as e:
        raise _bad("--prompts", spec if own else o.prompts, f"cannot load it ({e})") from None
    if own:
        if len(prompts) != attrs["prompts"].get("set_size", len(prompts)):
            raise ValueError(f"the study's prompt set {spec!r} now has {len(prompts)} prompts, the search had "
                             f"{attrs['prompts']['set_size']}: it changed since the study ran")
        left = max(0, len(prompts) - n_search)
        if n > left:
            used = f"indices 0..{min(n_search, len(prompts)) - 1}" + (" (cycling)" if n_search > len(prompts) else "")
            raise _bad("--n", n, f"the held-out prompt set has only {left} prompts: {spec!r} has {len(prompts)} and "
                                 f"the search used {used}; lower --n or give a separate set with --prompts FILE")
        chosen, info = prompts[n_search: n_search + n], {"spec": spec, "indices": [n_search, n_search + n]}
    else:
        if n > len(prompts):
            raise _bad("--n", n, f"the held-out prompt set {o.prompts!r} has only {len(prompts)} prompts")
        search_texts = set(load_prompts(prompt_spec(spec))[:n_search])
        chosen = prompts[:n]
        info = {"spec": o.prompts, "indices": [0, n], "same_text_as_search": sum(p in search_texts for p in chosen)}
    info["sha256"] = hashlib.sha256("\n".join(chosen).encode()).hexdigest()[:16]
    return chosen, info


def _held_out_reference(attrs: dict, o: ValidateOptions, want: int | None):
    """(Reference slice, info): images after the first n the search scored against, else the search's own."""
    from objectives.references import load_reference
    _, reference_spec = _search_names()
    spec, n_search = attrs["reference"]["spec"], int(attrs["reference"]["n"])
    try:
        ref = load_reference(reference_spec(spec))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"the study's reference {spec!r} cannot be loaded ({e})") from None
    if attrs["reference"].get("content_id") not in (None, ref.content_id):
        raise ValueError(f"the study's reference {spec!r} changed since the study ran (content id "
                         f"{ref.content_id}, the study has {attrs['reference']['content_id']})")
    left = len(ref) - n_search
    need = max(2, want if want is not None else MIN_AUTO_REFERENCE)
    split = o.reference_split
    if split == "auto":   # a default count falls back to the search's reference; an explicit --n-reference does not
        split = "heldout" if left >= need or o.n_reference is not None else "same"
    if split == "heldout":
        if left < need:
            raise _bad("--n-reference" if o.n_reference else "--reference-split", o.n_reference or "heldout",
                       f"the reference {spec!r} has {len(ref)} images and the search scored against the first "
                       f"{n_search}: {left} remain for a disjoint split, fewer than {need}; lower --n-reference, "
                       "use a larger reference, or --reference-split same")
        lo, hi = n_search, n_search + (want or left)
    else:
        lo, hi = 0, min(len(ref), want or n_search)
    info = {"spec": spec, "indices": [lo, hi], "disjoint": split == "heldout", "size": len(ref)}
    if split == "same" and o.reference_split == "auto":
        info["note"] = f"only {left} images beyond the search's {n_search}: the search's own reference is used"
    return _slice(ref, lo, hi), info


def _slice(ref, lo: int, hi: int):
    from objectives._cache import content_key
    from objectives.references import Reference
    if lo == 0 and hi == len(ref):
        return ref
    return Reference(name=f"{ref.name}[{lo}:{hi}]", content_id=content_key([ref.content_id, lo, hi]), prep=ref.prep,
                     arrays=None if ref.arrays is None else ref.arrays[lo:hi],
                     files=None if ref.files is None else ref.files[lo:hi])


def plan_validation(study, opts: ValidateOptions = ValidateOptions()) -> Plan:
    """Check the study and the options and fix the held-out set; ValueError naming the bad value. Generates nothing."""
    _check_options(opts)
    from search.facts import study_settings
    attrs = study_settings(study.user_attrs) or None
    if not attrs:
        raise ValueError(f"study {study.study_name!r} was not made by search.run (no 'hpyn' study attribute)")
    cands = tuple(select_candidates(study, opts.top))
    d = DEFAULTS["toy" if attrs["model"] == "toy" else None]
    n = opts.n or d["n"]
    s, seeds = int(attrs["seed"]), attrs["seeds"]
    n_search = int(seeds["count"])
    if seeds["first"] != s * SEED_STRIDE or n_search > SEED_OFFSET:
        raise ValueError(f"the study's seeds {seeds} do not follow seed·{SEED_STRIDE} + i with fewer than "
                         f"{SEED_OFFSET} images; cannot choose disjoint held-out seeds")
    prompts, pinfo = _held_out_prompts(attrs, opts, n)
    reference, rinfo = _held_out_reference(attrs, opts, opts.n_reference or d["n_reference"])
    first = s * SEED_STRIDE + SEED_OFFSET
    sets = {"prompts": pinfo, "reference": rinfo,
            "seeds": {"first": first, "count": n, "rule": f"seed·{SEED_STRIDE} + {SEED_OFFSET} + j",
                      "search": [s * SEED_STRIDE, s * SEED_STRIDE + n_search]}}
    judges = tuple(opts.judges) if opts.judges is not None else d["judges"]
    return Plan(study.study_name, attrs, cands, n, tuple(prompts), tuple(range(first, first + n)), sets, reference,
                judges, opts.judges is not None, opts.batch_size or d["batch_size"])


# ---- measuring: one pass over each chunk of images gives every extractor's features and the CLIP scores ----------
class Scorer:
    """The primary extractor (Inception), the second judges and the CLIP model, loaded before any generation, with
    the held-out reference's features (cached on disk by content). Pass `extractors` ({name: Extractor}, the
    primary first) and `clip` (a ClipModel or None) to inject them (tests, notebooks)."""

    def __init__(self, plan: Plan, opts: ValidateOptions, *, extractors: dict | None = None, clip: Any = "auto",
                 log: Callable[[str], None] = print):
        from objectives.features import get_extractor
        from objectives.references import reference_features
        self.notes: list[str] = []
        attrs = plan.attrs
        if clip == "auto":
            clip = None
            if "clip" in attrs.get("metrics", ()) and attrs.get("clip", "auto") != "none":
                from objectives.clip_score import load_clip
                from objectives.references import REFERENCES
                spec = attrs.get("clip", "auto")
                if spec == "auto":   # as the search's Evaluator: the CLIP registered with a named reference
                    named = REFERENCES.get(_search_names()[1](attrs["reference"]["spec"]))
                    spec = named.clip if named is not None else None
                clip = load_clip(spec, device=opts.device)
        self.clip = clip
        if extractors is None:
            bs = 128 if torch.cuda.is_available() and opts.device != "cpu" else 32
            extractors = {PRIMARY: get_extractor(PRIMARY, device=opts.device, batch_size=bs, cache=opts.cache)}
            for name in plan.judges:
                try:
                    kw = {"clip": clip} if name == "clip-image" else {"weights": opts.dinov2} if name == "dinov2" else {}
                    if name == "clip-image" and clip is None:
                        raise FileNotFoundError("FD-CLIP needs the study's CLIP model, and the study has CLIP off")
                    extractors[name] = get_extractor(name, device=opts.device, batch_size=bs, **kw)
                except (FileNotFoundError, ImportError) as e:
                    if plan.judges_required:
                        raise
                    self.notes.append(f"judge {name} skipped: {str(e).split('. ')[0]}")
                    log(f"[validate] {self.notes[-1]}")
        self.extractors = extractors
        self.primary = next(iter(extractors))
        t = time.perf_counter()
        self.reference = {k: reference_features(plan.reference, e, None, opts.cache) for k, e in extractors.items()}
        self.reference_s = time.perf_counter() - t
        self.text = clip.text_features(list(plan.prompts)) if clip is not None else None

    @property
    def ids(self) -> dict[str, str]:
        return {k: e.id for k, e in self.extractors.items()} | ({"clip": self.clip.id} if self.clip else {})

    def __call__(self, images, lo: int) -> dict:
        from objectives.clip_score import clip_scores
        out = {"features": {k: e(images) for k, e in self.extractors.items()}}
        if self.clip is not None:
            emb = out["features"]["clip-image"] if "clip-image" in out["features"] else self.clip.image_features(images)
            out["clip_scores"] = torch.as_tensor(clip_scores(emb, self.text[lo: lo + len(images)]))
        return out


def _generate(model, config, prompts, seeds, batch_size):
    from hpyn.generate import generate
    return generate(model, config, prompts, seeds, batch_size=batch_size)


def candidate_features(model, cand: Candidate, plan: Plan, scorer: Scorer, cache=None, keep_images: int = 8,
                       log: Callable[[str], None] = print) -> dict:
    """Features and CLIP scores of `cand` on the held-out set, chunk by chunk, each chunk cached atomically under
    <cache>/validation/<key>.pt with key = hash(model, config, the chunk's prompts and seeds, extractor ids)."""
    from hpyn.config import SamplerConfig
    from objectives._cache import atomic_torch_save, cache_dir, content_key
    config = SamplerConfig.from_dict(cand.config)
    model_id = [plan.attrs["model"], plan.attrs.get("model_source")]
    parts, stats, t0 = [], {"cached": 0, "generated": 0, "generate_s": 0.0, "features_s": 0.0}, time.perf_counter()
    for lo in range(0, plan.n, CHUNK):
        prompts, seeds = list(plan.prompts[lo: lo + CHUNK]), list(plan.seeds[lo: lo + CHUNK])
        key = content_key({"v": 1, "model": model_id, "config": config.to_dict(), "extractors": scorer.ids,
                           "pairs": hashlib.sha256(json.dumps([prompts, seeds]).encode()).hexdigest()})
        path = cache_dir(cache) / "validation" / f"{key}.pt"
        if path.is_file():
            part = torch.load(path, map_location="cpu", weights_only=True)
            stats["cached"] += len(seeds)
        else:
            t = time.perf_counter()
            images = _generate(model, config, prompts, seeds, plan.batch_size)
            stats["generate_s"] += time.perf_counter() - t
            t = time.perf_counter()
            part = scorer(images, lo) | {"seeds": torch.tensor(seeds)}
            if lo == 0 and keep_images:
                part["images"] = images[:keep_images].clone()
            stats["features_s"] += time.perf_counter() - t
            atomic_torch_save(part, path)
            stats["generated"] += len(seeds)
        if part["seeds"].tolist() != seeds:
            raise RuntimeError(f"cache file {path} holds seeds {part['seeds'][:3].tolist()}..., expected {seeds[:3]}...")
        parts.append(part)
    out = {"features": {k: torch.cat([p["features"][k] for p in parts]) for k in scorer.extractors},
           "clip_scores": torch.cat([p["clip_scores"] for p in parts]) if scorer.clip is not None else None,
           "images": parts[0].get("images"), **stats}
    log(f"[validate] {cand.name}: {plan.n} images ({stats['cached']} from the cache) in "
        f"{time.perf_counter() - t0:.1f}s")
    return out


# ---- statistics and verdicts -------------------------------------------------------------------------------------
def bootstrap_all(feats: dict[str, dict], scorer: Scorer, n: int, resamples: int, seed: int, device=None
                  ) -> tuple[dict, dict]:
    """({candidate: {metric: estimate}}, {candidate: {metric: replicates [B]}}) with ONE set of resample counts
    for every candidate (paired). Metrics: fid, kid (primary extractor), clip_score, fd_<judge>."""
    from objectives.bootstrap import (
        FrechetResampler,
        KIDResampler,
        resample_counts,
        weighted_means,
    )
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    counts = resample_counts(n, resamples, seed, device=dev)
    fds = {k: FrechetResampler(r, device=dev) for k, r in scorer.reference.items()}
    kid = KIDResampler(scorer.reference[scorer.primary], device=dev)
    est, reps = {}, {}
    for name, f in feats.items():
        e, r = est.setdefault(name, {}), reps.setdefault(name, {})
        for k, fr in fds.items():
            m = "fid" if k == scorer.primary else f"fd_{k}"
            e[m], r[m] = fr.point(f["features"][k]), fr.distances(f["features"][k], counts)
        e["kid"], r["kid"] = kid.point(f["features"][scorer.primary]), kid.mmd2(f["features"][scorer.primary], counts)
        if f["clip_scores"] is not None:
            s = f["clip_scores"].double().numpy()
            e["clip_score"], r["clip_score"] = float(s.mean()), weighted_means(s, counts.cpu())
    return est, reps


def verdict(fid, judges: dict) -> tuple[str, str]:
    """(verdict, reason) from the FID difference's interval (finalist − baseline, lower is better) and the second
    judges' Fréchet-distance difference intervals ({label: Interval}); see the module docstring."""
    worse = [k for k, iv in judges.items() if iv.low > 0]
    if fid.high < 0:
        if not judges:
            return "not distinguishable", "FID better, but no second judge was available to confirm it"
        if worse:
            return "not distinguishable", f"FID better, but {', '.join(worse)} significantly worse: the judges disagree"
        return "confirmed better", f"FID interval below 0 and {', '.join(judges)} not significantly worse"
    if fid.low > 0:
        return "worse", "FID interval above 0"
    return "not distinguishable", "FID interval contains 0"


def compare(cands, est: dict, reps: dict, level: float) -> list[dict]:
    """Every finalist against every baseline: paired differences with intervals, and the verdict."""
    from objectives.bootstrap import paired_difference
    out = []
    for f in (c for c in cands if c.kind == "finalist"):
        for b in (c for c in cands if c.kind == "baseline"):
            diff = {m: paired_difference(est[f.name][m], reps[f.name][m], est[b.name][m], reps[b.name][m], level)
                    for m in est[f.name]}
            v, why = verdict(diff["fid"], {LABELS.get(m, m): iv for m, iv in diff.items() if m.startswith("fd_")})
            out.append({"finalist": f.name, "baseline": b.name, "verdict": v, "reason": why,
                        "diff": {m: iv.as_list() for m, iv in diff.items()}})
    return out


def best_candidate(cands, est: dict, comparisons: list[dict]) -> dict:
    """The validated pick: the lowest held-out FID among all candidates (a baseline can win); `confirmed` when it
    is a finalist confirmed better than every baseline."""
    best = min(cands, key=lambda c: est[c.name]["fid"])
    beaten = [c["baseline"] for c in comparisons if c["finalist"] == best.name and c["verdict"] == VERDICTS[0]]
    n_base = sum(c.kind == "baseline" for c in cands)
    return {"name": best.name, "trial": best.trial, "kind": best.kind, "fid": round(est[best.name]["fid"], 4),
            "confirmed_better_than": beaten, "confirmed": best.kind == "finalist" and len(beaten) == n_base}


# ---- the study's record ------------------------------------------------------------------------------------------
def _put(study, key: str, value) -> None:
    text = json.dumps(value, separators=(",", ":"))
    if len(text) > ATTR_LIMIT:   # optuna-dashboard would cut it; a bug here, never silently truncated
        raise ValueError(f"study attribute {key!r} would be {len(text)} characters (limit {ATTR_LIMIT})")
    study.set_user_attr(key, value)


def _r(x: float) -> float:
    return float(f"{x:.5g}")


def record(study, plan: Plan, scorer: Scorer, est: dict, comparisons: list[dict], best: dict, opts: ValidateOptions,
           timings: dict) -> dict:
    """Write the results into the study's user attributes (the run id ties them together; `validation` last)."""
    run = hashlib.sha256(f"{time.time()}{plan.study}".encode()).hexdigest()[:8]
    for c in plan.candidates:
        _put(study, f"validation:c:{c.name}", {"run": run, "trial": c.trial, "kind": c.kind, "rank": c.rank,
                                               "search_fid": None if c.search_fid is None else _r(c.search_fid),
                                               "metrics": {m: _r(v) for m, v in est[c.name].items()}})
    for cmp in comparisons:
        _put(study, f"validation:v:{cmp['finalist']}|{cmp['baseline']}", {"run": run, **cmp})
    _put(study, "validation:sets", {"run": run, **plan.sets})
    conv = {"run": run, "extractors": scorer.ids, "kid": "unbiased MMD², poly3 kernel, full sets (no subsets)",
            "fd": "Fréchet distance, N generated vs the held-out reference",
            "bootstrap": f"paired, {opts.resamples} resamples of image indices (seed {opts.seed}) shared by all "
                         "candidates, reference fixed; basic interval centred on the replicates' median, for "
                         "the expected difference at this N", "notes": scorer.notes}
    _put(study, "validation:conventions", conv)
    meta = {"run": run, "n": plan.n, "level": opts.level, "resamples": opts.resamples, "top": opts.top,
            "metrics": list(next(iter(est.values()))), "candidates": [c.name for c in plan.candidates],
            "finalists": [c.trial for c in plan.candidates if c.kind == "finalist"], "best": best,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timings": timings}
    _put(study, "validation", meta)
    return validation_summary(study)


def validation_summary(study) -> dict | None:
    """The last validation of `study` as one dict (the export's `validation` block), or None if never validated.
    `stale` is True when the study's current top-k trials differ from the validated finalists."""
    u = study.user_attrs
    meta = u.get("validation")
    if not meta:
        return None
    run = meta["run"]
    cands = {n: u.get(f"validation:c:{n}") for n in meta["candidates"]}
    comps = [u.get(f"validation:v:{f}|{b}") for f in cands for b in cands
             if cands[f] and cands[b] and cands[f]["kind"] == "finalist" and cands[b]["kind"] == "baseline"]
    parts = [u.get("validation:sets"), u.get("validation:conventions"), *cands.values(), *comps]
    if any(p is None or p.get("run") != run for p in parts):
        return None   # a validation that was interrupted while writing: treat as never validated
    strip = lambda d: {k: v for k, v in d.items() if k != "run"}
    try:
        current = [c.trial for c in select_candidates(study, meta["top"]) if c.kind == "finalist"]
    except ValueError:
        current = []
    return {**strip(meta), "sets": strip(parts[0]), "conventions": strip(parts[1]),
            "candidates": {n: strip(c) for n, c in cands.items()}, "comparisons": [strip(c) for c in comps],
            "stale": current != meta["finalists"]}


def _num(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 1 else f"{x:.2f}"


def format_table(summary: dict | None) -> str:
    """The verdict table (plain text) of a `validation_summary`."""
    if not summary:
        return "not validated (run: python -m search.validate --study NAME)"
    s, metrics = summary["sets"], summary["metrics"]
    ref, pr = s["reference"], s["prompts"]
    lines = [(f"held-out validation: N={summary['n']} images per candidate (prompts {pr['spec']!r} "
             f"[{pr['indices'][0]}:{pr['indices'][1]}], seeds {s['seeds']['first']}+j), reference {ref['spec']!r} "
             f"[{ref['indices'][0]}:{ref['indices'][1]}] ({'disjoint from' if ref['disjoint'] else 'SAME AS'} the "
             f"search's), {summary['resamples']} paired resamples, {round(100 * summary['level'])} % intervals")]
    lines.append(f"  {'candidate':<16} {'trial':>5} {'search FID':>10} "
                 + " ".join(f"{LABELS.get(m, m):>13}" for m in metrics))
    for name, c in summary["candidates"].items():
        sf = "" if c["search_fid"] is None else _num(c["search_fid"])
        lines.append(f"  {name:<16} {c['trial']:>5} {sf:>10} " + " ".join(f"{_num(c['metrics'][m]):>13}"
                                                                        for m in metrics))
    lines.append(f"  {'finalist':<11} {'vs':<16} " + " ".join(f"{'Δ' + LABELS.get(m, m) + ' [CI]':<28}"
                                                              for m in metrics) + "verdict")
    for c in summary["comparisons"]:
        cells = []
        for m in metrics:
            e, lo, hi = c["diff"][m]
            cells.append(f"{_num(e) + ' [' + _num(lo) + ', ' + _num(hi) + ']':<28}")
        why = "" if c["verdict"] == VERDICTS[0] else f" ({c['reason']})"
        lines.append(f"  {c['finalist']:<11} {c['baseline']:<16} " + " ".join(cells) + c["verdict"] + why)
    b = summary["best"]
    beaten = ", ".join(b["confirmed_better_than"]) or "no baseline"
    lines.append(f"best validated: {b['name']} (held-out FID {_num(b['fid'])}); confirmed better than {beaten}"
                 + ("" if b["kind"] == "finalist" else " (a baseline: no finalist beat it on held-out FID)"))
    if summary.get("stale"):
        lines.append("note: the study's top trials changed since this validation; run search.validate again")
    return "\n".join(lines)


def run_validation(study, opts: ValidateOptions = ValidateOptions(), *, model=None, extractors: dict | None = None,
                   clip: Any = "auto", log: Callable[[str], None] | None = print) -> dict:
    """Validate `study` (see the module docstring); returns `validation_summary(study)` (+ key `images`: the first
    images of each candidate, for grids). Every check happens before the model is loaded."""
    say = log or (lambda _s: None)
    t0 = time.perf_counter()
    plan = plan_validation(study, opts)
    say(f"[validate] {plan.study}: {sum(c.kind == 'finalist' for c in plan.candidates)} finalists "
        f"({', '.join(c.name for c in plan.candidates if c.kind == 'finalist')}) and baselines "
        f"({', '.join(c.name for c in plan.candidates if c.kind == 'baseline')}) on {plan.n} held-out images")
    scorer = Scorer(plan, opts, extractors=extractors, clip=clip, log=say)
    if model is None:
        from hpyn.models import load_model
        model = load_model(opts.model or plan.attrs["model"], device=opts.device)
    feats = {c.name: candidate_features(model, c, plan, scorer, opts.cache, log=say) for c in plan.candidates}
    t = time.perf_counter()
    est, reps = bootstrap_all(feats, scorer, plan.n, opts.resamples, opts.seed, opts.device)
    comparisons = compare(plan.candidates, est, reps, opts.level)
    boot_s = time.perf_counter() - t
    timings = {"total_s": round(time.perf_counter() - t0, 1), "bootstrap_s": round(boot_s, 2),
               "reference_s": round(scorer.reference_s, 1),
               "generate_s": round(sum(f["generate_s"] for f in feats.values()), 1),
               "features_s": round(sum(f["features_s"] for f in feats.values()), 1),
               "generated": sum(f["generated"] for f in feats.values()),
               "cached": sum(f["cached"] for f in feats.values())}
    summary = record(study, plan, scorer, est, comparisons, best_candidate(plan.candidates, est, comparisons), opts,
                     timings)
    say(format_table(summary))
    say(f"[validate] {timings['total_s']:.0f}s: generation {timings['generate_s']:.0f}s, features "
        f"{timings['features_s']:.0f}s, reference {timings['reference_s']:.0f}s, bootstrap {boot_s:.1f}s")
    return {**summary, "images": {n: f["images"] for n, f in feats.items()}}


EPILOG = """\
examples:
  python -m search.validate --study toy-5                          # after: python -m search.run --model toy --steps 5
  python -m search.validate --study sd15-5 --storage postgresql://u:p@host/db --n 5000 --dinov2 /models/dinov2-large
  python -m search.validate --study sd15-5 --prompts file:heldout_prompts.txt --reference-split same

Re-running resumes (generated features are cached under $HPYN_CACHE/validation). The export (search.export) then
carries a 'validation' block and picks the best validated candidate.
"""


def main(argv=None) -> int:
    from search.storage import DEFAULT_STORAGE
    p = argparse.ArgumentParser(prog="python -m search.validate", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})")
    p.add_argument("--top", type=int, default=3, help="finalists: the K best complete trials (default 3)")
    p.add_argument("--n", type=int, help="held-out images per candidate (default 256 for toy, 5000 otherwise)")
    p.add_argument("--n-reference", type=int, help="held-out reference images (default 500 for toy, all that remain)")
    p.add_argument("--reference-split", default="auto", choices=("auto", "heldout", "same"),
                   help="heldout: reference images after the search's (error if too few); same: the search's own; "
                        f"auto (default): heldout when at least {MIN_AUTO_REFERENCE} remain")
    p.add_argument("--prompts", help="a separate held-out prompt set (default: the study's set, unused indices)")
    p.add_argument("--judges", help="second-judge extractors, comma-separated (default: toy-classifier for toy; "
                                    "clip-image,dinov2 otherwise, skipping DINOv2 if its weights are missing)")
    p.add_argument("--dinov2", help="DINOv2 weights: transformers folder or hub id, or torchhub:dinov2_vitl14")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--model", help="load this model (a folder or hub id with the study's weights) instead")
    p.add_argument("--cache", help="cache folder (default $HPYN_CACHE or ~/.cache/hpyn)")
    p.add_argument("--json", help="also write the summary as JSON here")
    p.add_argument("--no-report", action="store_true",
                   help="do not refresh the study note, pictures and report.html afterwards (search.report)")
    a = p.parse_args(argv)
    opts = ValidateOptions(top=a.top, n=a.n, n_reference=a.n_reference, reference_split=a.reference_split,
                           prompts=a.prompts, judges=tuple(j for j in a.judges.split(",") if j) if a.judges else None,
                           dinov2=a.dinov2, resamples=a.resamples, level=a.level, seed=a.seed,
                           batch_size=a.batch_size, device=a.device, cache=a.cache, model=a.model)
    try:
        import optuna

        from search.storage import check_url, redact
        check_url(a.storage)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=a.study, storage=a.storage)
        except KeyError:
            raise ValueError(f"no study {a.study!r} in {redact(a.storage)}; studies there: "
                             f"{optuna.get_all_study_names(storage=a.storage)}") from None
        summary = run_validation(study, opts)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume (finished chunks are cached)", file=sys.stderr)
        return 130
    if a.json:
        from pathlib import Path
        summary.pop("images", None)
        Path(a.json).write_text(json.dumps(summary, indent=2) + "\n")
    if not a.no_report:   # the note, pictures and report now carry the verdicts
        from search.report import main as report
        return report(["--study", a.study, "--storage", a.storage, "--save-note", "--batch-size",
                       str(a.batch_size or 16)] + (["--device", a.device] if a.device else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
