"""The search space: every parameter acts, conditional parameters only exist where they act, the baselines are
points of the space and reproduce the paper's σ arrays, space files are checked."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from hpyn.presets import classic_setting, paper_setting, preset_document, published
from search.space import (
    PARAMS,
    NotInSpace,
    acting,
    baseline_params,
    default_space,
    load_space,
    suggest_config,
)

SPACES_DIR = Path(__file__).resolve().parents[1] / "studies" / "spaces"

STEPS = 5
BASE = {"final": "residual", "epsilon": 0.13198213, "spacing": "time", "rho_time": 1.2, "order": 1,
        "freeu": "on", "freeu_start": 0, "freeu_end": 5}
FULL = {**BASE, "freeu_b1": 1.1, "freeu_b2": 1.1, "freeu_s1": 0.9, "freeu_s2": 0.2, "solver_family": "dpmpp",
        "cfg_interval": "off"}
GI = {**FULL, "cfg_interval": "on", "cfg_sigma_hi": 5.0, "cfg_sigma_lo": 0.3}


def cfg(space, **params):
    return suggest_config(optuna.trial.FixedTrial(params), space.steps, space)


def fingerprint(config, table):
    """What a sampler does with a config: σ grid, solver, FreeU factors per step, mapping, guidance (and where)."""
    sig = config.sigmas(table).tolist()
    return (tuple(sig), config.solver, tuple(config.freeu_at(i) for i in range(config.steps)),
            config.freeu_mapping if config.freeu else None, config.guidance,
            tuple(config.guided_at(s) for s in sig[:-1]))


@pytest.fixture(scope="module")
def table():
    from hpyn.noise import NoiseTable
    return NoiseTable.from_betas()


@pytest.fixture(scope="module")
def full(table):
    return load_space({"base": "full", "guidance": [3.0, 9.0], "freeu_mapping": ["reference", "diffusers"]},
                      table, STEPS)


# ---- every parameter acts -------------------------------------------------------------------------------
CHANGES = [  # (base params, parameter, other value)
    (FULL, "epsilon", 0.3), (FULL, "rho_time", 2.0), (FULL, "spacing", "karras"), (FULL, "final", "zero"),
    (FULL, "order", 2), (FULL, "order", 3), (FULL, "freeu", "off"), (FULL, "freeu_start", 2), (FULL, "freeu_end", 3),
    (FULL, "freeu_b1", 1.4), (FULL, "freeu_b2", 1.4), (FULL, "freeu_s1", 0.5), (FULL, "freeu_s2", 0.5),
    (FULL, "freeu_mapping", "diffusers"), (FULL, "guidance", 5.0),
    ({**FULL, "spacing": "karras", "rho_karras": 7.0}, "rho_karras", 3.0),
    ({**FULL, "final": "zero", "sigma_min": 0.05}, "sigma_min", 0.3),
    ({**FULL, "order": 2}, "solver_family", "unipc"), (FULL, "cfg_interval", "on"),
    (GI, "cfg_sigma_hi", 1.5), (GI, "cfg_sigma_lo", 0.6),
]


@pytest.mark.parametrize("base,name,value", CHANGES, ids=[f"{n}={v}" for _, n, v in CHANGES])
def test_every_parameter_changes_the_grid_or_the_sampler(full, table, base, name, value):
    params = {"guidance": 7.5, "freeu_mapping": "reference", **base}
    extra = {"spacing": {"karras": {"rho_karras": 7.0}}, "final": {"zero": {"sigma_min": 0.05}},
             "cfg_interval": {"on": {"cfg_sigma_hi": 5.0, "cfg_sigma_lo": 0.3}}}
    changed = {**params, name: value, **extra.get(name, {}).get(value, {})}
    assert fingerprint(cfg(full, **params), table) != fingerprint(cfg(full, **changed), table)


def test_every_parameter_is_covered():
    assert {n for _, n, _ in CHANGES} == set(PARAMS)


def test_conditional_parameters_are_only_asked_where_they_act(table):
    space = default_space(table, STEPS)
    # FixedTrial raises on a parameter it was not given, so these prove what is *not* asked
    c = cfg(space, final="zero", sigma_min=0.05, spacing="karras", rho_karras=7.0, order=2, freeu="off")
    assert c.epsilon is None and c.sigma_min == 0.05 and c.freeu == ()
    c = cfg(space, final="residual", epsilon=0.2, spacing="time", rho_time=1.0, order=1, freeu="off")
    assert c.sigma_min is None and c.epsilon == 0.2
    with pytest.raises(ValueError):  # a zero ending asks for sigma_min
        cfg(space, final="zero", spacing="time", rho_time=1.0, order=1, freeu="off")
    # the default space fixes the FreeU factors at the paper's values: not parameters
    c = cfg(space, **BASE)
    assert c.freeu[0].factors == (1.1, 1.1, 0.9, 0.2) and c.guidance == 7.5


def test_the_low_end_of_sigma_min_is_the_models_own(table):
    space = default_space(table, STEPS)
    c = cfg(space, final="zero", sigma_min=space.sigma_min, spacing="karras", rho_karras=7.0, order=2, freeu="off")
    assert c == classic_setting(STEPS, 7.5)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_short_grids_ask_only_what_acts(table, steps):
    space = default_space(table, steps)
    for final in ("residual", "zero"):
        shaped, max_order = acting(final, steps)
        trial = optuna.trial.FixedTrial({"final": final, "epsilon": 0.2, "sigma_min": 0.1, "spacing": "karras",
                                         "rho_karras": 3.0, "order": max_order, "freeu": "off"})
        c = suggest_config(trial, steps, space)
        asked = set(trial.params)
        assert ("spacing" in asked) == shaped and ("order" in asked) == (max_order > 1)
        if shaped:  # and then they act
            other = c.replace(rho=5.0)
            assert not torch.equal(c.sigmas(table), other.sigmas(table))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_samples_the_space_without_errors(table):
    space = load_space("full", table, STEPS)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                                                   n_startup_trials=5))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen = set()

    def objective(trial):
        c = suggest_config(trial, STEPS, space)
        c.sigmas(table)
        seen.update(trial.params)
        return float(c.sigmas(table)[1])
    study.optimize(objective, n_trials=40)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert seen == set(PARAMS) - {"freeu_mapping", "guidance"}


# ---- baselines ----------------------------------------------------------------------------------------------
PUBLISHED = [f"{family}-{steps}" for family, steps in published()]


@pytest.mark.parametrize("name", PUBLISHED)
def test_paper_baseline_is_a_point_of_the_space_with_the_papers_sigmas(table, name):
    family, steps = name.rsplit("-", 1)
    steps = int(steps)
    space = default_space(table, steps, guidance=7.5)
    paper, note = paper_setting(family, steps)
    assert note.startswith("published")
    paper = paper.replace(guidance=7.5)
    expected = torch.tensor(preset_document(family, steps)["expected_sigmas"], dtype=torch.float64)
    try:
        params = baseline_params(paper, space)
    except NotInSpace:  # SDXL 6-step: two FreeU windows, run as a fixed config
        assert len(paper.freeu) == 2
        return
    c = cfg(space, **params)
    assert c == paper
    assert torch.allclose(c.sigmas(table), expected, rtol=5e-4, atol=0)


@pytest.mark.parametrize("steps", [3, 4, 5, 6, 8])
def test_classic_baseline_is_a_point_of_the_space(table, steps):
    space = default_space(table, steps, guidance=5.5)
    classic = classic_setting(steps, 5.5)
    assert cfg(space, **baseline_params(classic, space)) == classic


def test_unpublished_step_count_uses_a_stated_rule(table):
    paper, note = paper_setting("sd15", 4)
    assert note.startswith("rule")
    space = default_space(table, 4)
    assert cfg(space, **baseline_params(paper.replace(guidance=7.5), space)) == paper.replace(guidance=7.5)


def test_baseline_outside_a_narrowed_space_is_reported(table):
    space = load_space({"rho_time": [1.5, 2.0]}, table, 5)
    with pytest.raises(NotInSpace, match="rho_time"):
        baseline_params(paper_setting("sd15", 5)[0].replace(guidance=7.5), space)


# ---- space files ------------------------------------------------------------------------------------------
def test_space_file_overrides(table, tmp_path):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"spacing": "time", "order": [1, 2], "epsilon": [0.05, 0.5, "log"],
                             "guidance": [3, 9], "freeu": "off"}))
    space = load_space(str(f), table, 5)
    assert not space["spacing"].searched and space["order"].high == 2 and space["guidance"].searched
    c = cfg(space, final="residual", epsilon=0.1, rho_time=1.5, order=2, guidance=4.0)
    assert c.spacing == "time" and c.freeu == () and c.guidance == 4.0


@pytest.mark.parametrize("doc,match", [
    ({"rho_tim": [1, 2]}, "rho_tim"),
    ({"epsilon": [0.001, 0.5]}, "epsilon"),
    ({"spacing": "linear"}, "linear"),
    ({"order": [1, 5]}, "order"),
    ({"rho_time": [2, 1]}, "rho_time"),
    ({"base": "huge"}, "huge"),
])
def test_bad_space_files_name_the_bad_entry(table, tmp_path, doc, match):
    f = tmp_path / "space.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        load_space(str(f), table, 5)


def test_missing_or_broken_space_file(table, tmp_path):
    with pytest.raises(ValueError, match="nope.json"):
        load_space(str(tmp_path / "nope.json"), table, 5)
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_space(str(tmp_path / "bad.json"), table, 5)


@pytest.mark.parametrize("name", ["paper-family", "classic-family", "with-guidance"])
def test_shipped_example_spaces_load(table, name):
    space = load_space(str(SPACES_DIR / f"{name}.json"), table, 6)
    assert space.steps == 6


def test_the_docs_table_lists_every_dimension_from_its_definition():
    import search.space
    from search.dimensions import DIMENSIONS
    from search.run import _epilog
    for doc in (search.space.__doc__, _epilog()):
        for p in DIMENSIONS:
            line = next(line for line in doc.splitlines() if line.split()[:1] == [p.name])
            assert p.where in line and p.default.text in line


@pytest.mark.parametrize("doc,match", [
    ({"rho_time": [1e-300, 1e300]}, "rho_time"), ({"guidance": [0, 1e308]}, "guidance"),
    ({"rho_karras": [0, 7]}, "rho_karras"), ({"freeu_b1": [1.0, 1e9]}, "freeu_b1"), ({"epsilon": 1e999}, "epsilon"),
])
def test_absurd_ranges_are_rejected_with_the_bounds_that_hold(table, doc, match):
    with pytest.raises(ValueError, match=match):
        load_space(doc, table, 5)
