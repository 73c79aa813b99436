"""search.validate: held-out sets disjoint from the search's, checks before generation, resume after a kill, the
study record, verdict rules. A small study on the tiny pipeline with cheap stand-in extractors (seconds)."""
import json

import numpy as np
import optuna
import pytest
import torch

from objectives.bootstrap import Interval
from objectives.features import Extractor
from search import validate as V

N_SEARCH, N_REF_SEARCH = 16, 40


def _config(**kw):
    from hpyn.config import SamplerConfig
    return SamplerConfig(steps=3, **kw).to_dict()


def make_study(tmp_path, *, seed=0, n_search=N_SEARCH, ref_images=120, prompts="builtin", trials=True, name="tiny-3"):
    """A finished-looking study: search.run's `hpyn` attribute, 3 complete trials, 2 baselines, 1 pruned trial."""
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=rng.integers(0, 256, (ref_images, 3, 16, 16), dtype=np.uint8))
    from objectives.references import load_reference
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 's.db'}")
    study.set_user_attr("hpyn", {
        "model": "tiny", "model_source": "tiny", "steps": 3, "objective": "fid", "rungs": [8, n_search],
        "guidance": 2.0, "seed": seed, "metrics": ["fid", "kid", "clip"], "clip": "toy",
        "seeds": {"first": seed * 1_000_000, "count": n_search, "rule": "seed·1000000 + i"},
        "prompts": {"spec": prompts, "n": n_search, "set_size": 248},
        "reference": {"spec": f"npz:{ref}", "n": N_REF_SEARCH, "content_id": load_reference(f"npz:{ref}").content_id}})
    if trials:
        dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
        rows = [(50.0, _config(spacing="karras", rho=7.0, final="zero", solver="dpmpp_2m"), {"baseline": "dpmpp2m"}),
                (40.0, _config(spacing="time", rho=1.2, final="residual", epsilon=0.1), {"baseline": "paper"}),
                (30.0, _config(spacing="time", rho=1.5, final="residual", epsilon=0.2), {}),
                (35.0, _config(spacing="karras", rho=3.0, final="zero", solver="dpmpp_2m"), {}),
                (45.0, _config(spacing="time", rho=1.0, final="zero"), {})]
        for v, cfg, extra in rows:
            study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=v,
                                                      user_attrs={"config": cfg, "fid": v, **extra}))
        study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=10.0,
                                                  state=optuna.trial.TrialState.PRUNED,
                                                  user_attrs={"config": cfg, "fid": 10.0}))
    return study


def cheap_extractor(name, dim, seed):
    """A fixed random projection of 4x4-pooled pixels: deterministic, fast, sensitive to the images."""
    proj = torch.randn(48, dim, generator=torch.Generator().manual_seed(seed))

    def forward(x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1) @ proj

    return Extractor(name=name, weights_id=f"test-{seed}", dim=dim, resize="pool4", module=torch.nn.Identity(),
                     forward=forward)


@pytest.fixture
def scorers():
    from objectives.clip_score import load_clip
    return lambda: {"extractors": {V.PRIMARY: cheap_extractor("primary", 24, 0),
                                   "toy-classifier": cheap_extractor("judge", 12, 1)},
                    "clip": load_clip("toy", device="cpu")}


OPTS = V.ValidateOptions(top=2, n=40, n_reference=60, resamples=200)


# ---- the held-out set ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_held_out_prompts_seeds_and_reference_are_disjoint_from_the_search(tmp_path, seed):
    study = make_study(tmp_path, seed=seed)
    plan = V.plan_validation(study, OPTS)
    a = study.user_attrs["hpyn"]
    search_seeds = {s * 1_000_000 + i for s in range(10) for i in range(a["seeds"]["count"])}  # any study seed
    assert len(plan.seeds) == 40 and not set(plan.seeds) & search_seeds and len(set(plan.seeds)) == 40
    lo, hi = plan.sets["prompts"]["indices"]
    assert (lo, hi) == (N_SEARCH, N_SEARCH + 40)         # prompt indices after the search's last rung
    from objectives.prompts import load_prompts
    assert list(plan.prompts) == load_prompts("builtin")[lo:hi]
    r = plan.sets["reference"]
    assert r["disjoint"] and r["indices"] == [N_REF_SEARCH, N_REF_SEARCH + 60] and len(plan.reference) == 60
    ref_all = np.load(tmp_path / "ref.npz")["images"]
    assert torch.equal(plan.reference.arrays, torch.from_numpy(ref_all[N_REF_SEARCH: N_REF_SEARCH + 60]))
    # the candidates: the 2 best non-baseline complete trials (the pruned trial's low value does not count)
    assert [(c.name, c.kind) for c in plan.candidates] == [("trial-2", "finalist"), ("trial-3", "finalist"),
                                                          ("dpmpp2m", "baseline"), ("paper", "baseline")]


