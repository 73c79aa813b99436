"""The facts of a study that every view shows, gathered once: `collect(study) -> StudyFacts`.

The rows (the best trial, or a Pareto front's spread; validated finalists; every baseline) with their metrics at
the study's last rung N, their configs and schedules, the conventions, the pruning counts; and how numbers,
configs and schedules are written (search/note.py writes the Markdown notes, search/report.py the HTML page,
search/pictures.py the pictures). Helpers that keep attributes readable in optuna-dashboard: `round_floats`,
`oversized_attrs` (what the dashboard would cut at 1,024 characters), `split_settings` / `study_settings`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DASHBOARD_ATTR_LIMIT", "METRICS", "Row", "StudyFacts", "baseline_title", "collect", "curve_from_attr",
           "delta", "describe_config", "fmt", "fmt_group", "oversized_attrs", "prd_curve_attr", "round_floats",
           "row_label", "schedule_text", "split_settings", "study_settings"]


def _table_metrics() -> tuple[tuple[str, str, int, int], ...]:
    """(key, label, sign: −1 lower is better / +1 higher is better, significant digits) of every optimisable
    metric, from objectives.metrics (the one place for metric names)."""
    from objectives.metrics import METRICS as ALL
    return tuple((k, m.label, m.sign, m.digits) for k, m in ALL.items() if m.direction)


METRICS = _table_metrics()


def baseline_title(r: Row) -> str | None:
    """What a baseline is, in one line (hpyn.presets.PRESET_INFO), when its stored note does not say it already."""
    from hpyn.presets import PRESET_INFO
    info = PRESET_INFO.get(r.label)
    return None if info is None or info in (r.note or "") else info


def round_floats(obj: Any, digits: int = 4) -> Any:
    """`obj` with every float rounded to `digits` significant digits (dicts, lists and tuples walked)."""
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj) or obj == 0:
            return obj
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(round_floats(v, digits) for v in obj)
    return obj


DASHBOARD_ATTR_LIMIT = 1024   # optuna-dashboard cuts json.dumps(value) of a non-scalar user attribute here


def oversized_attrs(study, limit: int = DASHBOARD_ATTR_LIMIT) -> list[tuple[str, str, int]]:
    """(owner, key, length) of every user attribute that optuna-dashboard would cut: owner "study" or
    "trial N"; length as the dashboard measures it (json.dumps of a non-string, non-number value)."""
    import numbers
    out = []
    owners = [("study", study.user_attrs)] + [(f"trial {t.number}", t.user_attrs)
                                              for t in study.get_trials(deepcopy=False)]
    for owner, attrs in owners:
        for k, v in attrs.items():
            if not isinstance(v, (str, bytes, numbers.Real)) and len(json.dumps(v)) > limit:
                out.append((owner, k, len(json.dumps(v))))
    return out


def split_settings(settings: dict, name: str = "hpyn", limit: int = DASHBOARD_ATTR_LIMIT) -> dict[str, Any]:
    """Study attributes that hold `settings` within the dashboard's limit: `name` with what fits, and
    `name:<key>` = {key: value} for each largest entry moved out until it fits. `study_settings` merges them."""
    core, out = dict(settings), {}
    while len(json.dumps(core)) > limit and core:
        key = max(core, key=lambda k: len(json.dumps(core[k])))
        part = {key: core.pop(key)}
        if len(json.dumps(part)) > limit:
            raise ValueError(f"study setting {key!r} alone is {len(json.dumps(part))} characters (limit {limit})")
        out[f"{name}:{key}"] = part
    return {name: core, **out}


def study_settings(user_attrs: dict, name: str = "hpyn") -> dict:
    """The study's settings: attribute `name` merged with its parts `name:<key>` (see `split_settings`)."""
    out = dict(user_attrs.get(name) or {})
    for k, v in user_attrs.items():
        if k.startswith(name + ":") and isinstance(v, dict):
            out.update(v)
    return out


def prd_curve_attr(curve, n: int, points: int = 41, digits: int = 3) -> dict:
    """A PRD curve (objectives.prd.PRDCurve, 1001 angles) as a trial attribute under the dashboard's limit:
    `points` angles evenly spaced in its θ grid (first and last kept), `digits` decimals, and its N."""
    import numpy as np
    idx = np.unique(np.linspace(0, len(curve.precision) - 1, points).round().astype(int))
    return {"n": int(n), "precision": [round(float(x), digits) for x in curve.precision[idx]],
            "recall": [round(float(x), digits) for x in curve.recall[idx]]}


