"""A study's result in words: best vs every baseline, the schedules, what the numbers mean, the next commands.

`collect(study)` gathers the facts once (the rows of best and baselines at the last rung, the schedules, the
conventions, the pruning counts); `study_note(facts)` writes them as Markdown for optuna-dashboard's study note
(`save_notes` stores it, and a note on each baseline trial, through `optuna_dashboard.save_note`); search/report.py
renders the same facts as HTML. Numbers are compared only at equal N: FID is biased by ~1/N, so a pruned trial's
value (its FID at the rung where it stopped) is not comparable with a finished trial's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["METRICS", "Row", "StudyFacts", "Table", "baseline_note", "collect", "commands", "delta", "fmt", "meaning",
           "metrics_table", "oversized_attrs", "pruned_note", "round_floats", "save_notes", "schedules_table",
           "split_settings", "study_note", "study_settings", "summary_sentence", "to_markdown", "validation_tables"]


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


def _metrics_at(trial, n: int | None) -> dict | None:
    rungs = trial.user_attrs.get("rungs") or []
    if n is None:
        return rungs[-1] if rungs else None
    return next((r for r in rungs if r.get("n") == n), None)


def _stopped_at(trial) -> int | None:
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
            at = _stopped_at(t)
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
        baselines.append(Row(name, "baseline", t, _metrics_at(t, n), t.user_attrs.get("baseline_note"), name))

    best, pareto = None, []
    complete = [t for t in trials if t.state == S.COMPLETE and t.values is not None]
    if complete:
        if multi:
            front = sorted(study.best_trials, key=lambda t: t.values[0])
            for i, t in enumerate(front):
                lab = "best FID on the front" if i == 0 else f"front member {i + 1}"
                pareto.append(Row(lab, "pareto", t, _metrics_at(t, n), baseline=t.user_attrs.get("baseline")))
            best = pareto[0] if pareto else None
            if best is not None:
                best.kind = "best"
        else:
            try:
                t = study.best_trial
            except ValueError:  # every complete trial violates the CLIP constraint
                t = None
            if t is not None:
                best = Row("best", "best", t, _metrics_at(t, n), baseline=t.user_attrs.get("baseline"))

    finalists = []
    by_number = {t.number: t for t in trials}
    for name, c in ((validation or {}).get("candidates") or {}).items():
        t = by_number.get(c.get("trial"))
        if c.get("kind") == "finalist" and t is not None and (best is None or t.number != best.number):
            finalists.append(Row(f"finalist {c.get('rank') or name}", "finalist", t, _metrics_at(t, n)))
    conventions = study.user_attrs.get("conventions")
    if not conventions:
        src = best.trial if best else next((t for t in complete), None)
        conventions = (src.user_attrs.get("conventions") if src is not None else None) or {}
    return StudyFacts(study.study_name, attrs, n, multi, best, pareto, baselines, finalists, dict(conventions),
                      states, dict(sorted(pruned_at.items())), storage)


# ---- text pieces shared by the Markdown note and the HTML report ------------------------------------------
def describe_config(config: dict | None) -> str:
    """One line: solver, spacing and ρ, ending, guidance, FreeU window(s)."""
    if not config:
        return "–"
    solver = config.get("solver") or {1: "dpmpp_1s", 2: "dpmpp_2m", 3: "dpmpp_3m"}.get(config.get("order"), "?")
    spacing = config.get("spacing")
    rho = f" ρ={fmt(config.get('rho'), 3)}" if spacing in ("time", "karras") else ""   # ays / beta: no ρ
    parts = [f"{config.get('steps')} steps", solver, f"{spacing}{rho}"]
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


def _delta_cell(best: Row, base: Row, key: str, direction: int) -> str:
    d = delta((best.metrics or {}).get(key), (base.metrics or {}).get(key), direction)
    if d is None:
        return "–"
    pct, better = d
    return f"{pct:+.1f} % {'better' if better else 'worse'}" if abs(pct) >= 0.05 else "±0 %"


def summary_sentence(f: StudyFacts, validation: dict | None = None) -> str:
    """The sentence on top: how the best compares with each baseline on FID, then the held-out verdict."""
    if f.best is None or not f.best.metrics:
        done = sum(v for k, v in f.states.items() if k in ("COMPLETE", "PRUNED"))
        return f"Study {f.name!r} has no complete trial yet ({done} finished)."
    b = f.best
    head = (f"Trial {b.number}" + (f" (baseline {b.baseline})" if b.baseline else "")
            + f" is the {'lowest-FID member of the Pareto front' if f.multi else 'best'}: "
              f"FID {fmt(b.metrics.get('fid'))} at N = {b.metrics.get('n', f.n)}")
    parts = []
    for base in f.baselines:
        if base.number == b.number:
            continue
        d = delta(b.metrics.get("fid"), (base.metrics or {}).get("fid"), -1)
        if d is None:
            parts.append(f"{base.label}: no FID at N = {f.n}")
        else:
            pct, better = d
            parts.append(f"{abs(pct):.1f} % {'lower' if better else 'higher'} than {base.label} "
                         f"({fmt(base.metrics['fid'])})")
    text = head + ("; " + ", ".join(parts) if parts else "") + "."
    if validation:
        text += " " + validation_sentence(validation)
    else:
        text += (" Not validated on held-out images: the search's own minimum is biased low (winner's curse); "
                 f"run `python -m search.validate --study {f.name}`.")
    return text


def commands(f: StudyFacts) -> list[tuple[str, str]]:
    storage = f" --storage {f.storage}" if f.storage else ""
    model = f.attrs.get("model", "MODEL")
    prompt = "a photo of a sneaker" if model == "toy" else "a photo of a cat"
    return [
        ("export the best schedule", f"python -m search.export{storage} --study {f.name} --out best.json"),
        ("generate with it", (f"python -m hpyn.generate --model {model} --config best.json "
                              f"--prompt '{prompt}' --seeds 0-7 --out out/")),
        ("this report as one HTML page", f"python -m search.report{storage} --study {f.name} --out report.html"),
    ]


def meaning(f: StudyFacts) -> list[str]:
    """What the numbers mean: N, reference, extractor, CLIP model, how to read pruned trials (inline Markdown)."""
    c, a = f.conventions, f.attrs
    ref, seeds = a.get("reference") or {}, a.get("seeds") or {}
    lines = [(f"**N = {f.n}** generated images per sampler; image *i* has the same prompt and seed for every "
              f"sampler (prompts `{(a.get('prompts') or {}).get('spec', '?')}`, seeds {seeds.get('first', '?')} + i). "
              "Numbers are comparable only at equal N (FID is biased by ~1/N).")]
    lines.append(f"**Reference**: {c.get('reference', ref.get('name', '?'))} "
                 f"({c.get('n_reference', ref.get('n', '?'))} images, {c.get('reference_prep', 'prep ?')}).")
    if c.get("extractor"):
        lines.append(f"**FID / KID / PRD features**: {c['extractor']} ({c.get('dim', '?')}-d, weights "
                     f"{c.get('weights', '?')}); KID: cubic polynomial kernel, mean over subsets; PRD (Sajjadi et al. "
                     "2018): F8 weighs recall (coverage), F1/8 precision (quality).")
    if c.get("clip_model"):
        lines.append(f"**CLIP score**: {c['clip_model']}, {c.get('clip_score', '100·max(cos, 0)')}.")
    lines.append("↓ lower is better (FID, KID), ↑ higher is better (CLIP, PRD). Δ % = (best − baseline) / baseline.")
    if f.pruned_at:
        at = ", ".join(f"{k} at N = {n}" for n, k in f.pruned_at.items())
        lines.append(f"**Pruned trials** ({at}): their value is the FID at the rung where they stopped (attribute "
                     "`n`), at a smaller N than the finished trials' and so biased high: do not compare it with "
                     f"N = {f.n} values.")
    return lines


# ---- tables: built once, rendered as Markdown here and as HTML in search/report.py ------------------------
@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    kinds: list[str] = field(default_factory=list)      # per row: "best" | "delta" | "" (styling)
    classes: list[list[str]] = field(default_factory=list)   # per cell: "better" | "worse" | ""
    text: tuple[int, ...] = (0,)                         # indices of text columns (left-aligned)
    mono: tuple[int, ...] = ()                           # indices of columns of number lists (monospace)


def metrics_table(f: StudyFacts) -> Table:
    t = Table(["sampler", "N"] + [f"{lab} {'↓' if d < 0 else '↑'}" for _, lab, d, _ in METRICS], [])
    for r in f.rows:
        m = r.metrics
        if m is None:
            reason = (r.trial.user_attrs.get("fail_reason") or "")[:120]
            cells = ["–", f"{r.trial.state.name.lower()}: no result at N = {f.n} {reason}".strip()]
            cells += [""] * (len(METRICS) - 1)
        else:
            cells = [str(m.get("n", f.n))] + [fmt(m.get(k), dg) for k, _, _, dg in METRICS]
        t.rows.append([row_label(r)] + cells)
        t.kinds.append("best" if r.kind == "best" else "")
        t.classes.append([""] * len(t.headers))
    if f.best is not None and f.best.metrics:
        for base in f.baselines:
            if base.number == f.best.number:
                continue
            cells = [_delta_cell(f.best, base, k, d) for k, _, d, _ in METRICS]
            t.rows.append([f"Δ best vs {base.label}", ""] + cells)
            t.kinds.append("delta")
            t.classes.append(["", ""] + [c.rsplit(" ", 1)[-1] if c.endswith(("better", "worse")) else ""
                                         for c in cells])
    return t


def schedules_table(f: StudyFacts) -> Table:
    t = Table(["sampler", "config", "σ", "t (U-Net)"], [], text=(0, 1, 2, 3), mono=(2, 3))
    for r in f.rows:
        t.rows.append([row_label(r), describe_config(r.config), *schedule_text(r.sigmas, r.timesteps)])
    return t


def _labels() -> dict:
    try:
        from search.validate import LABELS
        return LABELS
    except ImportError:
        return {}


def validation_sentence(v: dict) -> str:
    """One sentence from a search.validate.validation_summary: N, intervals, the validated pick and its verdict."""
    b = v.get("best") or {}
    ref = (v.get("sets") or {}).get("reference") or {}
    beaten = ", ".join(b.get("confirmed_better_than") or []) or "no baseline"
    others = [f"{c.get('verdict')} vs {c.get('baseline')}" + (" (the judges disagree)" if "disagree" in
                                                               c.get("reason", "") else "")
              for c in v.get("comparisons") or [] if c.get("finalist") == b.get("name")
              and c.get("verdict") != "confirmed better"]
    text = (f"Held-out validation on N = {v.get('n')} new images per candidate ({round(100 * v.get('level', 0.95))} % "
            f"paired bootstrap intervals, {v.get('resamples')} resamples; reference "
            f"{'disjoint from' if ref.get('disjoint') else 'the same as'} the search's): the best validated "
            f"candidate is {b.get('name')} (held-out FID {fmt(b.get('fid'))}), confirmed better than {beaten}"
            + (f"; {', '.join(others)}" if others else ""))
    if b.get("kind") == "baseline":
        text += " (a baseline: no finalist beat it on held-out FID)"
    text += "."
    if v.get("stale"):
        text += " The study's top trials changed since this validation: run search.validate again."
    return text


def validation_tables(v: dict) -> list[Table]:
    """The candidates' held-out metrics, and every finalist − baseline difference with its interval and verdict."""
    from objectives.metrics import METRICS as ALL
    labels, metrics = _labels(), list(v.get("metrics") or [])
    digits = {m: ALL[m].digits if m in ALL else ALL["kid_mean"].digits if m == "kid" else 4 for m in metrics}
    cands = v.get("candidates") or {}
    first = Table(["candidate", "trial", "search FID"] + [f"{labels.get(m, m)} (held-out)" for m in metrics], [])
    for name, c in cands.items():
        first.rows.append([f"{name} ({c.get('kind')})", str(c.get("trial")), fmt(c.get("search_fid"))]
                          + [fmt((c.get("metrics") or {}).get(m), digits[m]) for m in metrics])
        first.kinds.append("best" if name == (v.get("best") or {}).get("name") else "")
    second = Table(["finalist", "vs"] + [f"Δ{labels.get(m, m)} [{round(100 * v.get('level', .95))} % CI]"
                                                  for m in metrics] + ["verdict"], [], text=(0, 1, len(metrics) + 2))
    for c in v.get("comparisons") or []:
        cells = []
        for m in metrics:
            e = (c.get("diff") or {}).get(m)
            if e:
                est, lo, hi = fmt_group(e, 3)   # a difference and its interval: 3 digits are all it carries
                cells.append(f"{est} [{lo}, {hi}]")
            else:
                cells.append("–")
        second.rows.append([c.get("finalist", "?"), c.get("baseline", "?")] + cells
                           + [f"{c.get('verdict')}: {c.get('reason', '')}".rstrip(": ")])
        verdict = c.get("verdict", "")
        second.classes.append([""] * (len(second.headers) - 1)
                              + ["better" if verdict == "confirmed better" else "worse" if verdict == "worse" else ""])
    return [first, second]


