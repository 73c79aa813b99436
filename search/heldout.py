"""The held-out set of a validation (search.validate): which candidates, which prompts, seeds and reference images.

Everything here is checked and resolved before any model is loaded or image generated (`plan_validation`):
the finalists (the top-k complete non-baseline trials) and every baseline of the study; prompts at indices the
search never used (or a separate `--prompts` set); seeds s·1,000,000 + 500,000 + j where the search used
s·1,000,000 + i; reference images after the ones the search scored against, when enough remain.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULTS", "MIN_AUTO_REFERENCE", "SEED_OFFSET", "SEED_STRIDE", "Candidate", "Plan", "ValidateOptions",
           "plan_validation", "select_candidates"]

SEED_STRIDE = 1_000_000        # the search's rule: image i of a study with --seed s uses seed s·SEED_STRIDE + i
SEED_OFFSET = 500_000          # held-out image j uses s·SEED_STRIDE + SEED_OFFSET + j (disjoint while i, j < 500,000)
MIN_AUTO_REFERENCE = 500       # --reference-split auto: fewer held-out reference images than this -> the search's
# toy: N sized so that `make demo` (study + validation) stays near 10 min on 2 cores: ~73 ms per toy image
# (generation 11 + Inception 62) x 8 candidates (3 finalists, 5 baselines) x 256 ≈ 150 s, + 31 s once for the
# held-out reference's features; paired FID intervals ±5 wide at 128, ±3.7 at 256 (benchmarks/validate_speed.py)
DEFAULTS = {
    "toy": {"n": 256, "n_reference": 500, "judges": ("toy-classifier",), "batch_size": 64},
    None: {"n": 5000, "n_reference": None, "judges": ("clip-image", "dinov2"), "batch_size": 16},
}


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