def curve_from_attr(attr: dict):
    """The objectives.prd.PRDCurve of a `prd_curve_attr` (for plotting; its F-scores are of the thinned curve)."""
    import numpy as np

    from objectives.prd import PRDCurve
    return PRDCurve(np.asarray(attr["precision"], float), np.asarray(attr["recall"], float))


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits (no exponent for the ranges metrics take), '–' when absent."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def fmt_group(values: Sequence[float], digits: int = 4) -> list[str]:
    """Numbers printed with one number of decimals: `digits` significant digits of the largest (an estimate and
    its interval read alike)."""
    big = max((abs(v) for v in values if v is not None and math.isfinite(v) and v != 0), default=1.0)
    decimals = max(0, digits - 1 - math.floor(math.log10(big)))
    return ["–" if v is None else f"{v:.{decimals}f}" for v in values]


def delta(best: float | None, base: float | None, direction: int) -> tuple[float, bool] | None:
    """(relative change of best vs base in %, whether best is better) or None when either is missing."""
    if best is None or base is None or base == 0:
        return None
    d = 100.0 * (best - base) / abs(base)
    return d, d * direction > 0


@dataclass
class Row:
    """One sampler of the comparison: the best trial, a Pareto member or a baseline, with its metrics at N."""

    label: str
    kind: str                      # "best" | "pareto" | "baseline"
    trial: Any                     # optuna FrozenTrial
    metrics: dict | None           # the rung at the study's last N (None: did not reach it)
    note: str | None = None        # a baseline's description
    baseline: str | None = None    # the baseline name if this trial is one (a baseline may also be the best)

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def config(self) -> dict | None:
        return self.trial.user_attrs.get("config")

    @property
    def sigmas(self) -> list[float] | None:
        return self.trial.user_attrs.get("sigmas")

    @property
    def timesteps(self) -> list[float] | None:
        return self.trial.user_attrs.get("timesteps")


@dataclass
class StudyFacts:
    name: str
    attrs: dict                    # the study attribute "hpyn" (settings; see search/run.py prepare)
    n: int | None                  # the last rung: the N at which rows are compared
    multi: bool                    # fid+clip (Pareto front) study
    best: Row | None
    pareto: list[Row] = field(default_factory=list)
    baselines: list[Row] = field(default_factory=list)
    finalists: list[Row] = field(default_factory=list)        # validated finalists other than the best
    conventions: dict = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    pruned_at: dict[int, int] = field(default_factory=dict)   # rung N → pruned trials that stopped there
    storage: str | None = None

    @property
    def rows(self) -> list[Row]:
        """The samplers every view compares: the best (of a Pareto front: at most 4 members spread from lowest
        FID to highest CLIP), the other validated finalists, then every baseline; each trial once."""
        lead = [self.best] if self.best and not self.multi else self.pareto
        if len(lead) > 4:
            lead = [lead[round(i * (len(lead) - 1) / 3)] for i in range(4)]
        out: list[Row] = []
        for r in lead + self.finalists + self.baselines:
            if all(r.number != o.number for o in out):
                out.append(r)
        return out


def metrics_at(trial, n: int | None) -> dict | None:
    rungs = trial.user_attrs.get("rungs") or []
    if n is None:
        return rungs[-1] if rungs else None
    return next((r for r in rungs if r.get("n") == n), None)


def stopped_at(trial) -> int | None:
    rungs = trial.user_attrs.get("rungs") or []
    if rungs:
        return rungs[-1].get("n")
    steps = list(trial.intermediate_values)
    return max(steps) if steps else None