def test_reference_split_auto_falls_back_to_the_searchs_reference_when_too_few_remain(tmp_path):
    study = make_study(tmp_path, ref_images=60)
    plan = V.plan_validation(study, V.ValidateOptions(n=32))    # auto, default n_reference for a non-toy model
    assert plan.sets["reference"]["disjoint"] is False and plan.sets["reference"]["indices"] == [0, N_REF_SEARCH]
    assert "only 20 images beyond" in plan.sets["reference"]["note"]


@pytest.mark.parametrize("kw,study_kw,match", [
    ({"n": 300}, {}, r"--n 300: the held-out prompt set has only 232 prompts"),
    ({"n": 16, "n_reference": 100}, {}, r"--n-reference 100: .* 120 images .* first 40: 80 remain"),
    ({"n": 16, "reference_split": "heldout"}, {"ref_images": 45}, r"5 remain for a disjoint split"),
    ({"n": 16}, {"n_search": 300}, r"the held-out prompt set has only 0 prompts.*\(cycling\)"),
    ({"n": 16}, {"trials": False}, r"no complete trials to validate"),
    ({"top": 0}, {}, r"--top 0"),
    ({"level": 95}, {}, r"--level 95"),
    ({"reference_split": "other"}, {}, r"--reference-split 'other'"),
])
def test_bad_input_is_refused_before_any_generation(tmp_path, monkeypatch, kw, study_kw, match):
    study = make_study(tmp_path, **study_kw)
    monkeypatch.setattr(V, "_generate", lambda *a, **k: pytest.fail("generated before checking"))
    with pytest.raises(ValueError, match=match):
        V.run_validation(study, V.ValidateOptions(**kw), model=object(), extractors={}, clip=None, log=None)


# ---- run, record, resume ------------------------------------------------------------------------------------------
ORIGINAL_GENERATE = V._generate


def _calls(monkeypatch, fail_after=None):
    """Count generation calls; raise KeyboardInterrupt (a kill) once `fail_after` calls were made."""
    real, calls = ORIGINAL_GENERATE, []

    def gen(*a, **k):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(V, "_generate", gen)
    return calls


def test_validation_records_resumes_after_a_kill_and_reproduces(tmp_path, tiny_model, scorers, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setattr(V, "CHUNK", 16)
    chunks = 4 * 3   # 4 candidates x ceil(40 / 16) chunks
    # uninterrupted run
    calls = _calls(monkeypatch)
    ref = V.run_validation(make_study(a), V.ValidateOptions(**{**OPTS.__dict__, "cache": str(a / "c")}),
                           model=tiny_model, log=None, **scorers())
    assert len(calls) == chunks
    # killed after 4 chunks (inside the second candidate), then resumed: only the missing chunks are generated
    study = make_study(b)
    opts = V.ValidateOptions(**{**OPTS.__dict__, "cache": str(b / "c")})
    _calls(monkeypatch, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        V.run_validation(study, opts, model=tiny_model, log=None, **scorers())
    assert V.validation_summary(study) is None
    calls = _calls(monkeypatch)
    got = V.run_validation(study, opts, model=tiny_model, log=None, **scorers())
    assert len(calls) == chunks - 4 and got["timings"]["cached"] == 40 + 16
    for name, c in ref["candidates"].items():
        assert got["candidates"][name]["metrics"] == c["metrics"]          # identical numbers after the resume
    assert [c["diff"] for c in got["comparisons"]] == [c["diff"] for c in ref["comparisons"]]
    # a third run reuses everything
    calls = _calls(monkeypatch)
    again = V.run_validation(study, opts, model=tiny_model, log=None, **scorers())
    assert not calls and again["candidates"] == got["candidates"]

    # the study record: every attribute under the dashboard's limit, read back whole
    for k, v in study.user_attrs.items():
        if k.startswith("validation"):
            assert len(json.dumps(v, separators=(",", ":"))) <= V.ATTR_LIMIT, k
    s = V.validation_summary(study)
    assert s["n"] == 40 and s["stale"] is False and set(s["candidates"]) == {"trial-2", "trial-3", "dpmpp2m", "paper"}
    assert s["metrics"] == ["fid", "fd_toy-classifier", "kid", "clip_score"]
    assert len(s["comparisons"]) == 4 and all(c["verdict"] in V.VERDICTS for c in s["comparisons"])
    for c in s["comparisons"]:
        e, lo, hi = c["diff"]["fid"]
        f, b_ = s["candidates"][c["finalist"]], s["candidates"][c["baseline"]]
        assert lo <= e <= hi and e == pytest.approx(f["metrics"]["fid"] - b_["metrics"]["fid"], rel=1e-3, abs=1e-3)
    fids = {n: c["metrics"]["fid"] for n, c in s["candidates"].items()}
    assert s["best"]["name"] == min(fids, key=fids.get)
    text = V.format_table(s)
    for name in s["candidates"]:
        assert name in text
    assert "disjoint from the search's" in text and "FD-classifier" in text and "best validated:" in text
    assert got["images"]["paper"].shape == (8, 3, 16, 16)
    # a new complete trial better than the finalists makes the record stale
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.2}, distributions=dist, value=1.0,
                                              user_attrs={"config": _config(final="zero"), "fid": 1.0}))
    assert V.validation_summary(study)["stale"] is True