def to_markdown(t: Table) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in t.rows]
    bold = [i for i, k in enumerate(t.kinds) if k == "best"]
    lines = ["| " + " | ".join(t.headers) + " |",
             "|" + "".join("---|" if j in t.text else "---:|" for j in range(len(t.headers)))]
    for i, row in enumerate(esc):
        if i in bold:
            row = [f"**{row[0]}**"] + row[1:]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---- the notes --------------------------------------------------------------------------------------------
def study_note(f: StudyFacts, validation: dict | None = None, pictures: dict[str, str] | None = None) -> str:
    """The study note (Markdown). `pictures`: title → URL (the dashboard's artifact URLs) shown at the end."""
    a = f.attrs
    out = [f"# {f.name}: {a.get('model', '?')}, {a.get('steps', '?')} steps, objective {a.get('objective', '?')}",
           "", summary_sentence(f, validation), "",
           f"## Best vs baselines at N = {f.n}", "", to_markdown(metrics_table(f)), ""]
    if validation:
        out += ["## Held-out validation", ""] + [to_markdown(t) + "\n" for t in validation_tables(validation)]
    out += ["## Schedules (σ: noise levels, t: U-Net timesteps; '–' where σ = 0)", "",
            to_markdown(schedules_table(f)), "", "## What the numbers mean", ""]
    out += [f"- {line}" for line in meaning(f)]
    trials = ", ".join(f"{k.lower()} {v}" for k, v in sorted(f.states.items()))
    out += [f"- Trials: {trials}.", "", "## Next", ""]
    out += [f"- {what}: `{cmd}`" for what, cmd in commands(f)]
    if pictures:
        out += ["", "## Pictures", ""]
        out += [f"**{title}**\n\n![{title}]({url})\n" for title, url in pictures.items()]
    return "\n".join(out) + "\n"


