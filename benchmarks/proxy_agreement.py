"""Does the teacher proxy (objectives.proxy) rank samplers like held-out FID? Spearman over a set of configs.

    python benchmarks/proxy_agreement.py                                 # toy, 5 steps, built-in set of 24 configs
    python benchmarks/proxy_agreement.py --configs 16 --n-heldout 256 --n-proxy 64
    python benchmarks/proxy_agreement.py --storage sqlite:///studies/hpyn.db --study toy-5   # a study's trials

For each config (the study's finished trials, or the five baselines plus random points of the default search
space, drawn with Optuna's RandomSampler so they are as diverse as a study's first trials):

* the proxies on the search's first prompts and seeds (prompt i, seed s·1,000,000 + i, as search.run draws them):
  paired distance to a DPM-Solver++2M-Karras teacher (``--teacher-steps`` 50, the study's guidance) in the toy
  classifier's features (1 − cos, and mean squared L2) at n = ``--n-proxy`` and at n = ``--n-rung``, in Inception
  pool3 features (1 − cos), and, for contrast, the pixel RMS distance (which charges a residual ending's leftover
  noise in full);
* FID at the first rung (n = ``--n-rung``, default 32, and at ``--n-proxy``) on those images against the
  search's reference (the first 500 toy reference images): what the first pruning rung uses today;
* held-out FID, the truth: n = ``--n-heldout`` fresh images (prompts after the search's 128, seeds
  s·1,000,000 + 500,000 + j, as search.validate draws them) against the held-out reference (toy reference images
  500..999, as search.validate's default split); its split-half reliability (Spearman between the FIDs of its two
  halves, each at n/2) says how well any predictor could agree with it.

Prints a per-config table, then Spearman ρ (with a 95 % bootstrap interval over configs) of each predictor against
held-out FID, how many of the held-out top-5 each keeps when it keeps the better half, and the seconds per trial
each predictor costs (generation + features + metric). Per-config results are cached in ``--work`` (a JSON file), so
a killed run resumes and a re-run only prints.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

SEED_STRIDE, SEED_OFFSET = 1_000_000, 500_000   # search.run / search.validate's seed rules
SEARCH_N, SEARCH_N_REF = 128, 500               # the toy study's last rung and n_reference (search.options)


def builtin_configs(model, steps: int, guidance: float, count: int, seed: int) -> list[tuple[str, object]]:
    """The five baselines of a toy study, then random points of the default space (Optuna RandomSampler)."""
    import optuna

    from hpyn.presets import ays_setting, beta_setting, classic_setting, paper_setting, unipc_karras_setting
    from search.space import load_space, suggest_config

    out = [("paper", paper_setting("sd15", steps)[0].replace(guidance=guidance)),
           ("dpmpp2m-karras", classic_setting(steps, guidance)), ("ays", ays_setting("sd15", steps, guidance)),
           ("beta", beta_setting(steps, guidance)), ("unipc-karras", unipc_karras_setting(steps, guidance))]
    space = load_space("default", model.table, steps, guidance)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen = {json.dumps(c.to_dict(), sort_keys=True) for _, c in out}
    while len(out) < count:
        trial = study.ask()
        cfg = suggest_config(trial, steps, space)
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append((f"random{trial.number}", cfg))
    return out[:count]


def study_configs(storage: str, name: str) -> tuple[list[tuple[str, object]], dict]:
    import optuna

    from hpyn.config import SamplerConfig
    from search.facts import study_settings

    study = optuna.load_study(study_name=name, storage=storage)
    attrs = study_settings(study.user_attrs) or {}
    out = []
    for t in study.trials:
        if t.state.name in ("COMPLETE", "PRUNED") and t.user_attrs.get("config"):
            label = f"t{t.number}" + (f" {t.user_attrs['baseline']}" if t.user_attrs.get("baseline") else "")
            out.append((label, SamplerConfig.from_dict(t.user_attrs["config"])))
    if not out:
        raise SystemExit(f"study {name!r} has no finished trial with a config")
    return out, attrs


def slice_reference(ref, lo: int, hi: int):
    """Reference images lo..hi−1 (search.validate's held-out split, same content id so caches are shared)."""
    from objectives._cache import content_key
    from objectives.references import Reference
    return Reference(name=f"{ref.name}[{lo}:{hi}]", content_id=content_key([ref.content_id, lo, hi]), prep=ref.prep,
                     arrays=None if ref.arrays is None else ref.arrays[lo:hi],
                     files=None if ref.files is None else ref.files[lo:hi])


def spearman(x, y) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(x, y).statistic)


