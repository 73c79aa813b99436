"""A study's result in words: best vs every baseline, the schedules, what the numbers mean, the next commands.

From the facts of search/facts.py: `study_note` writes Markdown for optuna-dashboard's study note, `save_notes`
stores it with a note on each baseline and each pruned trial through `optuna_dashboard.save_note`; the tables are
built once (`Table`) and rendered here as Markdown and in search/report.py as HTML. Numbers are compared only at
equal N: FID is biased by ~1/N, so a pruned trial's value (its FID at the rung where it stopped) is not comparable
with a finished trial's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from search.facts import (
    METRICS,
    Row,
    StudyFacts,
    baseline_title,
    collect,
    delta,
    delta_cell,
    describe_config,
    fmt,
    fmt_group,
    metrics_at,
    row_label,
    schedule_text,
    stopped_at,
)

__all__ = ["Table", "baseline_note", "commands", "meaning", "metrics_table", "pruned_note", "save_notes",
           "schedules_table", "study_note", "summary_sentence", "to_markdown", "validation_sentence",
           "validation_tables"]


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
        lines.append(f"**Pruned trials** ({at}): their value is the FID at the rung where they stopped (attributes "
                     "`pruned_at_n` and `n`), at a smaller N than the finished trials' and so biased high: do not compare it with "
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
            cells = [delta_cell(f.best, base, k, d) for k, _, d, _ in METRICS]
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
        cells = [(lab, delta_cell(f.best, r, k, d)) for k, lab, d, _ in METRICS]
        out.append(f"- best (trial {f.best.number}) vs this: " + ", ".join(f"{lab} {c}" for lab, c in cells
                                                                             if c != "–"))
    elif f.best is not None and f.best.number == r.number:
        out.append("- this baseline is the study's best trial")
    return "\n".join(out) + "\n"


def pruned_note(trial, f: StudyFacts) -> str:
    """The trial note of a pruned trial: its value is an FID at a smaller N, and how it compared there."""
    rows = trial.user_attrs.get("rungs") or []
    m = rows[-1] if rows else {}
    n = m.get("n") or stopped_at(trial)
    out = [f"# Pruned at N = {n}", "",
           (f"Its value, FID {fmt(m.get('fid'))}, is measured on {n} images. FID is biased by ~1/N, so it is not "
            f"comparable with the N = {f.n} FIDs of complete trials. The pruner stopped it there, comparing it "
            f"with the other trials' FIDs at N = {n}."), ""]
    others = [(b.label, metrics_at(b.trial, n)) for b in f.rows if b.number != trial.number]
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
