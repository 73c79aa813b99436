"""The samplers users pick as study baselines (hpyn.presets), and the search dimensions for the solver family
(DPM-Solver++ | UniPC) and the guidance interval: where they act, what they map to, and that the default space's
trials for a seed did not change."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import optuna
import pytest
from test_search_study import env, run  # noqa: F401  (env is a fixture)

from hpyn.noise import NoiseTable
from hpyn.presets import ays_setting, beta_setting, classic_setting, unipc_karras_setting
from search.options import BASELINES, RunOptions
from search.space import NotInSpace, baseline_params, load_space, suggest_config
from search.study import baselines

TABLE = NoiseTable.from_betas()
S = optuna.trial.TrialState


def cfg(space, **params):
    return suggest_config(optuna.trial.FixedTrial(params), space.steps, space)


# ---- baselines ----------------------------------------------------------------------------------------------
def test_every_baseline_is_enqueued_once_and_runs_first(env):  # noqa: F811  (the fixture imported above)
    study = run(env, trials=6, baselines=BASELINES)
    names = [t.user_attrs.get("baseline") for t in study.trials]
    assert names[:5] == ["paper", "dpmpp2m-karras", "ays", "beta", "unipc-karras"] and None in names[5:]
    by = {t.user_attrs["baseline"]: t for t in study.trials[:5]}
    from hpyn.config import SamplerConfig
    want = {"dpmpp2m-karras": classic_setting(5, 5.0), "ays": ays_setting("sd15", 5, 5.0),
            "beta": beta_setting(5, 5.0), "unipc-karras": unipc_karras_setting(5, 5.0)}
    for name, config in want.items():
        t = by[name]
        assert t.state == S.COMPLETE and SamplerConfig.from_dict(t.user_attrs["config"]) == config
    # AYS, Beta and UniPC lie outside the default space: run as fixed configs, with the reason in the note
    for name in ("ays", "beta", "unipc-karras"):
        assert by[name].user_attrs["fixed_config"] and "run as a fixed config" in by[name].user_attrs["baseline_note"]
    assert "Align Your Steps" in by["ays"].user_attrs["baseline_note"]
    again = run(env, trials=7, baselines=BASELINES)   # resumed: nothing enqueued twice
    assert sorted(t.user_attrs["baseline"] for t in again.trials if t.user_attrs.get("baseline")) == sorted(BASELINES)


def test_baselines_option_selects_and_checks():
    o = RunOptions(model="toy", steps=5, baselines="paper,ays")
    assert o.baselines == ("paper", "ays")
    with pytest.raises(ValueError, match=r"--baselines 'paper,gits'.*unknown: gits"):
        RunOptions(model="toy", steps=5, baselines="paper,gits")
    with pytest.raises(ValueError, match="choose each at most once"):
        RunOptions(model="toy", steps=5, baselines="ays,ays")
    with pytest.raises(ValueError, match="keep 'paper' in --baselines"):
        RunOptions(model="toy", steps=5, baselines="ays", clip_margin=0.5)


def _prep(table, family="sd15", names=BASELINES):
    return SimpleNamespace(opts=SimpleNamespace(guidance=3.0, steps=6, baselines=names), table=table,
                           spec=SimpleNamespace(family=family))


def test_ays_only_on_sds_noise_schedule_and_sdxls_table_for_sdxl():
    assert [b[0] for b in baselines(_prep(TABLE))] == list(BASELINES)
    assert {b[0]: b[1] for b in baselines(_prep(TABLE, "sdxl"))}["ays"].spacing == "ays_sdxl"
    other = NoiseTable.from_betas(0.0001, 0.02, beta_schedule="linear")
    assert [b[0] for b in baselines(_prep(other))] == ["paper", "dpmpp2m-karras", "beta", "unipc-karras"]
    assert [b[0] for b in baselines(_prep(TABLE, names=("beta",)))] == ["beta"]


def test_unipc_karras_is_a_point_of_the_full_space():
    full, default = load_space("full", TABLE, 5, 7.5), load_space("default", TABLE, 5, 7.5)
    params = baseline_params(unipc_karras_setting(5), full)
    assert params["solver_family"] == "unipc" and "order" not in params
    assert cfg(full, **params) == unipc_karras_setting(5)
    with pytest.raises(NotInSpace, match="solver_family='unipc'"):
        baseline_params(unipc_karras_setting(5), default)


# ---- the new dimensions ---------------------------------------------------------------------------------------
def test_solver_family_replaces_the_order_where_it_acts():
    full = load_space("full", TABLE, 5, 7.5)
    base = {"final": "residual", "epsilon": 0.13, "spacing": "time", "rho_time": 1.2, "freeu": "off",
            "cfg_interval": "off"}
    assert cfg(full, **base, solver_family="unipc").solver == "unipc_bh2"   # FixedTrial: order is not asked
    assert cfg(full, **base, solver_family="dpmpp", order=3).solver == "dpmpp_3m"
    # no step after the first that keeps σ > 0 (1 residual step, ≤ 2 zero-ending steps): UniPC = 1S, not asked
    for steps, final in ((1, "residual"), (2, "zero")):
        space = load_space("full", TABLE, steps, 7.5)
        trial = optuna.trial.FixedTrial({"final": final, "epsilon": 0.2, "sigma_min": 0.1, "freeu": "off",
                                         "cfg_interval": "off"})
        assert suggest_config(trial, steps, space).solver == "dpmpp_1s" and "solver_family" not in trial.params


def test_guidance_interval_acts_only_with_guidance_and_keeps_lo_below_hi():
    base = {"final": "zero", "sigma_min": 0.05, "spacing": "karras", "rho_karras": 7.0, "solver_family": "dpmpp",
            "order": 2, "freeu": "off"}
    on = cfg(load_space("full", TABLE, 5, 7.5), **base, cfg_interval="on", cfg_sigma_hi=5.4, cfg_sigma_lo=0.28)
    assert on.guidance_interval == (0.28, 5.4)
    unguided = load_space({"base": "full", "guidance": 1.0}, TABLE, 5)
    trial = optuna.trial.FixedTrial(base)   # guidance 1: the interval is not asked
    assert suggest_config(trial, 5, unguided).guidance_interval is None and "cfg_interval" not in trial.params
    # TPE over the full space: every interval it draws is valid (σ_lo < σ_hi through the per-trial limit)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space({"base": "full", "cfg_interval": "on"}, TABLE, 5, 7.5)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, multivariate=True, group=True,
                                                                   n_startup_trials=5))
    study.optimize(lambda t: suggest_config(t, 5, space).guidance_interval[1], n_trials=25)
    assert all(t.state == S.COMPLETE and t.params["cfg_sigma_lo"] < t.params["cfg_sigma_hi"] for t in study.trials)
    # a config with an interval maps back to the same point
    assert cfg(space, **baseline_params(on, space)) == on


def test_default_space_trials_for_seed_0_are_unchanged():
    # the first TPE (startup) trials of the default space, as drawn before solver_family and cfg_interval existed:
    # both are fixed there (no Optuna draw), so old studies' seeds give the same trials
    space = load_space("default", TABLE, 5, 2.0)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                                                   n_startup_trials=8, constant_liar=True))
    study.optimize(lambda t: float(suggest_config(t, 5, space).sigmas(TABLE)[1]), n_trials=3)
    got = [{k: round(v, 6) if isinstance(v, float) else v for k, v in t.params.items()} for t in study.trials]
    assert got == [
        {"final": "zero", "freeu": "on", "freeu_end": 5, "freeu_start": 1, "order": 2, "rho_time": 2.114735,
         "sigma_min": 0.245585, "spacing": "time"},
        {"final": "zero", "freeu": "on", "freeu_end": 5, "freeu_start": 4, "order": 3, "rho_karras": 1.181966,
         "sigma_min": 0.768747, "spacing": "karras"},
        {"epsilon": 0.463204, "final": "residual", "freeu": "off", "order": 3, "rho_karras": 2.29018,
         "spacing": "karras"},
    ]
