"""Studies end to end with a cheap deterministic stand-in for generation and metrics (the CLI test uses the real
ones): baselines first, trial records, resume after Ctrl-C, failures, pruning, multi-objective, export."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from hpyn.config import SCHEMA_VERSION, SamplerConfig
from hpyn.noise import NoiseTable
from hpyn.presets import classic_setting, paper_setting
from search import run as run_mod
from search.facts import oversized_attrs, study_settings
from search.export import export_study
from search.export import main as export_main
from search.options import RunOptions
from search.run import RunFailed, run_study
from search.study import open_study, prepare

S = optuna.trial.TrialState
TABLE = NoiseTable.from_betas()


def fake_generate(model, config, prompts, seeds, batch_size=16, **kw):
    """Images whose brightness depends on the config (σ grid, order, FreeU) and whose texture on the seed."""
    s = config.sigmas(model.table)
    level = 60 + 120 * float(s[1] / s[0]) + 8 * config.order + (15 if config.freeu else 0) + 10 * float(s[-2])
    out = torch.empty(len(seeds), 3, 8, 8, dtype=torch.uint8)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        out[i] = (level + torch.randint(0, 30, (3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    return out


class FakeEvaluator:
    """FID-like: distance of the mean brightness from 128 (+ a 1/N bias); `hook(call, images)` may misbehave."""

    def __init__(self, hook=None):
        self.calls, self.hook = 0, hook

    def evaluate(self, images, prompts):
        self.calls += 1
        assert len(images) == len(prompts)
        fid = abs(float(images.float().mean()) - 128.0) + 10.0 / len(images)
        if self.hook is not None:
            fid = self.hook(self.calls, fid)
        return {"fid": fid, "kid_mean": fid / 100, "kid_std": 0.0, "clip_score": 30.0 - fid / 10, "prd_f8": 0.5,
                "prd_f1_8": 0.5, "n": len(images), "conventions": {"extractor": "fake", "n": len(images)}}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr("search.objective.generate", fake_generate)
    monkeypatch.setattr("hpyn.models.load_model", lambda *a, **k: pytest.fail("the model must not be loaded"))
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=np.random.default_rng(0).integers(0, 255, (8, 3, 8, 8), dtype=np.uint8))

    def opts(**kw):
        # a registry model: its noise table needs no download, and the (fake) model is passed in, never loaded
        # the paper's setting and DPM++2M-Karras (test_search_baselines.py runs all of --baselines' default)
        base = {"model": "sd15", "steps": 5, "storage": f"sqlite:///{tmp_path}/s.db", "trials": 4,
                    "prompts": "builtin", "reference": f"npz:{ref}", "rungs": [4, 8], "guidance": 5.0,
                    "baselines": ("paper", "dpmpp2m-karras")}
        return RunOptions(**{**base, **kw})
    return SimpleNamespace(opts=opts, model=SimpleNamespace(table=TABLE), tmp=tmp_path)


def run(env, evaluator=None, log=None, **kw):
    return run_study(env.opts(**kw), evaluator=evaluator or FakeEvaluator(), model=env.model, log=log)


def finished(study):
    return [t for t in study.get_trials() if t.state in (S.COMPLETE, S.PRUNED)]


def test_baselines_run_first_and_every_trial_is_recorded(env):
    study = run(env, trials=4)
    t0, t1 = study.trials[:2]
    assert t0.user_attrs["baseline"] == "paper" and "published" in t0.user_attrs["baseline_note"]
    assert t1.user_attrs["baseline"] == "dpmpp2m-karras"
    paper = paper_setting("sd15", 5)[0].replace(guidance=5.0)
    assert SamplerConfig.from_dict(t0.user_attrs["config"]) == paper
    assert SamplerConfig.from_dict(t1.user_attrs["config"]) == classic_setting(5, 5.0)
    # the enqueued baseline reproduces the paper's σ array
    assert torch.allclose(torch.tensor(t0.user_attrs["sigmas"], dtype=torch.float64), paper.sigmas(TABLE))
    assert t0.user_attrs["sigmas"][-1] == pytest.approx(0.1320, rel=1e-3)  # σ(t_ε), spec B.2
    for t in study.trials:
        u = t.user_attrs
        assert t.state == S.COMPLETE or t.state == S.PRUNED
        assert {"config", "sigmas", "timesteps", "rungs", "wall_time_s", "fid", "n"} <= set(u)
        assert "conventions" not in u   # once, at study level
        assert (u.get("pruned_at_n") == u["n"] < 8) if t.state == S.PRUNED else "pruned_at_n" not in u
        assert [r["n"] for r in u["rungs"]] == [4, 8][:len(u["rungs"])]
        assert t.intermediate_values[u["rungs"][-1]["n"]] == pytest.approx(u["rungs"][-1]["fid"])
        assert len(u["timesteps"]) == len([s for s in u["sigmas"] if s > 0])
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert metas and metas[0].mimetype == "image/png"
    assert (env.tmp / "artifacts").is_dir()
    attrs = study_settings(study.user_attrs)
    assert attrs["rungs"] == [4, 8] and attrs["steps"] == 5 and len(attrs["prompts"]["sha256"]) == 64
    assert study.user_attrs["conventions"]["n"] == 8   # the last rung's
    assert oversized_attrs(study) == []   # nothing cut at optuna-dashboard's 1,024 characters


def test_common_random_numbers(env):
    seen = []

    class Recording(FakeEvaluator):
        def evaluate(self, images, prompts):
            seen.append(list(prompts))
            return super().evaluate(images, prompts)
    run(env, evaluator=Recording(), trials=3, pruner="none")
    assert len(seen) == 6 and all(p == seen[1] for p in seen[1::2]) and all(p == seen[0] for p in seen[0::2])


def test_resume_after_ctrl_c_keeps_every_finished_trial(env):
    def interrupt(call, fid):
        if call == 7:  # inside the 4th trial (2 rungs per trial)
            raise KeyboardInterrupt
        return fid
    with pytest.raises(KeyboardInterrupt):
        run(env, evaluator=FakeEvaluator(interrupt), trials=6, pruner="none")
    study = optuna.load_study(study_name="sd15-5", storage=env.opts().storage)
    before = {t.number: (t.state, t.params, t.values, t.user_attrs["rungs"]) for t in finished(study)}
    assert len(before) == 3
    stopped = [t for t in study.trials if t.state == S.FAIL]
    assert len(stopped) == 1 and stopped[0].user_attrs["fail_reason"].startswith("interrupted")

    study = run(env, trials=6, pruner="none")
    after = {t.number: (t.state, t.params, t.values, t.user_attrs["rungs"]) for t in finished(study)}
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == 6
    names = [t.user_attrs.get("baseline") for t in study.trials if t.user_attrs.get("baseline")]
    assert sorted(names) == ["dpmpp2m-karras", "paper"]  # enqueued once


def test_rerunning_a_finished_study_does_nothing(env):
    study = run(env, trials=3)
    n = len(study.trials)
    assert len(run(env, trials=3).trials) == n


def test_failing_trials_are_recorded_and_the_study_goes_on(env):
    def fail(call, fid):
        if call == 5:
            return float("nan")
        if call == 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return fid
    study = run(env, evaluator=FakeEvaluator(fail), trials=4, pruner="none")
    failed = [t for t in study.trials if t.state == S.FAIL]
    assert len(failed) == 2
    assert "non-finite fid=nan" in failed[0].user_attrs["fail_reason"]
    assert failed[1].user_attrs["fail_reason"].startswith("out of memory")
    assert len(finished(study)) == 4


def test_repeated_failures_stop_the_study_and_export_says_why(env):
    with pytest.raises(RunFailed, match="consecutive failed trials, and the study has no complete trial") as e:
        run(env, evaluator=FakeEvaluator(lambda call, fid: math.inf), trials=20)
    study = e.value.study
    assert [t.state for t in study.trials] == [S.FAIL] * run_mod.MAX_CONSECUTIVE_FAILURES
    with pytest.raises(ValueError, match="no complete trial"):
        export_study(env.opts().storage, study.study_name)


def test_pruning_prunes(env):
    study = run(env, trials=14, rungs=[2, 4, 8], pruner="sha")
    pruned = [t for t in study.trials if t.state == S.PRUNED]
    assert pruned, [t.state for t in study.trials]
    for t in pruned:
        rungs = t.user_attrs["rungs"]
        assert len(rungs) < 3 and t.value == pytest.approx(rungs[-1]["fid"])
        assert not t.user_attrs.get("baseline")
    assert all(t.state == S.COMPLETE for t in study.trials[:2])  # baselines always run to the end


def test_a_trial_worse_than_the_baselines_is_pruned_at_the_first_rung(env):
    # calls 1-4: the two baselines at n=4 and n=8; call 5: trial 2 at n=4, much worse than both
    study = run(env, evaluator=FakeEvaluator(lambda call, fid: 1e3 if call == 5 else fid), trials=3)
    t2 = study.trials[2]
    assert t2.state == S.PRUNED and t2.value == 1e3 and len(t2.user_attrs["rungs"]) == 1


def test_multi_objective_study_and_pareto_export(env, tmp_path):
    study = run(env, trials=4, objective="fid+clip")
    assert study.study_name.endswith("-fid+clip") and len(study.directions) == 2
    assert all(len(t.user_attrs["rungs"]) == 1 and t.user_attrs["n"] == 8 for t in study.trials)
    doc = export_study(env.opts().storage, study.study_name, pareto=True)
    assert doc["selection"] == "pareto" and doc["schedules"]
    assert doc["trial"] == min(doc["schedules"], key=lambda s: s["values"][0])["trial"]


def test_clip_constraint(env):
    study = run(env, trials=4, clip_margin=0.0, pruner="none")
    for t in study.trials:
        assert "constraints:clip" in t.system_attrs
    paper = next(t for t in study.trials if t.user_attrs.get("baseline") == "paper")
    for t in study.trials:
        expected = paper.user_attrs["clip_score"] - t.user_attrs["clip_score"]
        # (stored CLIP scores carry 7 significant digits)
        assert t.user_attrs["clip_constraint"] == pytest.approx(0.0 if t is paper else expected, abs=1e-5)


def test_export_round_trip(env, tmp_path):
    study = run(env, trials=4)
    out = tmp_path / "best.json"
    assert export_main(["--storage", env.opts().storage, "--study", study.study_name, "--top", "3",
                        "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    best = study.best_trial
    assert doc["schema_version"] == SCHEMA_VERSION and doc["trial"] == best.number and doc["steps"] == 5
    config = SamplerConfig.load(out)
    assert config == SamplerConfig.from_dict(best.user_attrs["config"])
    assert torch.allclose(config.sigmas(TABLE), torch.tensor(doc["sigmas"], dtype=torch.float64))
    assert doc["metrics"]["n"] == 8 and doc["metrics"]["fid"] == pytest.approx(best.value)
    assert set(doc["baselines"]) == {"paper", "dpmpp2m-karras"}
    assert all(b["metrics"]["n"] == 8 for b in doc["baselines"].values())
    assert len(doc["schedules"]) == 3 and doc["schedules"][0]["trial"] == best.number
    p = doc["provenance"]
    assert p["prompts"]["sha256"] and p["seeds"]["first"] == 0 and "optuna" in p["versions"]
    assert doc["conventions"]["extractor"] == "fake"
    # the same schedule for ComfyUI: its ManualSigmas string is the exported grid
    txt = tmp_path / "best_comfyui.txt"
    assert export_main(["--storage", env.opts().storage, "--study", study.study_name, "--format", "comfyui",
                        "--out", str(txt)]) == 0
    from hpyn.comfyui import comfyui_sigmas
    assert comfyui_sigmas(doc["sigmas"]) in txt.read_text()


def test_export_of_an_empty_study_is_a_clear_error(env, tmp_path, capsys):
    prep = prepare(env.opts())
    open_study(prep)
    with pytest.raises(ValueError, match="no complete trial"):
        export_study(prep.storage_url, prep.study_name)
    assert export_main(["--storage", prep.storage_url, "--study", prep.study_name, "--out",
                        str(tmp_path / "x.json")]) == 2
    assert "no complete trial" in capsys.readouterr().err
    assert export_main(["--storage", prep.storage_url, "--study", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "nope" in capsys.readouterr().err


def test_resuming_with_other_settings_is_refused(env):
    run(env, trials=2)
    with pytest.raises(ValueError, match="rungs"):
        run(env, trials=3, rungs=[4, 16])


@pytest.mark.parametrize("args,bad", [
    (["--model", "no-such-model"], "no-such-model"),
    (["--storage", "notaurl"], "notaurl"),
    (["--storage", "nosuchdb://x/y"], "nosuchdb"),
    (["--prompts", "file:/nonexistent/prompts.txt"], "/nonexistent/prompts.txt"),
    (["--steps", "0"], "--steps 0"),
    (["--rungs", "64,32"], "64,32"),
    (["--space", "SPACEFILE"], "rho_tim"),
    (["--reference", "npz:/nonexistent/ref.npz"], "/nonexistent/ref.npz"),
])
def test_bad_input_exits_before_loading_anything(env, monkeypatch, capsys, args, bad):
    monkeypatch.setattr(run_mod, "load_evaluator", lambda *a: pytest.fail("metrics must not be loaded"))
    space = env.tmp / "space.json"
    space.write_text(json.dumps({"rho_tim": [1, 2]}))
    o = env.opts()
    argv = ["--model", o.model, "--steps", "5", "--storage", o.storage, "--prompts", o.prompts,
            "--reference", o.reference]
    for i in range(0, len(args), 2):
        k, v = args[i], args[i + 1].replace("SPACEFILE", str(space))
        if k in argv:
            argv[argv.index(k) + 1] = v
        else:
            argv += [k, v]
    assert run_mod.main(argv) == 2
    err = capsys.readouterr().err
    assert bad in err and err.startswith("error:")


def test_a_prompt_set_smaller_than_the_samples_is_recycled_with_one_warning(env, capsys):
    prompts = env.tmp / "two.txt"
    prompts.write_text("a cat\na dog\n")
    study = run(env, trials=3, prompts=f"file:{prompts}")
    err = capsys.readouterr().err
    assert err.count("recycled") == 1 and "has 2 prompt(s) for 8 samples" in err
    assert study.user_attrs["hpyn"]["prompts"]["set_size"] == 2


def test_a_run_whose_trials_all_fail_exits_non_zero_and_says_why(env, monkeypatch, capsys):
    # every trial fails, and the run stops at its timeout before 5 consecutive failures: still not the work asked for
    with pytest.raises(RunFailed, match=r"all \d+ trial\(s\) of this run failed; last fail_reason: .*non-finite"):
        run(env, evaluator=FakeEvaluator(lambda call, fid: math.nan), trials=20, timeout=0.01)
    # the command line maps it to exit status 1 with the reason on stderr
    monkeypatch.setattr(run_mod, "run_study", lambda *a, **k: (_ for _ in ()).throw(RunFailed("every trial failed")))
    o = env.opts()
    assert run_mod.main(["--model", "sd15", "--steps", "5", "--storage", o.storage, "--reference", o.reference]) == 1
    assert capsys.readouterr().err.strip() == "error: every trial failed"


@pytest.mark.parametrize("what", ["model", "metrics"])
def test_a_model_or_metrics_that_cannot_load_leave_no_study_behind(env, monkeypatch, capsys, what):
    def broken(*a, **k):
        raise OSError("weights file is truncated")
    loaded = SimpleNamespace(table=TABLE, device="cpu")
    monkeypatch.setattr("hpyn.models.load_model", broken if what == "model" else lambda *a, **k: loaded)
    monkeypatch.setattr(run_mod, "load_evaluator", broken)
    o = env.opts()
    assert run_mod.main(["--model", "sd15", "--steps", "5", "--storage", o.storage, "--prompts", "builtin",
                         "--reference", o.reference, "--rungs", "4,8", "--clip", "none"]) == 2
    err = capsys.readouterr().err
    assert "weights file is truncated" in err and ("--model 'sd15'" in err if what == "model" else "metrics" in err)
    assert not (env.tmp / "s.db").exists()   # nothing written: a correct run later creates the study afresh


def test_options_are_frozen_and_resolving_them_returns_new_ones(env):
    import dataclasses

    from search.options import MUST_MATCH, build_parser
    o = env.opts(trials=None, guidance=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.trials = 3
    prep = prepare(o)
    assert o.trials is None and o.guidance is None   # the input is unchanged
    assert prep.opts.trials == 60 and prep.opts.guidance == 7.5 and prep.opts.rungs == (4, 8)
    assert set(MUST_MATCH) <= set(prep.attrs)
    # one flag per field, derived from the dataclass
    flags = {a.dest for a in build_parser("p", "", "")._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(RunOptions)}


@pytest.mark.parametrize("sampler,kind", [("random", "RandomSampler"), ("cmaes", "CmaEsSampler"),
                                          ("gp", "GPSampler"), ("qmc", "QMCSampler"), ("tpe", "TPESampler")])
def test_every_sampler_runs_a_study_past_its_startup_trials(env, sampler, kind):
    from search.study import make_sampler
    assert type(make_sampler(env.opts(sampler=sampler), 0)).__name__ == kind
    study = run(env, trials=8, sampler=sampler, startup_trials=1, pruner="none", baselines=("paper",))
    searched = [t for t in study.trials if not t.user_attrs.get("baseline")]
    assert len(searched) == 7 and all(t.state == S.COMPLETE for t in searched)
    assert len({json.dumps(t.params, sort_keys=True) for t in searched}) == 7   # the sampler proposes, not replays



@pytest.mark.parametrize("flags", [{}, {"no_validate": True}, {"no_report": True}])
def test_a_run_ends_with_validation_then_the_report_unless_told_not_to(env, monkeypatch, flags):
    calls = []
    monkeypatch.setattr(run_mod, "_loaded", lambda prep, model, ev, say: (env.model, FakeEvaluator()))

    def validate(study, opts, *, model, log):
        calls.append(("validate", study.study_name, model is env.model))
        return {"n": 40, "best": {"trial": 0}, "images": {"paper": None}}

    def publish(study, **kw):
        calls.append(("publish", kw["validation"], list(kw["prompts"][:2]), list(kw["seeds"][:2])))
    monkeypatch.setattr("search.validate.run_validation", validate)
    monkeypatch.setattr("search.report.publish", publish)
    study = run_study(env.opts(trials=3, **flags), evaluator=None, model=env.model, log=None)
    prep = prepare(env.opts())
    validated = [("validate", study.study_name, True)] if not flags.get("no_validate") else []
    shown = ({"n": 40, "best": {"trial": 0}} if validated else None, list(prep.prompts[:2]), list(prep.seeds[:2]))
    assert calls == validated + ([("publish", *shown)] if not flags.get("no_report") else [])
    # a caller that brings its own evaluator (a notebook, these tests) validates and reports itself
    calls.clear()
    run_study(env.opts(trials=4, **flags), evaluator=FakeEvaluator(), model=env.model, log=None)
    assert calls == []
