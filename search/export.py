"""Export a study's best schedule(s) as JSON: `python -m search.export --help`.

The document (schema_version = hpyn.config.SCHEMA_VERSION) holds the best trial's full `SamplerConfig` under "config", so it loads back
directly: `SamplerConfig.load("best.json")`, `python -m hpyn.generate --config best.json ...`. Beside it: the
explicit σ grid and U-Net timesteps, the metrics per rung with N and their conventions, the baselines' metrics at
the same N, and provenance (package versions, seeds, prompt-set hash, study, storage). `--top K` / `--pareto` add
a "schedules" list (the K best complete trials, or the Pareto front of a fid+clip study; the "config" is then
the front's lowest-FID member).

Reproducing a schedule with plain diffusers (no hpyn): the exported "sigmas" (σ_0 > … > σ_n, k-diffusion
convention x = x0 + σ·noise) and "timesteps" (fractional U-Net t of each σ_i > 0) are all a sampler needs.
`search/reproduce.py` imports only torch and diffusers (copy it) and draws the same pixels as hpyn
(tests/test_search_reproduce.py):

    python -m search.reproduce --export best.json --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --prompt "a photo of a cat" --seeds 0-3 --out out/

Its core, for order 1 (DPM-Solver++1S = DDIM), with CFG scale w = config["guidance"]:

    x = torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed)) * sigmas[0]
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        eps_u, eps_c = pipe.unet(torch.cat([x, x]) / (s**2 + 1) ** 0.5, timesteps[i],
                                 encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
        denoised = x - s * (eps_u + w * (eps_c - eps_u))
        x = denoised if s_next == 0 else (s_next / s) * x + (1 - s_next / s) * denoised
    image = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample   # residual ending: x at σ_n = ε

Orders 2/3 add the DPM-Solver++ multistep terms (in reproduce.py). FreeU windows with the paper's "reference"
mapping need hpyn for exact pixels; diffusers' `unet.enable_freeu` is the "diffusers" mapping (spec D.4).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hpyn.config import SCHEMA_VERSION
from search.trials import trial_metrics

__all__ = ["SCHEMA_VERSION", "check_out", "export_study", "main", "write_export"]


def _trial_entry(t) -> dict[str, Any]:
    u = t.user_attrs
    return {"trial": t.number, "state": t.state.name, "values": t.values, "params": t.params,
            "baseline": u.get("baseline"), "config": u.get("config"), "sigmas": u.get("sigmas"),
            "timesteps": u.get("timesteps"), "metrics": trial_metrics(t), "rungs": u.get("rungs"),
            "wall_time_s": u.get("wall_time_s")}


def export_study(storage: str, study_name: str, *, top: int | None = None, pareto: bool = False) -> dict:
    """The export document of a study (see the module docstring). ValueError when there is nothing to export."""
    import optuna

    from search.storage import get_storage, redact, sqlite_path

    db = sqlite_path(storage)
    if db is not None and not db.is_file():
        raise ValueError(f"--storage {storage!r}: no such database file {str(db)!r}")
    rdb = get_storage(storage)   # a corrupt file or an unreachable server: one line naming it
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
    except KeyError:
        names = optuna.get_all_study_names(storage=rdb)
        raise ValueError(f"no study {study_name!r} in {redact(storage)}; studies there: {names}") from None
    S = optuna.trial.TrialState
    from search.facts import study_settings
    attrs = study_settings(study.user_attrs) or None
    if attrs is None:
        raise ValueError(f"study {study_name!r} was not made by search.run (no 'hpyn' study attribute)")
    complete = study.get_trials(deepcopy=False, states=(S.COMPLETE,))
    complete = [t for t in complete if t.user_attrs.get("config")]
    if not complete:
        c = {}
        for t in study.get_trials(deepcopy=False):
            c[t.state.name] = c.get(t.state.name, 0) + 1
        raise ValueError(f"study {study_name!r} has no complete trial to export (trials: {c or 'none'}); "
                         "run `python -m search.run` on it first")
    multi = len(study.directions) > 1
    if pareto and not multi:
        raise ValueError(f"--pareto needs a multi-objective study (--objective fid+clip); {study_name!r} has one "
                         "objective: use --top K")
    if multi:
        front = sorted(study.best_trials, key=lambda t: t.values[0])
        best = front[0]
        chosen = front if pareto or top is None else front[:top]
    else:
        try:
            best = study.best_trial
        except ValueError:
            raise ValueError(f"study {study_name!r} has no feasible complete trial (every one violates the "
                             "CLIP constraint)") from None
        feasible = [t for t in complete if t.system_attrs.get("constraints:clip", 0.0) <= 0]
        chosen = sorted(feasible, key=lambda t: t.value)[:top] if top else None
    last = attrs["rungs"][-1]
    from search.validate import validation_summary
    validation = validation_summary(study)
    search_best = best
    if validation is not None and not multi and validation["best"].get("trial") is not None:
        # the best *validated* candidate (held-out FID; a baseline can win); the search's own pick stays listed
        picked = [t for t in study.get_trials(deepcopy=False) if t.number == validation["best"]["trial"]]
        if picked and picked[0].user_attrs.get("config"):
            best = picked[0]
    base = {}
    for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)):
        name = t.user_attrs.get("baseline")
        if name and name not in base:
            base[name] = {"trial": t.number, "state": t.state.name, "note": t.user_attrs.get("baseline_note"),
                          "config": t.user_attrs.get("config"), "sigmas": t.user_attrs.get("sigmas"),
                          "metrics": trial_metrics(t, last), "rungs": t.user_attrs.get("rungs")}
    u = best.user_attrs
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "hpyn.search export",
        "model": attrs["model"], "model_source": attrs.get("model_source"), "steps": attrs["steps"],
        "objective": attrs["objective"], "trial": best.number, "baseline": u.get("baseline"),
        "config": u["config"], "sigmas": u.get("sigmas"), "timesteps": u.get("timesteps"),
        "metrics": trial_metrics(best, last), "rungs": u.get("rungs"),
        "conventions": study.user_attrs.get("conventions") or u.get("conventions"),
        "baselines": base,
        "selected_by": "held-out validation" if validation is not None and not multi else "search value",
        "search_best_trial": search_best.number,
        "validation": validation,
        "provenance": {
            "study": study_name, "storage": redact(storage), "created": attrs.get("created"),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": attrs.get("versions"),
            "seed": attrs.get("seed"), "seeds": attrs.get("seeds"), "prompts": attrs.get("prompts"),
            "reference": attrs.get("reference"), "guidance": attrs.get("guidance"), "rungs": attrs.get("rungs"),
            "space": attrs.get("space"), "metrics": attrs.get("metrics"), "clip_margin": attrs.get("clip_margin"),
            "trials": {s.name: sum(1 for t in study.get_trials(deepcopy=False) if t.state == s)
                       for s in (S.COMPLETE, S.PRUNED, S.FAIL)},
        },
        "reproduce": {
            "hpyn": f"python -m hpyn.generate --model {attrs['model']} --config THIS.json --prompt '...' "
                    "--seeds 0-7 --out out/",
            "diffusers": "import hpyn; applied = hpyn.apply(pipe, 'THIS.json'); "
                         "pipe(prompt, **applied.call_kwargs, generator=torch.Generator().manual_seed(0))",
            "comfyui": f"python -m hpyn.schedule --model {attrs['model']} --config THIS.json --format comfyui",
        },
    }
    if chosen is not None:
        doc["schedules"] = [_trial_entry(t) for t in chosen]
        doc["selection"] = "pareto" if multi and (pareto or top is None) else f"top {top}"
    return doc


def check_out(out: str | Path) -> Path:
    """--out must be a file path in an existing, writable folder (checked before anything is read or written)."""
    out = Path(out).expanduser()
    if str(out).endswith(os.sep) or out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a file name such as {out / 'best.json'}")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder")
    if not parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: folder {str(parent)!r} does not exist (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"--out {str(out)!r}: no permission to write there")
    return out


def comfyui_text(doc: dict) -> str:
    """The export's best schedule as ComfyUI settings (ManualSigmas string, sampler name, cfg, what it cannot express)."""
    from hpyn.comfyui import comfyui_recipe, format_comfyui
    from hpyn.config import SamplerConfig
    return format_comfyui(comfyui_recipe(SamplerConfig.from_dict(doc["config"]), doc["sigmas"]))