def baseline_note(r: Row, f: StudyFacts) -> str:
    """The trial note of a baseline: what it is, its schedule, how it compares with the best."""
    s, t = schedule_text(r.sigmas, r.timesteps)
    title = baseline_title(r)
    out = [f"# Baseline: {r.label}", ""] + ([f"**{title[0].upper() + title[1:]}.**", ""] if title else []) + [
           r.note or "(no description stored)", "",
           f"- config: {describe_config(r.config)}", f"- σ: {s}", f"- t: {t}"]
    if r.metrics:
        out.append(f"- at N = {r.metrics.get('n', f.n)}: " + ", ".join(
            f"{lab} {fmt(r.metrics.get(k), dg)}" for k, lab, _, dg in METRICS if r.metrics.get(k) is not None))
    else:
        reason = r.trial.user_attrs.get("fail_reason")
        out.append(f"- no result at N = {f.n} ({r.trial.state.name.lower()}{': ' + reason if reason else ''})")
    if f.best is not None and f.best.metrics and r.metrics and f.best.number != r.number:
        cells = [(lab, _delta_cell(f.best, r, k, d)) for k, lab, d, _ in METRICS]
        out.append(f"- best (trial {f.best.number}) vs this: " + ", ".join(f"{lab} {c}" for lab, c in cells
                                                                             if c != "–"))
    elif f.best is not None and f.best.number == r.number:
        out.append("- this baseline is the study's best trial")
    return "\n".join(out) + "\n"


