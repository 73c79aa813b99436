"""Stage 2 (--refine N, search.refine): free log-σ offsets of the best parametric trial's interior grid points, as
marked trials of the same study, with the fake generator and evaluator of test_search_study."""
from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
import torch
from test_search_study import TABLE, env, run  # noqa: F401  (env is a fixture)

from hpyn.config import SamplerConfig
from search import refine as refine_mod
from search.options import RunOptions, build_parser, from_args

S = optuna.trial.TrialState
DONE = (S.COMPLETE, S.PRUNED)


def stage2(study):
    return [t for t in study.get_trials() if t.user_attrs.get("stage") == 2]


def test_refine_adds_marked_stage2_trials_around_the_best_parametric_trial(env):  # noqa: F811  (the fixture imported above)
    study = run(env, trials=6, refine=3)
    s1 = [t for t in study.get_trials() if t.user_attrs.get("stage") != 2]
    assert len([t for t in s1 if t.state in DONE]) == 6    # --trials counts the parametric trials only
    assert all("stage" not in t.user_attrs and "refine_of" not in t.user_attrs for t in s1)
    base = min((t for t in s1 if t.state == S.COMPLETE), key=lambda t: t.value)
    base_config = SamplerConfig.from_dict(base.user_attrs["config"])
    s2 = stage2(study)
    assert len([t for t in s2 if t.state in DONE]) == 3
    assert min(t.number for t in s2) > max(t.number for t in s1)     # after the parametric trials
    names = [f"offset_{i}" for i in range(1, 5)]
    for t in s2:
        u = t.user_attrs
        assert u["refine_of"] == base.number and "baseline" not in u
        assert all(-refine_mod.OFFSET_RANGE <= t.params[k] <= refine_mod.OFFSET_RANGE for k in names)
        if t.state not in DONE:
            continue
        config = SamplerConfig.from_dict(u["config"])
        assert config.offsets == tuple(t.params[k] for k in names)
        assert config.replace(offsets=None) == base_config          # everything else is the base's
        sig = torch.tensor(u["sigmas"], dtype=torch.float64)
        assert bool((sig[1:] < sig[:-1]).all())                      # strictly decreasing
        plain = base_config.sigmas(TABLE)
        assert sig[0] == plain[0] and sig[-1] == plain[-1]
        assert torch.allclose(sig[1:-1].log() - plain[1:-1].log(), torch.tensor(config.offsets, dtype=torch.float64))
    # CMA-ES starts at the base grid: its draws lie around 0, not all over the box
    assert max(abs(t.params[k]) for t in s2 for k in names) < refine_mod.OFFSET_RANGE
    n = len(study.trials)
    assert len(run(env, trials=6, refine=3).trials) == n          # the same command again: nothing more
    study = run(env, trials=6, refine=5)                          # a larger --refine goes on
    assert len([t for t in stage2(study) if t.state in DONE]) == 5 and len(study.trials) == n + 2
    assert len([t for t in study.get_trials() if t.user_attrs.get("stage") != 2]) == len(s1)


def test_a_grid_that_would_not_decrease_is_a_failed_stage2_trial(env, monkeypatch):  # noqa: F811  (the fixture imported above)
    monkeypatch.setattr(refine_mod, "OFFSET_RANGE", 6.0)
    draws = iter([{"offset_1": 6.0, "offset_2": 0.0, "offset_3": 0.0, "offset_4": 0.0},     # σ_1·e⁶ > σ_max
                  {"offset_1": 0.1, "offset_2": -0.1, "offset_3": 0.05, "offset_4": 0.0}])

    class Stub:
        def ask(self, dists):
            return SimpleNamespace(params=next(draws))
    monkeypatch.setattr(refine_mod, "_shadow", lambda *a: Stub())
    study = run(env, trials=3, refine=1, pruner="none")
    bad, good = stage2(study)
    assert bad.state == S.FAIL and "not strictly decreasing" in bad.user_attrs["fail_reason"]
    assert "offsets [6.0, 0.0, 0.0, 0.0]" in bad.user_attrs["fail_reason"] and bad.params["offset_1"] == 6.0
    assert good.state == S.COMPLETE and SamplerConfig.from_dict(good.user_attrs["config"]).offsets == (0.1, -0.1,
                                                                                                      0.05, 0.0)


def test_replay_feeds_the_offset_sampler_only_stage2_trials(env):  # noqa: F811  (the fixture imported above)
    study = run(env, trials=4, refine=2, pruner="none")
    shadow = refine_mod._shadow(study, 5, "cmaes", 0)
    assert [t.params for t in shadow.trials] == [{k: v for k, v in t.params.items() if k.startswith("offset_")}
                                                 for t in stage2(study)]
    assert [t.value for t in shadow.trials] == [t.value for t in stage2(study)]
    assert set(shadow.ask(refine_mod.distributions(5)).params) == {f"offset_{i}" for i in range(1, 5)}


def test_the_offset_draws_differ_with_either_sampler(env, monkeypatch):  # noqa: F811  (the fixture imported above)
    monkeypatch.setattr(refine_mod, "REFINE_SAMPLER", "tpe")   # its startup draws are random: each must be new
    study = run(env, trials=3, refine=3, pruner="none")
    draws = [tuple(sorted((k, v) for k, v in t.params.items() if k.startswith("offset_"))) for t in stage2(study)]
    assert len(draws) == 3 and len(set(draws)) == 3


def test_refine_option():
    p = build_parser("x", "", "")
    assert from_args(p.parse_args(["--model", "toy", "--steps", "5", "--refine", "4"])).refine == 4
    assert from_args(p.parse_args(["--model", "toy", "--steps", "5"])).refine == 0
    with pytest.raises(ValueError, match="--refine"):
        RunOptions(model="toy", steps=5, refine=2, objective="fid+clip")
    with pytest.raises(ValueError, match="--refine"):
        RunOptions(model="toy", steps=5, refine=-1)