def collect(study, storage: str | None = None, validation: dict | None = None) -> StudyFacts:
    """The facts every view of the study shows (study note, baseline notes, HTML report, pictures).
    `validation` (search.validate.validation_summary) adds its finalists as rows."""
    import optuna

    S = optuna.trial.TrialState
    attrs = study_settings(study.user_attrs)
    rungs = attrs.get("rungs") or []
    n = rungs[-1] if rungs else None
    multi = len(study.directions) > 1
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    pruned_at: dict[int, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if t.state == S.PRUNED:
            at = stopped_at(t)
            if at is not None:
                pruned_at[at] = pruned_at.get(at, 0) + 1
    if n is None:  # a study without settings: compare at the largest N any complete trial reached
        ns = [r.get("n") for t in trials if t.state == S.COMPLETE for r in (t.user_attrs.get("rungs") or [])[-1:]]
        n = max(ns) if ns else None

    baselines: list[Row] = []
    names: set[str] = set()
    for t in trials:
        name = t.user_attrs.get("baseline")
        if not name or name in names or t.state not in (S.COMPLETE, S.PRUNED, S.FAIL):
            continue
        if t.state == S.FAIL and any(u.user_attrs.get("baseline") == name and u.state == S.COMPLETE for u in trials):
            continue  # a failed attempt of a baseline that a later trial finished
        names.add(name)
        baselines.append(Row(name, "baseline", t, metrics_at(t, n), t.user_attrs.get("baseline_note"), name))

    best, pareto = None, []
    complete = [t for t in trials if t.state == S.COMPLETE and t.values is not None]
    if complete:
        if multi:
            front = sorted(study.best_trials, key=lambda t: t.values[0])
            for i, t in enumerate(front):
                lab = "best FID on the front" if i == 0 else f"front member {i + 1}"
                pareto.append(Row(lab, "pareto", t, metrics_at(t, n), baseline=t.user_attrs.get("baseline")))
            best = pareto[0] if pareto else None
            if best is not None:
                best.kind = "best"
        else:
            try:
                t = study.best_trial
            except ValueError:  # every complete trial violates the CLIP constraint
                t = None
            if t is not None:
                best = Row("best", "best", t, metrics_at(t, n), baseline=t.user_attrs.get("baseline"))

    finalists = []
    by_number = {t.number: t for t in trials}
    for name, c in ((validation or {}).get("candidates") or {}).items():
        t = by_number.get(c.get("trial"))
        if c.get("kind") == "finalist" and t is not None and (best is None or t.number != best.number):
            finalists.append(Row(f"finalist {c.get('rank') or name}", "finalist", t, metrics_at(t, n)))
    conventions = study.user_attrs.get("conventions")
    if not conventions:
        src = best.trial if best else next((t for t in complete), None)
        conventions = (src.user_attrs.get("conventions") if src is not None else None) or {}
    return StudyFacts(study.study_name, attrs, n, multi, best, pareto, baselines, finalists, dict(conventions),
                      states, dict(sorted(pruned_at.items())), storage)


# ---- how configs, schedules and differences are written ---------------------------------------------------
def describe_config(config: dict | None) -> str:
    """One line: solver, spacing and ρ (and a refined grid's offsets), ending, guidance, FreeU window(s)."""
    if not config:
        return "–"
    solver = config.get("solver") or {1: "dpmpp_1s", 2: "dpmpp_2m", 3: "dpmpp_3m"}.get(config.get("order"), "?")
    spacing = config.get("spacing")
    rho = f" ρ={fmt(config.get('rho'), 3)}" if spacing in ("time", "karras") else ""   # ays / beta: no ρ
    parts = [f"{config.get('steps')} steps", solver, f"{spacing}{rho}"]
    if config.get("offsets"):   # a stage-2 grid (search.refine): the spacing's points moved one by one
        parts[-1] += " refined (log-σ offsets " + " ".join(f"{o:+.2f}" for o in config["offsets"]) + ")"
    if config.get("final") == "residual":
        parts.append(f"residual ε={fmt(config.get('epsilon'), 3)}")
    elif not rho:
        parts.append("ends at 0 by its own rule")
    else:
        smin = config.get("sigma_min")
        parts.append(f"zero ending σ_min={'model' if smin is None else fmt(smin, 3)}")
    parts.append(f"guidance {fmt(config.get('guidance'), 3)}")
    if config.get("guidance_interval"):
        lo, hi = config["guidance_interval"]
        parts.append(f"guidance only for σ in ({fmt(lo, 3)}, {fmt(hi, 3)}]")
    freeu = config.get("freeu") or []
    if freeu:
        parts.append("FreeU " + ", ".join(f"[{w['start']},{w['end']})" for w in freeu))
    return ", ".join(parts)


def schedule_text(sigmas: Sequence[float] | None, timesteps: Sequence[float] | None) -> tuple[str, str]:
    """σ (4 significant digits) and U-Net t (1 decimal; '–' where σ = 0) as space-separated text."""
    s = " ".join(fmt(x, 4) for x in sigmas) if sigmas else "–"
    t = list(timesteps or [])
    if sigmas:
        t = t + ["–"] * (len(sigmas) - len(t))
    return s, " ".join(x if isinstance(x, str) else f"{x:.1f}" for x in t) or "–"


def row_label(r: Row) -> str:
    tag = r.label
    if r.kind != "baseline" and r.baseline:
        tag += f" (= baseline {r.baseline})"
    return f"{tag} · trial {r.number}"


def delta_cell(best: Row, base: Row, key: str, direction: int) -> str:
    d = delta((best.metrics or {}).get(key), (base.metrics or {}).get(key), direction)
    if d is None:
        return "–"
    pct, better = d
    return f"{pct:+.1f} % {'better' if better else 'worse'}" if abs(pct) >= 0.05 else "±0 %"