def write_export(doc: dict, out: str | Path, fmt: str = "json") -> Path:
    """Write atomically: a temporary file beside `out`, renamed over it (removed if anything fails)."""
    out = check_out(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(comfyui_text(doc) + "\n" if fmt == "comfyui" else json.dumps(doc, indent=2) + "\n")
        tmp.replace(out)
    except OSError as e:
        raise ValueError(f"--out {str(out)!r}: cannot write it ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv=None) -> int:
    from search.storage import DEFAULT_STORAGE
    p = argparse.ArgumentParser(
        prog="python -m search.export", description="Export a study's best schedule(s) as JSON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m search.export --study toy-5 --out best.json\n"
               "  python -m search.export --storage sqlite:///studies/hpyn.db --study sd15-5 --top 5 --out top5.json\n"
               "  python -m search.export --study sd15-5-fid+clip --pareto --out pareto.json\n"
               "  python -m search.export --study toy-5 --format comfyui --out best_comfyui.txt\n"
               "then:\n"
               "  python -m hpyn.generate --model toy --config best.json --prompt 'a sneaker' --seeds 0-7 --out out/\n"
               "  python -m hpyn.schedule --model toy --config best.json")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})")
    p.add_argument("--study", required=True, help="study name (see the dashboard, or the run's first line)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--top", type=int, help="also list the K best complete trials under 'schedules'")
    g.add_argument("--pareto", action="store_true", help="fid+clip studies: list the Pareto front under 'schedules'")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", default="json", choices=("json", "comfyui"),
                   help="json (default: the export document) or comfyui (sigma list for ManualSigmas, sampler, cfg)")
    args = p.parse_args(argv)
    try:
        if args.top is not None and not 1 <= args.top <= 10_000:
            raise ValueError(f"--top {args.top}: give the number of schedules to list, 1 to 10000")
        check_out(args.out)
        doc = export_study(args.storage, args.study, top=args.top, pareto=args.pareto)
        path = write_export(doc, args.out, args.format)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if doc.get("validation") is None and doc["objective"] == "fid":
        print(f"warning: study {args.study!r} was never validated on held-out prompts and seeds; its best is the "
              f"search's own pick (run python -m search.validate --study {args.study} --storage {args.storage})",
              file=sys.stderr)
    elif doc.get("validation") and doc["validation"].get("stale"):
        print("warning: the study's top trials changed since its validation; run python -m search.validate again",
              file=sys.stderr)
    m = doc["metrics"] or {}
    print(f"wrote {path}: trial {doc['trial']} of study {args.study!r}, FID {m.get('fid', float('nan')):.3f} at "
          f"n={m.get('n')}" + "".join(f"; {k} FID {(v['metrics'] or {}).get('fid', float('nan')):.3f}"
                                      for k, v in doc["baselines"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
