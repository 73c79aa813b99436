"""Ray Tune backend on a local Ray cluster with 2 CPU workers: trials land in the Optuna study with the states Ray
gave them (PRUNED for trials its ASHA scheduler stopped early, never COMPLETE with a low-sample FID), the models
are loaded once per worker process, and export reads the same truth. Real generation with a tiny diffusers
pipeline; a cheap deterministic pixel-statistics FID (tests/scale_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import scale_helpers
from scale_helpers import make_reference

ROOT = Path(__file__).resolve().parents[1]
S = optuna.trial.TrialState


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from search.ray_tune import DEFAULT_RAY_ENV
    for k, v in DEFAULT_RAY_ENV.items():
        os.environ.setdefault(k, v)
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})
    ray.cloudpickle.register_pickle_by_value(scale_helpers)   # Ray workers need not import tests/
    yield ray
    ray.shutdown()


def test_ray_backend_records_early_stopped_trials_as_pruned(ray_cluster, tiny_pipeline_dir, tmp_path, monkeypatch):
    from search.export import export_study
    from search.options import RunOptions
    from search.run import run_study
    monkeypatch.setenv("HPYN_RAY_RESULTS", str(tmp_path / "ray_results"))
    ref = make_reference(tmp_path / "ref.npz")
    url = f"sqlite:///{tmp_path}/study.db"
    opts = RunOptions(model=str(tiny_pipeline_dir), steps=3, storage=url, trials=8, prompts="builtin", reference=ref,
                      rungs="4,8,16", guidance=5.0, metrics=("fid",), clip="none", device="cpu", batch_size=16,
                      backend="ray", gpus_per_trial=0, max_concurrent=2, startup_trials=4, quiet=True,
                      baselines=("paper", "dpmpp2m-karras"))
    log: list[str] = []
    study = run_study(opts, log=log.append, ray_factory=scale_helpers.ray_factory())
    trials = study.get_trials()
    assert any(line.startswith("Ray ran 8 trial(s)") for line in log), log   # the driver saw every verdict
    assert len(trials) == 8 and {t.state for t in trials} <= {S.COMPLETE, S.PRUNED}, [t.state for t in trials]
    pruned = [t for t in trials if t.state == S.PRUNED]
    complete = [t for t in trials if t.state == S.COMPLETE]
    assert pruned and complete, log
    for t in complete:   # only trials that reached the last rung are COMPLETE, with the last rung's FID
        assert t.user_attrs["n"] == 16 and [r["n"] for r in t.user_attrs["rungs"]] == [4, 8, 16]
        assert t.value == pytest.approx(t.intermediate_values[16]) == pytest.approx(t.user_attrs["fid"])
        assert t.user_attrs["config"] and t.user_attrs["sigmas"] and t.user_attrs["backend"] == "ray"
    for t in pruned:     # Ray's early stops: PRUNED at a lower rung, value = the last reported FID
        assert t.user_attrs["n"] < 16 and max(t.intermediate_values) == t.user_attrs["n"]
        assert t.value == pytest.approx(t.intermediate_values[t.user_attrs["n"]])
        assert t.user_attrs["pruned_by"] == "ray-scheduler" and not t.user_attrs.get("baseline")
    baselines = {t.user_attrs["baseline"]: t for t in trials if t.user_attrs.get("baseline")}
    assert set(baselines) == {"paper", "dpmpp2m-karras"}
    assert all(t.state == S.COMPLETE for t in baselines.values())   # baselines always run to the end
    assert set().union(*(t.intermediate_values for t in trials)) <= {4, 8, 16}
    # models loaded once per worker process (Ray reuses its actors): fewer processes than trials, one load each
    workers = {t.user_attrs["ray_worker"]["pid"]: t.user_attrs["ray_worker"]["model_loads"] for t in trials}
    assert 1 <= len(workers) < len(trials) and set(workers.values()) == {1}
    # the export sees what Ray saw
    doc = export_study(url, study.study_name)
    assert doc["metrics"]["n"] == 16 and doc["trial"] in {t.number for t in complete}


def test_ray_backend_refuses_what_it_cannot_do(tiny_pipeline_dir, tmp_path, capsys):
    from search.run import main
    ref = make_reference(tmp_path / "ref.npz")
    base = ["--model", str(tiny_pipeline_dir), "--steps", "3", "--storage", f"sqlite:///{tmp_path}/s.db",
            "--prompts", "builtin", "--reference", ref, "--backend", "ray"]
    assert main(base + ["--objective", "fid+clip"]) == 2
    assert "--backend ray" in capsys.readouterr().err
    assert main(base + ["--max-concurrent", "0"]) == 2
    assert "--max-concurrent" in capsys.readouterr().err


def test_sha_and_asha_prune_with_the_same_reduction_factor():
    pytest.importorskip("ray")
    from search.ray_tune import make_scheduler
    from search.study import make_pruner, reduction_factor
    for rungs, rf in (([50, 120], 2), ([32, 128], 4), ([4, 8, 16], 2), ([64, 256, 1024], 4), ([10, 35], 4)):
        assert reduction_factor(rungs) == rf
        assert make_pruner("sha", rungs)._reduction_factor == rf
        assert make_pruner("hyperband", rungs)._reduction_factor == rf
        assert make_scheduler(rungs)._reduction_factor == rf