def test_export_picks_the_best_validated_candidate_and_carries_the_validation(tmp_path, tiny_model, scorers):
    from search.export import export_study
    study = make_study(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    before = export_study(url, study.study_name)
    assert before["validation"] is None and before["selected_by"] == "search value" and before["trial"] == 2
    V.run_validation(study, V.ValidateOptions(**{**OPTS.__dict__, "cache": str(tmp_path / "c")}), model=tiny_model,
                     log=None, **scorers())
    doc = export_study(url, study.study_name)
    v = doc["validation"]
    assert doc["selected_by"] == "held-out validation" and doc["search_best_trial"] == 2
    assert v["n"] == 40 and doc["trial"] == v["best"]["trial"]
    best_trial = next(t for t in study.trials if t.number == doc["trial"])
    assert doc["config"] == best_trial.user_attrs["config"]


def test_a_finalist_identical_to_a_baseline_gets_a_zero_interval(tmp_path, tiny_model, scorers):
    study = make_study(tmp_path)
    paper = next(t for t in study.trials if t.user_attrs.get("baseline") == "paper")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.3}, distributions=dist, value=5.0,
                                              user_attrs={"config": paper.user_attrs["config"], "fid": 5.0}))
    s = V.run_validation(study, V.ValidateOptions(top=1, n=20, n_reference=60, resamples=100,
                                                  cache=str(tmp_path / "c")), model=tiny_model, log=None, **scorers())
    same = next(c for c in s["comparisons"] if c["baseline"] == "paper")
    assert same["finalist"] == "trial-6" and same["verdict"] == "not distinguishable"
    for m, (e, lo, hi) in same["diff"].items():
        assert e == lo == hi == 0.0, m


# ---- verdict rules ------------------------------------------------------------------------------------------------
def iv(lo, hi):
    return Interval((lo + hi) / 2, lo, hi)


@pytest.mark.parametrize("fid,judges,expected,why", [
    (iv(-5, -1), {"FD-classifier": iv(-2, 1)}, "confirmed better", "not significantly worse"),
    (iv(-5, -1), {"FD-classifier": iv(-3, -1)}, "confirmed better", "not significantly worse"),
    (iv(-5, -1), {"FD-classifier": iv(0.5, 2)}, "not distinguishable", "judges disagree"),
    (iv(-5, -1), {"FD-CLIP": iv(-1, 1), "FD-DINOv2": iv(0.1, 1)}, "not distinguishable", "FD-DINOv2"),
    (iv(-5, -1), {}, "not distinguishable", "no second judge"),
    (iv(-1, 2), {"FD-classifier": iv(-3, -1)}, "not distinguishable", "contains 0"),
    (iv(0.5, 2), {"FD-classifier": iv(-3, -1)}, "worse", "above 0"),
    (iv(0.5, 2), {"FD-classifier": iv(1, 3)}, "worse", "above 0"),
])
def test_verdict_rules(fid, judges, expected, why):
    v, reason = V.verdict(fid, judges)
    assert v == expected and why in reason


def test_cli_names_a_missing_study(tmp_path, capsys):
    make_study(tmp_path, trials=False)
    assert V.main(["--study", "nope", "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
