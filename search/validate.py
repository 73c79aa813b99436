"""Held-out validation of a study's finalists: `python -m search.validate --study NAME` (see --help).

The search's best trial is the minimum of many noisy scores measured on the very prompts, seeds and reference
images it optimised (the winner's curse). This stage re-generates the top-k complete trials and every baseline
on a held-out set and says, with paired 95 % bootstrap intervals, whether each finalist really beats each baseline.

* Held-out set (search.heldout, checked before anything loads): prompts at indices the search never used (after
  its last rung in the study's prompt set, or a separate `--prompts` set); seeds s·1,000,000 + 500,000 + j where
  the search used s·1,000,000 + i (i < its last rung ≤ 500,000); reference images after the first n_reference the
  search scored against, when the reference has enough of them (`--reference-split`). Image j has the same prompt
  and seed for every candidate (common random numbers): that pairing is what makes small differences detectable.
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
from typing import Any

import torch

from search.heldout import (  # noqa: F401 - re-exported: the planning half of the validation
    DEFAULTS,
    MIN_AUTO_REFERENCE,
    SEED_OFFSET,
    SEED_STRIDE,
    Candidate,
    Plan,
    ValidateOptions,
    _bad,
    _search_names,
    plan_validation,
    select_candidates,
)

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

CHUNK = 64                     # images per cache file (the resume granularity), independent of the batch size
ATTR_LIMIT = 1024              # optuna-dashboard truncates longer user attributes
PRIMARY = "inception-v3-compat"
LABELS = {"fid": "FID", "kid": "KID", "clip_score": "CLIP", "fd_toy-classifier": "FD-classifier",
          "fd_clip-image": "FD-CLIP", "fd_dinov2": "FD-DINOv2"}
HIGHER_IS_BETTER = ("clip_score",)
VERDICTS = ("confirmed better", "not distinguishable", "worse")


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