def spearman_ci(x, y, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        if len(set(i)) > 2:
            v = spearman(x[i], y[i])
            if np.isfinite(v):
                vals.append(v)
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def top_kept(pred, truth, k: int = 5) -> int:
    """How many of the truth's best k (lowest) a predictor keeps when it keeps its better half."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    keep = set(np.argsort(pred)[: (len(pred) + 1) // 2].tolist())
    return len(keep & set(np.argsort(truth)[:k].tolist()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storage"), ap.add_argument("--study")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--guidance", type=float, default=2.0, help="the toy study's default (ignored with --study)")
    ap.add_argument("--configs", type=int, default=24, help="built-in set size (5 baselines + random points)")
    ap.add_argument("--config-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="the study's --seed (image seeds)")
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--n-proxy", type=int, default=64)
    ap.add_argument("--n-rung", type=int, default=32)
    ap.add_argument("--n-heldout", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--work", default="/tmp/proxy_agreement.json", help="per-config results (resume)")
    ap.add_argument("--json", help="write the summary here too")
    a = ap.parse_args(argv)

    import objectives
    from hpyn.generate import generate
    from hpyn.models import load_model
    from hpyn.presets import classic_setting
    from objectives._cache import cache_dir
    from objectives.evaluate import Evaluator
    from objectives.features import get_extractor
    from objectives.fid import fid_from_features
    from objectives.proxy import TeacherProxy, paired_distances
    from objectives.references import load_reference

    t_load = time.perf_counter()
    model = load_model("toy")
    if a.study:
        configs, attrs = study_configs(a.storage or "sqlite:///studies/hpyn.db", a.study)
        a.guidance = float(attrs.get("guidance", a.guidance))
        a.seed = int(attrs.get("seed", a.seed))
        a.steps = int(attrs.get("steps", a.steps))
    else:
        configs = builtin_configs(model, a.steps, a.guidance, a.configs, a.config_seed)
    inception = get_extractor("inception-v3-compat")
    clf = get_extractor("toy-classifier")
    ref = load_reference("toy")
    rung_ev = Evaluator(ref, prompts="toy", clip=None, extractor=inception, n_reference=SEARCH_N_REF, metrics=("fid",))
    held_ev = Evaluator(slice_reference(ref, SEARCH_N_REF, 2 * SEARCH_N_REF), prompts="toy", clip=None,
                        extractor=inception, metrics=("fid",))
    print(f"setup (model, extractors, reference features): {time.perf_counter() - t_load:.1f} s", flush=True)

    toy_prompts = objectives.toy.prompts(2000)
    n = a.n_proxy
    s_prompts, s_seeds = toy_prompts[:n], [a.seed * SEED_STRIDE + i for i in range(n)]
    h_prompts = toy_prompts[SEARCH_N: SEARCH_N + a.n_heldout]
    h_seeds = [a.seed * SEED_STRIDE + SEED_OFFSET + j for j in range(a.n_heldout)]
    teacher = classic_setting(a.teacher_steps, a.guidance)
    proxy = TeacherProxy(model, teacher, s_prompts, s_seeds, clf, batch_size=a.batch_size)
    teacher_s = proxy.teacher_seconds
    proxy_inc = TeacherProxy(model, teacher, s_prompts, s_seeds, inception, batch_size=a.batch_size)
    teacher_s_inc = proxy_inc.teacher_seconds
    t_images = torch.load(cache_dir() / "proxy" / f"teacher-{proxy.images_key}.images.pt", weights_only=True)["images"]
    print(f"teacher ({a.teacher_steps}-step DPM++2M-Karras, n={n}): {teacher_s:.1f} s with toy-classifier features "
          f"(from cache: {proxy.from_cache}), +{teacher_s_inc:.1f} s Inception features", flush=True)

    work = Path(a.work)
    done = json.loads(work.read_text()) if work.is_file() else {}
    setting = f"g{a.guidance}-s{a.seed}-n{n}-h{a.n_heldout}-T{a.teacher_steps}"
    rows = []
    for i, (label, cfg) in enumerate(configs):
        key = setting + json.dumps(cfg.to_dict(), sort_keys=True)
        if key in done:
            rows.append(done[key])
            continue
        r: dict = {"label": label, "config": cfg.to_dict()}
        t = time.perf_counter()
        imgs = generate(model, cfg, s_prompts, s_seeds, batch_size=a.batch_size)
        r["gen_s_per_img"] = (time.perf_counter() - t) / n
        t = time.perf_counter()
        f_clf = clf(imgs)
        r["clf_s_per_img"] = (time.perf_counter() - t) / n
        t = time.perf_counter()
        f_inc = inception(imgs)
        r["inc_s_per_img"] = (time.perf_counter() - t) / n
        d = paired_distances(f_clf, proxy.features, "cosine")
        r["proxy_clf"], r["proxy_clf_rung"] = float(d.mean()), float(d[: a.n_rung].mean())
        r["proxy_clf_l2"] = float(paired_distances(f_clf, proxy.features, "sqeuclidean").mean())
        r["proxy_inc"] = float(paired_distances(f_inc, proxy_inc.features, "cosine").mean())
        r["pixel_rms"] = float(((imgs.float() - t_images.float()) ** 2).mean(dim=(1, 2, 3)).sqrt().mean())
        t = time.perf_counter()
        r["fid_rung"] = rung_ev.evaluate(features=f_inc[: a.n_rung])["fid"]
        r["fid_rung_s"] = time.perf_counter() - t
        r["fid_nproxy"] = rung_ev.evaluate(features=f_inc)["fid"]
        t = time.perf_counter()
        h_imgs = generate(model, cfg, h_prompts, h_seeds, batch_size=a.batch_size)
        f_h = inception(h_imgs)
        r["heldout_s"] = time.perf_counter() - t
        half = a.n_heldout // 2
        r["fid_heldout"] = held_ev.evaluate(features=f_h)["fid"]
        r["fid_half1"] = held_ev.evaluate(features=f_h[:half])["fid"]
        r["fid_half2"] = held_ev.evaluate(features=f_h[half: 2 * half])["fid"]
        r["fd_clf_heldout"] = fid_from_features(clf(h_imgs), held_ref_clf(held_ev, clf))
        done[key] = r
        rows.append(r)
        work.write_text(json.dumps(done))
        print(f"[{i + 1}/{len(configs)}] {label:16s} proxy {r['proxy_clf']:.4f} fid@{a.n_rung} {r['fid_rung']:.1f} "
              f"held-out fid@{a.n_heldout} {r['fid_heldout']:.1f} ({r['heldout_s']:.0f} s)", flush=True)

    summary = report(rows, a, teacher_s, teacher_s_inc)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


_REF_CLF: dict = {}


def held_ref_clf(ev, clf):
    """The held-out reference in the toy classifier's features (the second judge of search.validate on the toy)."""
    if "f" not in _REF_CLF:
        from objectives.references import reference_features
        _REF_CLF["f"] = reference_features(ev.reference, clf, ev.n_reference)
    return _REF_CLF["f"]


def describe(c: dict) -> str:
    s = c["spacing"] + (f" ρ{c['rho']:.2g}" if c.get("spacing") in ("time", "karras") else "")
    s += f" {c['final']}" + (f" ε{c['epsilon']:.2g}" if c["final"] == "residual" else
                             (f" σmin{c['sigma_min']:.2g}" if c.get("sigma_min") else ""))
    s += f" {c['solver'].replace('dpmpp_', '')}" + (" freeu" if c.get("freeu") else "")
    return s


def report(rows: list[dict], a, teacher_s: float, teacher_s_inc: float) -> dict:
    truth = [r["fid_heldout"] for r in rows]
    print(f"\n{len(rows)} configs, {a.steps} steps, guidance {a.guidance}; teacher: DPM++2M-Karras "
          f"{a.teacher_steps} steps; proxy n={a.n_proxy}, rung n={a.n_rung}, held-out n={a.n_heldout}\n")
    print(f"| config | sampler | proxy clf (1−cos) n={a.n_proxy} | proxy Inception n={a.n_proxy} | pixel RMS | "
          f"FID n={a.n_rung} | held-out FID n={a.n_heldout} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["fid_heldout"]):
        print(f"| {r['label']} | {describe(r['config'])} | {r['proxy_clf']:.4f} | {r['proxy_inc']:.4f} | "
              f"{r['pixel_rms']:.1f} | {r['fid_rung']:.1f} | {r['fid_heldout']:.1f} |")
    gen = float(np.median([r["gen_s_per_img"] for r in rows]))
    clf = float(np.median([r["clf_s_per_img"] for r in rows]))
    inc = float(np.median([r["inc_s_per_img"] for r in rows]))
    fid_s = float(np.median([r["fid_rung_s"] for r in rows]))
    n, m = a.n_proxy, a.n_rung
    preds = [   # (name, key, seconds per trial: generation + features + metric)
        (f"proxy toy-clf 1−cos, n={n}", "proxy_clf", n * (gen + clf)),
        (f"proxy toy-clf 1−cos, n={m}", "proxy_clf_rung", m * (gen + clf)),
        (f"proxy toy-clf sq. L2, n={n}", "proxy_clf_l2", n * (gen + clf)),
        (f"proxy Inception 1−cos, n={n}", "proxy_inc", n * (gen + inc)),
        (f"pixel RMS to teacher, n={n}", "pixel_rms", n * gen),
        (f"FID n={m} (today's first rung)", "fid_rung", m * (gen + inc) + fid_s),
        (f"FID n={n}", "fid_nproxy", n * (gen + inc) + fid_s),
        (f"held-out FID half 1 (n={a.n_heldout // 2}, other prompts)", "fid_half1", None),
        (f"FD toy-clf held-out n={a.n_heldout}", "fd_clf_heldout", None),
    ]
    good = np.argsort(truth)[: (len(rows) + 1) // 2]   # the better half by held-out FID: where a search ends up
    print(f"\n| predictor of held-out FID (n={a.n_heldout}) | Spearman ρ | 95 % CI (bootstrap over configs) | "
          f"ρ within the better half ({len(good)}) | held-out top-5 kept in its better half | s per trial |")
    print("|---|---:|---|---:|---:|---:|")
    summary = {"configs": len(rows), "teacher_s": teacher_s, "teacher_inception_s": teacher_s_inc, "predictors": {}}
    for name, key, secs in preds:
        x = [r[key] for r in rows]
        rho, (lo, hi), kept = spearman(x, truth), spearman_ci(x, truth), top_kept(x, truth)
        rho_good = spearman([x[i] for i in good], [truth[i] for i in good])
        summary["predictors"][key] = {"name": name, "spearman": rho, "ci": [lo, hi], "spearman_better_half": rho_good,
                                      "top5_kept": kept, "s_per_trial": secs}
        print(f"| {name} | {rho:.3f} | [{lo:.2f}, {hi:.2f}] | {rho_good:.2f} | {kept}/5 | "
              f"{'–' if secs is None else f'{secs:.1f}'} |")
    rel = spearman([r["fid_half1"] for r in rows], [r["fid_half2"] for r in rows])
    summary["split_half_reliability"] = rel
    print(f"\nheld-out FID split-half reliability (Spearman of its two halves, n={a.n_heldout // 2} each): {rel:.3f}")
    print(f"per image (medians): generation {gen * 1000:.0f} ms ({a.steps} steps), toy-classifier features "
          f"{clf * 1000:.1f} ms, Inception features {inc * 1000:.0f} ms; FID {fid_s * 1000:.0f} ms per call")
    print(f"teacher, once per study (cached on disk): {teacher_s:.1f} s ({a.n_proxy} images x {a.teacher_steps} "
          f"steps + toy-classifier features; 0 if it came from the cache), Inception features of it {teacher_s_inc:.1f} s")
    return summary


if __name__ == "__main__":
    sys.exit(main())