def pruned_note(trial, f: StudyFacts) -> str:
    """The trial note of a pruned trial: its value is an FID at a smaller N, and how it compared there."""
    rows = trial.user_attrs.get("rungs") or []
    m = rows[-1] if rows else {}
    n = m.get("n") or _stopped_at(trial)
    out = [f"# Pruned at N = {n}", "",
           (f"Its value, FID {fmt(m.get('fid'))}, is measured on {n} images. FID is biased by ~1/N, so it is not "
           f"comparable with the N = {f.n} FIDs of complete trials; the pruner stopped it because it was worse "
           f"than most trials at N = {n}."), ""]
    others = [(b.label, _metrics_at(b.trial, n)) for b in f.rows if b.number != trial.number]
    others = [(lab, x["fid"]) for lab, x in others if x and x.get("fid") is not None]
    if others:
        out.append(f"At N = {n}: this trial {fmt(m.get('fid'))}; " + ", ".join(f"{lab} {fmt(v)}" for lab, v in others))
    return "\n".join(out) + "\n"


def save_notes(study, facts: StudyFacts | None = None, validation: dict | None = None,
               pictures: dict[str, str] | None = None) -> str:
    """Write the study note and a note on every baseline and every pruned trial (optuna-dashboard's note API;
    an unchanged note is not written again); returns the study note."""
    import optuna
    import optuna_dashboard
    from optuna_dashboard import save_note

    get_note = getattr(optuna_dashboard, "get_note", None)

    def put(owner, body: str) -> None:
        if get_note is None or get_note(owner) != body:
            save_note(owner, body)

    f = facts or collect(study, validation=validation)
    text = study_note(f, validation, pictures)
    put(study, text)
    for r in f.baselines:  # save_note needs a Trial bound to the study, not a FrozenTrial
        put(optuna.Trial(study, r.trial._trial_id), baseline_note(r, f))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
        if not t.user_attrs.get("baseline"):
            put(optuna.Trial(study, t._trial_id), pruned_note(t, f))
    return text
