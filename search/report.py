"""A study's result where people look: `publish(study, ...)` at the end of a run, `python -m search.report` later.

`publish` draws the pictures (search/pictures.py) into `studies/<study>/`, uploads them as study artifacts,
writes the study note and the baseline trial notes (search/note.py) for optuna-dashboard, and writes
`report.html` beside the pictures. `python -m search.report --study NAME --out report.html` writes the same
page for people who do not run the dashboard: one self-contained HTML file, its images embedded as data URIs.

    python -m search.report --study toy-5 --out report.html
    python -m search.report --storage sqlite:////data/hpyn.db --study sd15-5 --model none --out sd15-5.html
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from search.facts import StudyFacts, baseline_title, collect
from search.note import (
    Table,
    commands,
    meaning,
    metrics_table,
    save_notes,
    schedules_table,
    summary_sentence,
    validation_tables,
)
from search.pictures import PICTURES, Pictures, make_pictures

__all__ = ["Published", "default_folder", "main", "publish", "render_html", "upload_pictures"]


def default_folder(storage_url: str | None, study_name: str) -> Path:
    """`<folder of the SQLite file>/<study>/` (studies/<study>/ for the default storage), else studies/<study>/."""
    from search.storage import artifact_dir
    base = artifact_dir(storage_url).parent if storage_url else Path("studies")
    return base / re.sub(r"[/\\:]", "_", study_name)


@dataclass
class Published:
    facts: StudyFacts
    pictures: Pictures | None = None
    note: str | None = None
    html: Path | None = None
    artifacts: dict[str, str] = field(default_factory=dict)   # file name → artifact id
    errors: dict[str, str] = field(default_factory=dict)      # stage → what went wrong (publish never raises)


def publish(study, *, model=None, evaluator=None, out_dir: str | Path | None = None, artifact_store=None,
            validation: dict | None = None, storage_url: str | None = None, prompts=None, seeds=None,
            notes: bool = True, batch_size: int = 16, prd: bool = True, log: Callable[[str], None] | None = print) -> Published:
    """Pictures → study artifacts → study and baseline notes → report.html. Call at the end of a run (and of
    validation); with the run's loaded `model` and `evaluator` the comparison grid and the PRD curves are drawn
    too. Failures are logged and returned in `.errors`, never raised: a finished study must not fail here."""
    from search.storage import redact

    say = log or (lambda s: None)
    shown = redact(storage_url) if storage_url else None
    out = Published(collect(study, storage=shown, validation=validation))
    folder = Path(out_dir) if out_dir is not None else default_folder(storage_url, study.study_name)
    say(f"publishing study {study.study_name!r} to {folder}/")
    try:
        out.pictures = make_pictures(out.facts, folder, model=model, evaluator=evaluator, prompts=prompts,
                                     seeds=seeds, study=study, batch_size=batch_size, prd=prd, log=log)
    except Exception as e:  # noqa: BLE001 - see docstring
        out.errors["pictures"] = f"{type(e).__name__}: {e}"
    urls: dict[str, str] = {}
    if artifact_store is not None and out.pictures is not None:
        try:
            out.artifacts = upload_pictures(study, out.pictures, artifact_store)
            from optuna_dashboard.artifact import get_artifact_path
            urls = {PICTURES.get(name, name): get_artifact_path(study, aid) for name, aid in out.artifacts.items()
                    if name.endswith(".png")}
        except Exception as e:  # noqa: BLE001
            out.errors["artifacts"] = f"{type(e).__name__}: {e}"
    if notes:
        try:
            out.note = save_notes(study, out.facts, validation, urls)
        except Exception as e:  # noqa: BLE001
            out.errors["notes"] = f"{type(e).__name__}: {e}"
    try:
        out.html = folder / "report.html"
        folder.mkdir(parents=True, exist_ok=True)
        out.html.write_text(render_html(out.facts, out.pictures, validation), encoding="utf-8")
        if artifact_store is not None:
            out.artifacts.update(upload_pictures(study, Pictures(folder, {"report.html": out.html}),
                                                 artifact_store))
        say(f"  report: {out.html}")
    except Exception as e:  # noqa: BLE001
        out.errors["html"] = f"{type(e).__name__}: {e}"
    for stage, err in out.errors.items():
        say(f"  warning: {stage} not published: {err}")
    return out


def upload_pictures(study, pictures: Pictures, artifact_store) -> dict[str, str]:
    """Upload each file as a study artifact unless one with the same name and bytes is there; name → id."""
    from optuna.artifacts import get_all_artifact_meta, upload_artifact

    existing = {}
    for meta in get_all_artifact_meta(study):
        existing.setdefault(meta.filename, []).append(meta.artifact_id)
    ids = {}
    for name, path in pictures.files.items():
        data = Path(path).read_bytes()
        same = next((aid for aid in existing.get(name, []) if _read(artifact_store, aid) == data), None)
        ids[name] = same or upload_artifact(artifact_store=artifact_store, file_path=str(path), study_or_trial=study,
                                            mimetype="text/html" if name.endswith(".html") else "image/png")
    return ids


def _read(store, artifact_id: str) -> bytes | None:
    try:
        with store.open_reader(artifact_id) as f:
            return f.read()
    except Exception:  # noqa: BLE001 - a missing or unreadable old artifact is simply not reused
        return None


# ---- HTML ----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1240px;
padding:24px;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;margin:0 0 14px}
.verdict{font-size:1.12em;background:#eef5ff;border-left:5px solid #1f77b4;padding:10px 14px;margin:12px 0}
table{border-collapse:collapse;margin:6px 0;font-size:.93em}
th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.l,th.l{text-align:left}
tr.best td{background:#fff7e0}tr.delta td{color:#444;font-size:.92em}
td.better{color:#176b1d}td.worse{color:#a11}
td.mono{font-family:ui-monospace,Consolas,monospace;font-size:.86em;max-width:420px}
td.num{white-space:nowrap}
figure{margin:14px 0}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figure.narrow img{max-width:560px}code{font-size:.92em}
figcaption{color:#444;font-size:.92em;margin-top:4px}
.skip{color:#777;font-style:italic}
pre{background:#f6f6f6;padding:8px 10px;overflow-x:auto;font-size:.88em}
footer{color:#888;font-size:.85em;margin-top:30px}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _inline(md: str) -> str:
    """The few inline Markdown marks note.py uses (**bold**, *italic*, `code`) as HTML, everything else escaped."""
    s = _e(md)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", s)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _table(t: Table) -> str:
    """A note.Table as HTML (text columns left-aligned, numbers right-aligned; best/Δ rows and verdicts coloured)."""
    head = "".join(('<th class="l">' if j in t.text else "<th>") + f"{_e(h)}</th>" for j, h in enumerate(t.headers))
    out = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for i, row in enumerate(t.rows):
        kind = t.kinds[i] if i < len(t.kinds) else ""
        classes = t.classes[i] if i < len(t.classes) else []
        cells = []
        for j, c in enumerate(row):
            cls = " ".join(x for x in ("l" if j in t.text else "num", "mono" if j in t.mono else "",
                                       classes[j] if j < len(classes) else "") if x)
            text = f"<strong>{_e(c)}</strong>" if j == 0 and kind == "best" else _e(c)
            cells.append(f'<td class="{cls}">{text}</td>')
        out.append((f'<tr class="{kind}">' if kind else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(f: StudyFacts, pictures: Pictures | None = None, validation: dict | None = None) -> str:
    """The report page: verdict sentence, metrics table, (validation), pictures, schedules, meaning, commands."""
    a = f.attrs
    sub = (f"model <strong>{_e(a.get('model', '?'))}</strong>, {_e(a.get('steps', '?'))} steps, objective "
           f"{_e(a.get('objective', '?'))}, rungs {_e(a.get('rungs', '?'))}, guidance {_e(a.get('guidance', '?'))}"
           + (f", created {_e(a['created'])}" if a.get("created") else ""))
    body = [f"<h1>Study {_e(f.name)}</h1>", f"<p class='sub'>{sub}</p>",
            f"<p class='verdict'>{_inline(summary_sentence(f, validation))}</p>",
            f"<h2>Best vs baselines at N = {_e(f.n)}</h2>", _table(metrics_table(f))]
    if validation:
        body += ["<h2>Held-out validation</h2>"] + [_table(t) for t in validation_tables(validation)]
    body.append("<h2>Pictures</h2>")
    if pictures is None:
        body.append("<p class='skip'>No pictures (they could not be drawn; see the log).</p>")
    else:
        for name, title in PICTURES.items():
            if name in pictures.files:
                cap = _caption(name, f, pictures) + (f" ({pictures.skipped[name]})" if name in pictures.skipped
                                                      else "")
                narrow = " class='narrow'" if name in ("prd.png", "pareto.png") else ""
                body.append(f"<figure{narrow}><img src='{_data_uri(pictures.files[name])}' alt='{_e(title)}'>"
                            f"<figcaption><strong>{_e(title)}.</strong> {_e(cap)}</figcaption></figure>")
            elif name in pictures.skipped and not (name == "pareto.png" and not f.multi):
                body.append(f"<p class='skip'>{_e(title)}: not drawn ({_e(pictures.skipped[name])}).</p>")
    body += ["<h2>Schedules (σ: noise levels, t: U-Net timesteps; – where σ = 0)</h2>", _table(schedules_table(f)),
             "<h2>What the numbers mean</h2>", "<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in meaning(f))
             + f"<li>Trials: {_e(', '.join(f'{k.lower()} {v}' for k, v in sorted(f.states.items())))}.</li></ul>"]
    if f.baselines:
        body.append("<h2>Baselines</h2><ul>" + "".join(
            f"<li><strong>{_e(b.label)}</strong> (trial {b.number}): "
            + (f"{_e(baseline_title(b))}; " if baseline_title(b) else "")
            + f"{_e(b.note or 'no description stored')}</li>"
            for b in f.baselines) + "</ul>")
    body.append("<h2>Next</h2>")
    body += [f"<p>{_e(what)}:</p><pre><code>{_e(cmd)}</code></pre>" for what, cmd in commands(f)]
    body.append(f"<footer>Written by <code>python -m search.report</code> on "
                f"{_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}"
                + (f" from {_e(f.storage)}" if f.storage else "") + ".</footer>")
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>hpyn study {_e(f.name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _caption(name: str, f: StudyFacts, p: Pictures) -> str:
    if name == "comparison.png":
        lay = p.layout or {}
        return (f"Rows: samplers (best first, then the baselines); columns: prompts, the same prompt and seed in "
                f"every row. Tiles {lay.get('tile', '?')} px" + (" (small images enlarged without smoothing)."
                                                                 if lay.get("tile", 0) > 64 else "."))
    if name == "schedules.png":
        return "Left: σ per grid point on a log scale (▼: the jump to σ = 0 of a classic ending); right: U-Net t."
    if name == "prd.png":
        return ("The curves the trials stored, or recomputed from the same N images (prompts, seeds, rung chunks) "
                "and reference as the search (with the run's batch size their F8 / F1/8 equal the table's). Curves "
                "further up and right are better; F8 weighs recall, F1/8 precision.")
    return "Grey: trials; red: the Pareto front (FID ↓, CLIP ↑); stars: the baselines."


# ---- command line ------------------------------------------------------------------------------------
def load_for_pictures(facts: StudyFacts, model_name: str | None, prd: bool, device=None, say=print):
    """The study's model and (for PRD) an Evaluator with the study's reference and extractor."""
    from hpyn.models import load_model
    name = model_name or facts.attrs.get("model")
    if not name:
        raise ValueError("the study does not name its model; give --model NAME")
    t = time.perf_counter()
    model = load_model(name, device=device)
    say(f"loaded model {name} in {time.perf_counter() - t:.1f}s")
    evaluator = None
    ref = facts.attrs.get("reference") or {}
    if prd and ref.get("spec"):
        from objectives.evaluate import Evaluator
        from objectives.features import EXTRACTORS
        from search.study import reference_spec
        name = facts.conventions.get("extractor") or ""
        name = name if name in EXTRACTORS else name.split("/")[0]   # stored as NAME/LAYER, e.g. .../pool3
        kw = {"extractor": name} if name in EXTRACTORS else {}
        try:
            evaluator = Evaluator(reference=reference_spec(ref["spec"]), clip=None, metrics=("prd",),
                                  device=device, n_reference=ref.get("n"), **kw)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            say(f"warning: no PRD curves: cannot build the study's evaluator ({type(e).__name__}: {e})")
    return model, evaluator


def _validation_of(study) -> dict | None:
    """The study's held-out validation summary (search.validate, issue 10) when that stage exists and ran."""
    try:
        from search.validate import validation_summary
    except ImportError:
        return None
    try:
        return validation_summary(study)
    except Exception as e:  # noqa: BLE001 - the report is still worth having without it
        print(f"warning: cannot read the validation summary ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="study name (see optuna-dashboard or search.run's output)")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL (default sqlite:///studies/hpyn.db)")
    p.add_argument("--out", default=None, help="HTML file to write (default: report.html in the pictures folder)")
    p.add_argument("--pictures", default=None, help="folder for the PNGs (default studies/<study>/ beside the DB)")
    p.add_argument("--model", default=None, help="model for the comparison grid and PRD curves (default: the "
                                                 "study's); 'none' draws only what needs no model")
    p.add_argument("--no-prd", action="store_true", help="skip the PRD curves (they regenerate N images per sampler)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per generation batch; the run's --batch-size reproduces its PRD values exactly "
                        "(default 16; the study's own when it stores one)")
    p.add_argument("--validation", default=None, help="a JSON file with a validation summary to include")
    p.add_argument("--save-note", action="store_true", help="also write the dashboard notes and upload the pictures "
                                                            "(what search.run does at the end)")
    return p


def main(argv=None) -> int:
    import optuna

    from search.storage import (
        DEFAULT_STORAGE,
        artifact_dir,
        artifact_store,
        check_url,
        redact,
    )
    args = build_parser().parse_args(argv)
    url = args.storage or DEFAULT_STORAGE
    try:
        parsed = check_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database).expanduser().is_file():
            raise ValueError(f"--storage {url!r}: no such database file {parsed.database!r}")
        try:
            study = optuna.load_study(study_name=args.study, storage=url)
        except KeyError:
            names = optuna.get_all_study_names(storage=url)
            raise ValueError(f"--study {args.study!r}: no such study in {redact(url)}; studies there: {names}") \
                from None
        validation = None
        if args.validation:
            validation = json.loads(Path(args.validation).read_text())
        else:
            validation = _validation_of(study)
        facts = collect(study, storage=redact(url), validation=validation)
        model = evaluator = None
        if (args.model or "").lower() != "none" and facts.rows:
            model, evaluator = load_for_pictures(facts, args.model, not args.no_prd, args.device)
        folder = Path(args.pictures) if args.pictures else default_folder(url, args.study)
        store = artifact_store(artifact_dir(url)) if args.save_note else None
        pub = publish(study, model=model, evaluator=evaluator, out_dir=folder, artifact_store=store,
                      validation=validation, storage_url=url, notes=args.save_note, batch_size=args.batch_size,
                      prd=not args.no_prd)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if pub.html is None or "html" in pub.errors:
        print(f"error: the report could not be written: {pub.errors}", file=sys.stderr)
        return 1
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(pub.html.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {Path(args.out) if args.out else pub.html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
