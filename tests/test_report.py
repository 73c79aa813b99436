"""Study note, pictures and HTML report on a small fake study (trial attributes as search/objective.py writes
them, baselines included), plus a real comparison grid drawn with the toy model."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import re

import numpy as np
import optuna
import pytest
import torch

from hpyn.config import SamplerConfig
from search.facts import collect, delta, fmt, round_floats
from search.note import study_note, summary_sentence
from search.pictures import comparison_grid, study_prompts, tile_size
from search.report import publish, render_html
from search.study import prompt_hash

optuna.logging.set_verbosity(optuna.logging.WARNING)
N = (16, 64)


def _attrs(config: SamplerConfig, table, fid: float, clip: float, n_last: int = N[-1], pruned: bool = False):
    sig = config.sigmas(table)
    rungs = [{"n": n, "fid": fid + 200.0 / n, "kid_mean": fid / 1000, "kid_std": 0.001, "clip_score": clip,
              "generate_s": 1.0, "metrics_s": 0.5} for n in N if n <= n_last]
    rungs[-1].update(prd_f8=0.9 - fid / 1000, prd_f1_8=0.8 - fid / 2000) if not pruned else None
    return {"config": config.to_dict(), "sigmas": sig.tolist(), "timesteps": table.t_of_sigma(sig[sig > 0]).tolist(),
            "rungs": rungs, "n": rungs[-1]["n"], "fid": rungs[-1]["fid"],
            "conventions": {"n": n_last, "reference": "toy", "reference_prep": "native", "n_reference": 500,
                            "extractor": "toy-classifier", "dim": 1024, "weights": "sha256-abc",
                            "clip_model": "toy-clip", "clip_score": "100*max(cos,0), mean over samples"}}


def make_study(path, multi: bool = False, baseline_curve: dict | None = None):
    from hpyn.noise import NoiseTable
    from objectives.prompts import load_prompts

    table = NoiseTable.from_betas()
    storage = f"sqlite:///{path}"
    kw = {"directions": ["minimize", "maximize"]} if multi else {"direction": "minimize"}
    study = optuna.create_study(storage=storage, study_name="fake-5", **kw)
    prompt_set = load_prompts("toy")
    prompts = [prompt_set[i % len(prompt_set)] for i in range(N[-1])]
    seeds = list(range(N[-1]))
    study.set_user_attr("hpyn", {
        "model": "toy", "steps": 5, "objective": "fid+clip" if multi else "fid", "rungs": list(N), "guidance": 2.0,
        "seed": 0, "seeds": {"first": 0, "count": N[-1], "rule": "seed·1000000 + i"},
        "prompts": {"spec": "toy", "sha256": prompt_hash(prompts, seeds), "n": N[-1], "set_size": len(prompt_set)},
        "reference": {"spec": "toy", "name": "toy", "n": 500}})
    def config(**kw):  # the schema-1 key `order` is read by every SamplerConfig version
        return SamplerConfig.from_dict({"steps": 5, "guidance": 2.0, **kw})
    paper = config(spacing="time", rho=1.2, final="residual", epsilon=0.132)
    classic = config(spacing="karras", rho=7.0, final="zero", order=2)
    best = config(spacing="time", rho=1.6, final="residual", epsilon=0.3, order=2)
    worse = config(spacing="karras", rho=3.0, final="zero")
    C, P = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    specs = [(paper, 40.0, 20.0, {"baseline": "paper", "baseline_note": "the paper's 5-step setting"}, C),
             (classic, 30.0, 21.0, {"baseline": "dpmpp2m-karras", "baseline_note": "DPM-Solver++2M, Karras ρ=7"}, C),
             (best, 24.0, 20.5, {}, C), (worse, 90.0, 19.0, {}, P), (paper.replace(rho=1.4), 26.0, 20.1, {}, C)]
    for config, fid, clip, extra, state in specs:
        pruned = state == P
        attrs = {**_attrs(config, table, fid, clip, N[0] if pruned else N[-1], pruned), **extra}
        if baseline_curve and "baseline" in extra:
            attrs["prd_curve"] = baseline_curve
        values = None if pruned else ([attrs["fid"], clip] if multi else [attrs["fid"]])
        if multi and pruned:
            continue
        inter = {} if multi else {r["n"]: r["fid"] for r in attrs["rungs"]}
        study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs,
                                                  intermediate_values=inter))
    return study, storage


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "s.db")


def test_numbers_are_rounded_and_deltas_signed():
    assert round_floats({"a": [0.123456789, 12345.6789], "b": (1e-7 / 3,), "c": True, "d": 3}, 3) == \
        {"a": [0.123, 12300.0], "b": (3.33e-08,), "c": True, "d": 3}
    assert fmt(23.456789) == "23.46" and fmt(0.0123456, 3) == "0.0123" and fmt(None) == "–"
    assert delta(24.0, 30.0, -1) == pytest.approx((-20.0, True))     # lower FID: better
    assert delta(19.0, 20.0, +1) == pytest.approx((-5.0, False))     # lower CLIP: worse


def test_the_note_compares_the_best_with_every_baseline(study):
    study, storage = study
    f = collect(study, storage=storage)
    assert f.best.number == 2 and [b.label for b in f.baselines] == ["paper", "dpmpp2m-karras"]
    assert f.pruned_at == {16: 1} and f.states == {"COMPLETE": 4, "PRUNED": 1}
    note = study_note(f)
    table = note.split("## Best vs baselines at N = 64")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "· trial" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| **best · trial 2**", "| paper · trial 0",
                                                  "| dpmpp2m-karras · trial 1"]
    assert all(r.split(" | ")[1] == "64" for r in rows)   # the N column
    # Δ rows: best FID 24 + 200/64 vs paper 40 + 200/64
    paper_delta = 100 * (24 - 40) / (40 + 200 / 64)
    assert f"| Δ best vs paper |  | {paper_delta:+.1f} % better" in note
    assert "| Δ best vs dpmpp2m-karras |" in note
    assert "Pruned trials** (1 at N = 16)" in note and "toy-classifier" in note
    assert "python -m search.export --storage" in note and "--study fake-5 --out best.json" in note
    sentence = summary_sentence(f)
    assert sentence.startswith("Trial 2 is the best: FID 27.12 at N = 64") and "lower than paper" in sentence
    assert "Not validated" in sentence
    # the schedules, rounded: 4 significant digits of σ
    sig = study.trials[2].user_attrs["sigmas"]
    assert fmt(sig[0]) in note and repr(sig[0]) not in note


def test_notes_are_saved_for_the_study_and_every_baseline(study):
    from optuna_dashboard._note import get_note_from_system_attrs

    study, _ = study
    from search.note import save_notes
    save_notes(study)
    sys_attrs = study._storage.get_study_system_attrs(study._study_id)
    assert "Best vs baselines at N = 64" in get_note_from_system_attrs(sys_attrs, None)["body"]
    for t in study.trials[:2]:
        body = get_note_from_system_attrs(sys_attrs, t._trial_id)["body"]
        assert body.startswith(f"# Baseline: {t.user_attrs['baseline']}")
        assert t.user_attrs["baseline_note"] in body and "best (trial 2) vs this: FID" in body
    assert get_note_from_system_attrs(sys_attrs, study.trials[2]._trial_id)["body"] == ""
    pruned = get_note_from_system_attrs(sys_attrs, study.trials[3]._trial_id)["body"]
    assert pruned.startswith("# Pruned at N = 16") and "not comparable with the N = 64 FIDs" in pruned
    assert "At N = 16: this trial 102.5; best 36.50, paper 52.50, dpmpp2m-karras 42.50" in pruned
    save_notes(study)   # unchanged notes are not written again
    again = study._storage.get_study_system_attrs(study._study_id)
    assert {k: v for k, v in again.items() if "note" in k} == {k: v for k, v in sys_attrs.items() if "note" in k}



def test_comparison_grid_has_one_row_per_sampler_and_captions():
    rng = np.random.default_rng(0)
    rows = [(f"sampler {i}\nFID {i}", torch.from_numpy(rng.integers(0, 255, (3, 3, 32, 32), dtype=np.uint8)))
            for i in range(4)]
    grid, lay = comparison_grid(rows, ["a sneaker", "a bag", "a very long caption " * 5])
    assert lay["tile"] == tile_size(32) == 128 and lay["rows"] == 4 and lay["cols"] == 3
    assert grid.size == (lay["width"], lay["height"])
    assert lay["height"] == lay["header"] + 4 * lay["row_height"] and lay["row_height"] >= 128
    # tile (r, c) shows image c of row r enlarged without smoothing
    img = np.asarray(grid)
    r, c = 2, 1
    y0 = lay["header"] + r * lay["row_height"] + lay["gap"] // 2
    x0 = lay["label_width"] + c * (lay["tile"] + lay["gap"])
    tile = img[y0:y0 + 128, x0:x0 + 128]
    assert np.array_equal(tile[::4, ::4], rows[r][1][c].permute(1, 2, 0).numpy())
    assert img[: lay["header"], lay["label_width"]:].min() < 100   # caption text drawn in the header
    assert tile_size(512) == 512 and tile_size(100) == 200
    with pytest.raises(ValueError, match="every row needs 2 images"):
        comparison_grid(rows, ["x", "y"])


class PixelEvaluator:
    """PRD on mean-pooled pixels against a fixed random reference (stands in for objectives.Evaluator)."""

    extractor = "pixels"

    def __init__(self):
        self.ref = torch.rand(64, 48, generator=torch.Generator().manual_seed(0))

    def image_features(self, images):
        return torch.nn.functional.avg_pool2d(images.float() / 255, 8).flatten(1)

    def prd(self, features):
        from objectives.prd import prd_from_features
        n = min(len(features), len(self.ref))
        return prd_from_features(features[:n], self.ref[:n], num_clusters=5, num_runs=2)


@pytest.fixture(scope="module")
def toy_model():
    from hpyn.models import load_model
    return load_model("toy", device="cpu")


def test_publish_with_the_toy_model_draws_every_picture_uploads_and_notes(tmp_path, toy_model):
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta

    study, storage = make_study(tmp_path / "s.db")
    prompts, seeds = study_prompts(study.user_attrs["hpyn"])
    assert len(prompts) == N[-1] and seeds[:3] == [0, 1, 2]
    (tmp_path / "art").mkdir()
    store = FileSystemArtifactStore(str(tmp_path / "art"))
    logs = []
    pub = publish(study, model=toy_model, evaluator=PixelEvaluator(), out_dir=tmp_path / "pics", artifact_store=store,
                  storage_url=storage, log=logs.append)
    assert pub.errors == {}
    p = pub.pictures
    assert set(p.files) == {"comparison.png", "schedules.png", "prd.png"} and "pareto.png" not in p.skipped
    lay = p.layout
    assert lay["rows"] == 3 and lay["cols"] == 8 and lay["tile"] == 128   # best + 2 baselines; 32 px → 128 px
    from PIL import Image
    assert Image.open(p.files["comparison.png"]).size == (lay["width"], lay["height"])
    assert set(p.prd) == {"best #2", "paper #0", "dpmpp2m-karras #1"}
    names = sorted(m.filename for m in get_all_artifact_meta(study))
    assert names == ["comparison.png", "prd.png", "report.html", "schedules.png"]
    assert "/artifacts/" in pub.note and "![Same prompts and seeds" in pub.note
    # publishing again uploads nothing new (same bytes)
    again = publish(study, model=toy_model, evaluator=PixelEvaluator(), out_dir=tmp_path / "pics",
                    artifact_store=store, storage_url=storage, log=None)
    assert again.artifacts["comparison.png"] == pub.artifacts["comparison.png"]
    assert again.artifacts["prd.png"] == pub.artifacts["prd.png"]
    n_html = 1 + (again.artifacts["report.html"] != pub.artifacts["report.html"])   # its footer has the time
    assert len(get_all_artifact_meta(study)) == 3 + n_html
    _check_html(pub.html.read_text(), n_images=3)


def test_without_a_model_the_pictures_that_need_one_are_skipped_with_a_reason(study, tmp_path):
    study, storage = study
    pub = publish(study, out_dir=tmp_path / "pics", storage_url=storage, notes=False, log=None)
    assert set(pub.pictures.files) == {"schedules.png"} and "no stored curve" in pub.pictures.skipped["prd.png"]
    assert "no model loaded" in pub.pictures.skipped["comparison.png"]
    page = pub.html.read_text()
    _check_html(page, n_images=1)
    assert "not drawn (no model loaded" in page


def test_multi_objective_study_gets_a_pareto_plot(tmp_path):
    study, storage = make_study(tmp_path / "m.db", multi=True)
    f = collect(study)
    assert f.multi and f.pareto and f.best.label == "best FID on the front"
    pub = publish(study, out_dir=tmp_path / "pics", storage_url=storage, notes=False, log=None)
    assert "pareto.png" in pub.pictures.files


def validation_summary_of(study):
    """A summary in the shape search.validate.validation_summary returns (trial 2 and 3 finalists)."""
    return {"n": 256, "level": 0.95, "resamples": 1000, "top": 2, "metrics": ["fid", "kid", "fd_toy-classifier"],
            "sets": {"reference": {"spec": "toy", "indices": [500, 1000], "disjoint": True}},
            "candidates": {"trial-2": {"trial": 2, "kind": "finalist", "rank": 1, "search_fid": 27.125,
                                       "metrics": {"fid": 30.5, "kid": 0.021, "fd_toy-classifier": 3.1}},
                           "trial-4": {"trial": 4, "kind": "finalist", "rank": 2, "search_fid": 29.1,
                                        "metrics": {"fid": 31.0, "kid": 0.022, "fd_toy-classifier": 3.3}},
                           "paper": {"trial": 0, "kind": "baseline", "rank": None, "search_fid": 43.1,
                                     "metrics": {"fid": 41.0, "kid": 0.04, "fd_toy-classifier": 5.0}}},
            "comparisons": [{"finalist": "trial-2", "baseline": "paper", "verdict": "confirmed better",
                             "reason": "FID interval below 0", "diff": {"fid": [-10.5, -12.0, -9.1],
                                                                          "kid": [-0.019, -0.03, -0.01],
                                                                          "fd_toy-classifier": [-1.9, -2.5, -1.2]}}],
            "best": {"name": "trial-2", "trial": 2, "kind": "finalist", "fid": 30.5,
                     "confirmed_better_than": ["paper"], "confirmed": True}, "stale": False}


def test_validation_summary_is_rendered_when_given(study, tmp_path):
    study, _ = study
    val = validation_summary_of(study)
    f = collect(study, validation=val)
    assert [(r.label, r.number) for r in f.rows] == [("best", 2), ("finalist 2", 4), ("paper", 0),
                                                     ("dpmpp2m-karras", 1)]
    note = study_note(f, validation=val)
    assert "## Held-out validation" in note
    assert "| trial-2 | paper | -10.5 [-12.0, -9.1] | -0.0190 [-0.0300, -0.0100] | -1.90 [-2.50, -1.20] | " \
           "confirmed better: FID interval below 0 |" in note
    assert "| **trial-2 (finalist)** | 2 | 27.12 | 30.50 | 0.0210 | 3.100 |" in note
    sentence = summary_sentence(f, val)
    assert "Held-out validation on N = 256 new images" in sentence and "confirmed better than paper" in sentence
    assert "Not validated" not in sentence
    page = render_html(f, None, val)
    _check_html(page, n_images=0)
    assert '<td class="l better">confirmed better: FID interval below 0</td>' in page


class _Checker(html.parser.HTMLParser):
    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self):
        super().__init__()
        self.stack, self.srcs, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
            if not a.get("alt"):
                self.errors.append("img without alt")
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.errors.append(f"external {tag}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _check_html(page: str, n_images: int):
    assert page.startswith("<!DOCTYPE html>")
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == [] and c.stack == []
    assert len(c.srcs) == n_images
    from PIL import Image
    for src in c.srcs:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"(src|href)=['\"]https?:", page)
    try:
        import html5lib
    except ImportError:
        return
    html5lib.HTMLParser(strict=True).parse(page)


def test_command_line_writes_one_self_contained_page(study, tmp_path, capsys):
    from search.report import main

    _, storage = study
    out = tmp_path / "r" / "report.html"
    assert main(["--storage", storage, "--study", "fake-5", "--model", "none", "--out", str(out),
                 "--pictures", str(tmp_path / "pics")]) == 0
    page = out.read_text()
    _check_html(page, n_images=1)   # the schedules; comparison grid and PRD need a model
    assert "Trial 2 is the best" in page and "<td class=\"num\">27.12</td>" in page
    capsys.readouterr()
    assert main(["--storage", storage, "--study", "nope", "--model", "none"]) == 2
    err = capsys.readouterr().err
    assert "--study 'nope': no such study" in err and "fake-5" in err


def test_attributes_over_the_dashboard_limit_are_found(study):
    from search.facts import oversized_attrs

    study, _ = study
    assert oversized_attrs(study) == []
    study.set_user_attr("long", {"x": "a" * 1100})
    study.set_user_attr("long_text", "a" * 5000)   # strings are shown whole
    assert oversized_attrs(study) == [("study", "long", len('{"x": ""}') + 1100)]


def test_the_study_prompts_are_checked_against_the_stored_hash(study):
    study, _ = study
    attrs = dict(study.user_attrs["hpyn"])
    prompts, seeds = study_prompts(attrs, 4)
    assert len(prompts) == 4 and seeds == [0, 1, 2, 3]
    attrs["prompts"] = {**attrs["prompts"], "sha256": "0" * 64}
    with pytest.raises(ValueError, match="no longer matches"):
        study_prompts(attrs)


def test_configs_read_well():
    from search.facts import describe_config

    assert describe_config({"steps": 5, "solver": "dpmpp_2m", "spacing": "karras", "rho": 7.0, "final": "zero",
                            "sigma_min": None, "guidance": 7.5, "freeu": [{"start": 0, "end": 2}]}) == \
        "5 steps, dpmpp_2m, karras ρ=7.00, zero ending σ_min=model, guidance 7.50, FreeU [0,2)"
    assert describe_config({"steps": 8, "solver": "dpmpp_2m", "spacing": "ays", "rho": 1.0, "final": "zero",
                            "guidance": 2.0, "guidance_interval": [0.28, 5.42]}) == \
        "8 steps, dpmpp_2m, ays, ends at 0 by its own rule, guidance 2.00, guidance only for σ in (0.280, 5.42]"
    assert describe_config({"steps": 5, "order": 3, "spacing": "time", "rho": 1.2, "final": "residual",
                            "epsilon": 0.132, "guidance": 2.0}).startswith("5 steps, dpmpp_3m, time ρ=1.20, residual")


def test_study_settings_split_under_the_dashboard_limit_and_merge_back():
    from search.facts import split_settings, study_settings

    settings = {"model": "toy", "steps": 5, "space": {f"dim{i}": [0.5, 3.0, "log"] for i in range(20)},
                "versions": {f"package{i}": "1.2.3" for i in range(30)}, "rungs": [32, 128]}
    parts = split_settings(settings)
    assert set(parts) == {"hpyn", "hpyn:versions"}   # the largest entry moved out, the rest fits
    assert all(len(json.dumps(v)) <= 1024 for v in parts.values())
    assert study_settings({**parts, "worker_starts": 3}) == settings
    assert split_settings({"model": "toy"}) == {"hpyn": {"model": "toy"}}
    with pytest.raises(ValueError, match="'space' alone is"):
        split_settings({"space": "x" * 2000})


def test_stored_prd_curves_are_drawn_without_a_model(tmp_path):
    from objectives.prd import prd_from_histograms
    from search.facts import curve_from_attr, prd_curve_attr
    from objectives.prd import PRDCurve

    p, r = prd_from_histograms(np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5]))
    attr = prd_curve_attr(PRDCurve(p, r), n=64)
    assert len(attr["precision"]) == 41 and attr["n"] == 64 and len(json.dumps(attr)) < 1024
    back = curve_from_attr(attr)
    assert back.f_beta(8) == pytest.approx(PRDCurve(p, r).f_beta(8), abs=0.02)   # thinned, 3 decimals

    study, storage = make_study(tmp_path / "s.db", baseline_curve=attr)   # the best stores none
    pub = publish(study, out_dir=tmp_path / "pics", storage_url=storage, notes=False, log=None)
    assert "prd.png" in pub.pictures.files and set(pub.pictures.prd) == {"paper #0", "dpmpp2m-karras #1"}
    assert pub.pictures.prd["paper #0"] == pytest.approx((0.86, 0.78))   # the stored scores of the full curve
    assert "best #2 left out" in pub.pictures.skipped["prd.png"]
    assert "best #2 left out" in pub.html.read_text()
