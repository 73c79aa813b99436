"""Pictures of a study: the comparison grid, the schedules, the PRD curves, the Pareto front.

Each function draws from plain inputs (images, σ arrays, curves, points) so it can be tested alone;
`make_pictures(facts, ...)` draws all that the study and the given model/evaluator allow into one folder with
readable names (comparison.png, schedules.png, prd.png, pareto.png) and says why any picture was skipped.
Matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PICTURES",
    "Pictures",
    "comparison_grid",
    "make_pictures",
    "pareto_plot",
    "prd_plot",
    "schedule_plot",
    "study_prompts",
    "tile_size",
]

# file name → title (the order pictures are shown in)
PICTURES = {"comparison.png": "Same prompts and seeds, best vs baselines",
            "schedules.png": "Schedules: σ and U-Net timestep per step",
            "prd.png": "PRD curves (precision vs recall)",
            "pareto.png": "Pareto front: FID vs CLIP score"}
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _font(size: int):
    from PIL import ImageFont
    try:  # DejaVu ships with matplotlib and has σ, ρ, ε, Δ
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # noqa: BLE001 - any font beats none
        return ImageFont.load_default(size)


def tile_size(h: int, minimum: int = 128) -> int:
    """Tiles of at least `minimum` px: small images enlarged by a whole factor (NEAREST), others kept native."""
    return h if h >= minimum else h * math.ceil(minimum / h)


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        words, line = para.split(), ""
        for w in words:
            cand = f"{line} {w}".strip()
            if draw.textlength(cand, font=font) <= width or not line:
                line = cand
            else:
                lines.append(line)
                line = w
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip(".") + "…"
    return lines


def comparison_grid(rows: Sequence[tuple[str, Any]], captions: Sequence[str], tile: int | None = None,
                    label_width: int | None = None):
    """One row per sampler (caption on the left), one column per prompt (caption on top).

    rows: (caption, uint8 images [C, 3, H, W]) with the same C images per row, made from the same prompts and
    seeds. Returns (PIL image, layout) with layout = {rows, cols, tile, header, label_width, row_height, gap,
    width, height}; height = header + rows · row_height."""
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    cols = len(captions)
    shapes = {tuple(imgs.shape) for _, imgs in rows}
    if len(shapes) != 1 or next(iter(shapes))[0] != cols:
        raise ValueError(f"every row needs {cols} images (one per caption) of one size, got shapes {sorted(shapes)}")
    h = next(iter(shapes))[2]
    tile = tile or tile_size(h)
    fs = max(12, min(20, tile // 9))
    font = _font(fs)
    gap, pad = max(4, tile // 32), 6
    label_width = label_width or max(220, min(320, tile * 2))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cap_lines = [_wrap(probe, c, font, tile - 2 * pad, 4) for c in captions]
    line_h = fs + 4
    header = pad * 2 + line_h * max(len(c) for c in cap_lines)
    row_height = tile + gap
    width = label_width + cols * (tile + gap)
    height = header + len(rows) * row_height
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for j, lines in enumerate(cap_lines):
        x0 = label_width + j * (tile + gap)
        for k, line in enumerate(lines):
            draw.text((x0 + pad, pad + k * line_h), line, fill="#222222", font=font)
    for i, (caption, imgs) in enumerate(rows):
        y0 = header + i * row_height
        if i % 2 == 0:
            draw.rectangle((0, y0, width, y0 + row_height - 1), fill="#f3f3f3")
        lines = _wrap(probe, caption, font, label_width - 2 * pad, max(1, tile // line_h - 1))
        for k, line in enumerate(lines):
            draw.text((pad, y0 + pad + k * line_h), line, fill="#000000" if k else "#8b0000", font=font)
        for j in range(cols):
            im = Image.fromarray(imgs[j].permute(1, 2, 0).cpu().numpy())
            if im.size != (tile, tile):
                im = im.resize((tile, tile), Image.NEAREST if tile >= h else Image.BILINEAR)
            grid.paste(im, (label_width + j * (tile + gap), y0 + gap // 2))
    layout = {"rows": len(rows), "cols": cols, "tile": tile, "header": header, "label_width": label_width,
              "row_height": row_height, "gap": gap, "width": width, "height": height}
    return grid, layout


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def schedule_plot(series: Sequence[tuple[str, Sequence[float], Sequence[float] | None]], path: str | Path,
                  title: str | None = None) -> Path:
    """σ_i on a log scale (left) and U-Net timestep t_i (right) against step i, one line per (label, σ, t).

    A final σ = 0 (the classic ending) cannot sit on a log axis: it is drawn as a dashed drop to the bottom
    edge with a ▼ marker."""
    plt = _plt()
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    positive = [s for _, sig, _ in series for s in sig if s > 0]
    if not positive:
        raise ValueError("schedule_plot needs at least one positive σ")
    floor = min(positive) / 3
    zero_marked = False
    for k, (label, sig, ts) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        style = "-" if k == 0 else "--" if k % 2 else "-."
        steps = list(range(len(sig)))
        pos = [(i, s) for i, s in zip(steps, sig) if s > 0]
        ax.plot([i for i, _ in pos], [s for _, s in pos], style, marker="o", ms=4, color=color, label=label,
                lw=2 if k == 0 else 1.5)
        zeros = [i for i, s in zip(steps, sig) if s <= 0]
        for i in zeros:
            ax.plot([i - 1, i], [pos[-1][1], floor], ":", color=color, lw=1)
            ax.plot([i], [floor], "v", color=color, ms=7)
            if not zero_marked:
                ax.annotate("σ = 0", (i, floor), textcoords="offset points", xytext=(7, -3), fontsize=8)
                zero_marked = True
        if ts:
            ax_t.plot(range(len(ts)), ts, style, marker="o", ms=4, color=color, lw=2 if k == 0 else 1.5)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor * 0.8)
    ax.set(xlabel="step i (grid point; U-Net calls = points − 1)", ylabel="σ_i (log scale; ▼ = 0)")
    ax.grid(alpha=0.35, which="major")
    ax.grid(alpha=0.12, which="minor")
    ax.legend(fontsize=8, loc="upper right")
    ax_t.set(xlabel="step i (σ_i > 0)", ylabel="U-Net timestep t_i")
    ax_t.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def prd_plot(curves: dict[str, Any], path: str | Path, title: str | None = None,
             scores: dict[str, tuple[float, float]] | None = None) -> Path:
    """PRD curves (objectives.prd.PRDCurve) overlaid, with max F8 / F1/8 (`scores`, else from the curves) in a
    legend below the axes (curves of poor samplers hug the origin, where objectives.prd.plot_prd's legend sits)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    for k, (label, c) in enumerate(curves.items()):
        f8, f18 = (scores or {}).get(label) or c.f_beta(8)
        ax.plot(c.recall, c.precision, color=COLORS[k % len(COLORS)], lw=2 if k == 0 else 1.5,
                label=f"{label}: F8 = {f8:.3f} (recall), F1/8 = {f18:.3f} (precision)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall β", ylabel="precision α")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return _save(fig, path)


def pareto_plot(points: Sequence[tuple[int, float, float]], front: Sequence[int],
                baselines: Sequence[tuple[str, float, float]], path: str | Path, n: int | None = None) -> Path:
    """FID (x, lower better) vs CLIP score (y, higher better): every complete trial, the front joined as a
    staircase, the baselines as labelled stars. points: (trial number, fid, clip)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    on = set(front)
    xs = [(f, c) for t, f, c in points if t not in on]
    if xs:
        ax.scatter(*zip(*xs), s=16, color="#aaaaaa", label="trials")
    fr = sorted((f, c, t) for t, f, c in points if t in on)
    if fr:
        ax.step([f for f, _, _ in fr], [c for _, c, _ in fr], where="post", color=COLORS[0], lw=1)
        ax.scatter([f for f, _, _ in fr], [c for _, c, _ in fr], s=30, color=COLORS[0], zorder=3,
                   label="Pareto front")
        for f, c, t in fr:
            ax.annotate(f"#{t}", (f, c), textcoords="offset points", xytext=(4, 4), fontsize=7, color=COLORS[0])
    for k, (label, f, c) in enumerate(baselines):
        color = COLORS[(k + 1) % len(COLORS)]
        ax.scatter([f], [c], marker="*", s=160, color=color, edgecolor="black", zorder=4, label=label)
    ax.set(xlabel=f"FID ↓ (N = {n})" if n else "FID ↓", ylabel="CLIP score ↑")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _save(fig, path) -> Path:
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- from a study --------------------------------------------------------------------------------------
def study_prompts(attrs: dict, n: int | None = None) -> tuple[list[str], list[int]]:
    """The study's own prompts and seeds (image i: prompt_set[i mod size], seed first + i), as search.run drew
    them; ValueError when the prompt set no longer matches the hash stored in the study."""
    from objectives.prompts import load_prompts
    from search.study import prompt_hash, prompt_spec

    p, s = attrs.get("prompts") or {}, attrs.get("seeds") or {}
    if "spec" not in p or "first" not in s:
        raise ValueError("the study attribute 'hpyn' has no prompt spec or seeds (not made by search.run?)")
    prompt_set = load_prompts(prompt_spec(p["spec"]))
    total = int(p.get("n") or s.get("count") or 0)
    prompts = [prompt_set[i % len(prompt_set)] for i in range(total)]
    seeds = [int(s["first"]) + i for i in range(total)]
    if p.get("sha256") and prompt_hash(prompts, seeds) != p["sha256"]:
        raise ValueError(f"prompt set {p['spec']!r} no longer matches the study's (sha256 differs)")
    return (prompts, seeds) if n is None else (prompts[:n], seeds[:n])


def _distinct(prompts: Sequence[str], k: int) -> list[int]:
    idx, seen = [], set()
    for i, p in enumerate(prompts):
        if p not in seen:
            idx.append(i)
            seen.add(p)
        if len(idx) == k:
            break
    return idx


@dataclass
class Pictures:
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)      # name (comparison.png, ...) → path
    skipped: dict[str, str] = field(default_factory=dict)     # name → why it was not drawn (or only in part)
    layout: dict | None = None                                # of the comparison grid
    prd: dict[str, tuple[float, float]] = field(default_factory=dict)   # label → (F8, F1/8) recomputed


def _row_caption(r) -> str:
    from search.facts import describe_config, fmt
    m = r.metrics or {}
    nums = f"FID {fmt(m.get('fid'))}" + (f" · CLIP {fmt(m.get('clip_score'))}" if m.get("clip_score") else "")
    same = f"\n= baseline {r.baseline}" if r.kind != "baseline" and r.baseline else ""
    return f"{r.label} · trial {r.number}{same}\n{nums}\n{describe_config(r.config)}"


def make_pictures(facts, folder: str | Path, *, model=None, evaluator=None, prompts: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None, columns: int | None = None, prd_n: int | None = None,
                  study=None, batch_size: int = 16, prd: bool = True,
                  log: Callable[[str], None] | None = print) -> Pictures:
    """Draw every picture the inputs allow into `folder`; see the module docstring.

    model: a loaded hpyn model (comparison grid and PRD need it); evaluator: objectives.Evaluator (PRD needs its
    features and reference); prompts/seeds: the study's (default: rebuilt from the study attribute);
    columns: prompts in the grid (default 8 for images ≤ 64 px, else 4); prd_n: images per PRD curve (default the
    study's last rung, so the curves match the stored F8/F1/8); study: needed for the Pareto plot."""
    from hpyn.config import SamplerConfig

    say = log or (lambda s: None)
    out = Pictures(Path(folder))
    out.folder.mkdir(parents=True, exist_ok=True)
    rows = [r for r in facts.rows if r.config]
    if model is not None and rows and (prompts is None or seeds is None):
        try:
            prompts, seeds = study_prompts(facts.attrs)
        except (ValueError, OSError, KeyError) as e:
            prompts = seeds = None
            out.skipped["comparison.png"] = out.skipped["prd.png"] = f"cannot rebuild the study's prompts: {e}"

    # comparison grid: same prompts and seeds for every sampler
    if model is None:
        out.skipped.setdefault("comparison.png", "no model loaded (give --model / model=)")
    elif not rows:
        out.skipped.setdefault("comparison.png", "no trial with a config yet")
    elif prompts is not None:
        from hpyn.generate import generate
        res = getattr(model, "resolution", None) or 512
        k = columns or (8 if res <= 64 else 4)
        idx = _distinct(prompts, k)
        ps, ss = [prompts[i] for i in idx], [seeds[i] for i in idx]
        made = []
        for r in rows:
            imgs = generate(model, SamplerConfig.from_dict(r.config), ps, ss, batch_size=batch_size)
            made.append((_row_caption(r), imgs))
        grid, out.layout = comparison_grid(made, [f"{p}\nseed {s}" for p, s in zip(ps, ss)])
        out.files["comparison.png"] = _save_png(grid, out.folder / "comparison.png")
        say(f"  comparison grid: {len(made)} samplers x {len(ps)} prompts -> {out.files['comparison.png']}")

    # schedules
    series = [(short_label(r), r.sigmas, r.timesteps) for r in rows if r.sigmas]
    if series:
        out.files["schedules.png"] = schedule_plot(series, out.folder / "schedules.png",
                                                   title=f"{facts.name}: {facts.attrs.get('model', '')} "
                                                         f"{facts.attrs.get('steps', '')} steps")
    else:
        out.skipped["schedules.png"] = "no trial with a σ grid yet"

    # PRD: the curves the trials stored (attribute prd_curve), else recomputed from the same images
    if not prd:
        out.skipped["prd.png"] = "not asked for (--no-prd)"
    elif not rows:
        out.skipped["prd.png"] = "no trial with a config yet"
    elif "prd.png" not in out.skipped:
        _prd_picture(out, facts, rows, model, evaluator, prompts, seeds, prd_n or facts.n or 64,
                     facts.attrs.get("batch_size") or batch_size, say)

    # Pareto front (fid+clip)
    if facts.multi:
        pts = _pareto_points(study, facts) if study is not None else []
        if pts:
            base = [(b.label, b.metrics["fid"], b.metrics["clip_score"]) for b in facts.baselines
                    if b.metrics and b.metrics.get("clip_score") is not None]
            out.files["pareto.png"] = pareto_plot(pts, [r.number for r in facts.pareto], base,
                                                  out.folder / "pareto.png", n=facts.n)
        else:
            out.skipped["pareto.png"] = "no complete trial with FID and CLIP score yet"
    for name, why in out.skipped.items():
        say(f"  {name} {'in part' if name in out.files else 'skipped'}: {why}")
    return out


def _prd_picture(out: Pictures, facts, rows, model, evaluator, prompts, seeds, n: int, batch_size: int, say):
    from hpyn.config import SamplerConfig
    from search.facts import curve_from_attr

    curves, scores, missing = {}, {}, []
    can = model is not None and prompts is not None and getattr(evaluator, "extractor", None) is not None
    for r in rows:
        label, m = short_label(r), r.metrics or {}
        stored = r.trial.user_attrs.get("prd_curve")
        if stored and stored.get("n") == n:
            curves[label] = curve_from_attr(stored)
            scores[label] = (m.get("prd_f8"), m.get("prd_f1_8"))   # of the full curve, as stored
        elif can:
            # the search's chunks (one per rung; one for fid+clip) and batch size give the same pixels, so the
            # same features: k-means turns last-bit differences into F8 changes in the second decimal
            bounds = ([] if facts.multi else [b for b in facts.attrs.get("rungs") or [] if b < n]) + [n]
            imgs = _generate_in_chunks(model, SamplerConfig.from_dict(r.config), prompts, seeds, bounds, batch_size)
            curves[label] = evaluator.prd(evaluator.image_features(imgs))
            scores[label] = curves[label].f_beta(8)
            if m.get("prd_f8") is not None and n == m.get("n"):
                say(f"  PRD {label}: F8/F1/8 {scores[label][0]:.3f}/{scores[label][1]:.3f} recomputed, "
                    f"{m['prd_f8']:.3f}/{m.get('prd_f1_8', float('nan')):.3f} stored")
        else:
            missing.append(label)
    out.prd = dict(scores)
    why = ("no stored curve (trial attribute prd_curve), and recomputing one needs the model and an evaluator with "
           "a feature extractor")
    if not curves:
        out.skipped["prd.png"] = why
        return
    if missing:
        out.skipped["prd.png"] = f"{', '.join(missing)} left out: {why}"   # drawn, in part
    out.files["prd.png"] = prd_plot(curves, out.folder / "prd.png", title=f"PRD at N = {n}", scores=scores)
    say(f"  PRD curves: {len(curves)} samplers at N = {n} -> {out.files['prd.png']}")


def _generate_in_chunks(model, config, prompts, seeds, bounds: Sequence[int], batch_size: int):
    """Images [0, bounds[-1]) generated chunk by chunk ([0, b0), [b0, b1), ...) as the search's rungs did."""
    import torch

    from hpyn.generate import generate
    out, lo = [], 0
    for hi in bounds:
        out.append(generate(model, config, list(prompts[lo:hi]), list(seeds[lo:hi]), batch_size=batch_size))
        lo = hi
    return torch.cat(out)


def _pareto_points(study, facts) -> list[tuple[int, float, float]]:
    import optuna
    pts = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.values and len(t.values) == 2 and all(v is not None and math.isfinite(v) for v in t.values):
            pts.append((t.number, float(t.values[0]), float(t.values[1])))
    return pts


def _save_png(image, path: Path) -> Path:
    image.save(path, optimize=True)
    return path


def short_label(r) -> str:
    """For legends: 'best #12', 'best = paper #0', 'paper #0'."""
    same = f" = {r.baseline}" if r.kind != "baseline" and r.baseline else ""
    return f"{r.label}{same} #{r.number}"
