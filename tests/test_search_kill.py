"""A worker on an SQLite study killed mid-trial (SIGTERM, SIGKILL), then the same study run again at once.

SIGTERM is handled like Ctrl-C: the running trial is marked FAIL with the reason "interrupted (SIGTERM)", one line
is printed (no traceback), the exit status is 143. SIGKILL leaves the trial RUNNING; the next run finds that no
live process holds the SQLite study's worker lock, fails it with a reason and retries it at once (heartbeats are
30 s here, so their 90 s grace period plays no part). Either way the retry is the first trial of the next run, with
the same parameters, and every trial finished before the kill is intact.

Workers are real `search.run.run_study` processes (tests/scale_helpers.py): a tiny diffusers pipeline and a cheap
pixel-statistics FID that sleeps per rung, so that a trial can be caught between its rungs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from scale_helpers import PixelEvaluator, make_reference

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
S = optuna.trial.TrialState
HEARTBEAT = 30


@pytest.fixture
def setup(tiny_pipeline_dir, tmp_path):
    return {"model": str(tiny_pipeline_dir), "ref": make_reference(tmp_path / "ref.npz"), "tmp": tmp_path,
            "url": f"sqlite:///{tmp_path}/study.db"}


def start_worker(setup, study: str, trials: int):
    args = [sys.executable, str(ROOT / "tests" / "scale_helpers.py"), "--model", setup["model"], "--reference",
            setup["ref"], "--storage", setup["url"], "--study", study, "--trials", str(trials), "--sleep", "0.7",
            "--heartbeat", str(HEARTBEAT), "--pruner", "none", "--artifacts", str(setup["tmp"] / "art")]
    p = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    readers = [threading.Thread(target=lambda f=f, k=k: out[k].extend(f), daemon=True)
               for k, f in (("stdout", p.stdout), ("stderr", p.stderr))]
    for r in readers:
        r.start()
    return p, out, readers


def running_between_rungs(setup, study: str, proc, timeout: float = 180):
    """Wait until a trial has finished its first rung and is working on the next; returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            trials = optuna.load_study(study_name=study, storage=setup["url"]).get_trials()
        except KeyError:
            trials = []
        # a trial after the two baselines, so that finished trials exist to be kept
        hit = [t for t in trials if t.state == S.RUNNING and t.intermediate_values and t.number >= 2]
        if hit:
            return hit[0]
        time.sleep(0.1)
    return None


def rerun(setup, tiny_model, study: str, trials: int):
    """The next run of the same study, in this process, right away."""
    from search.options import RunOptions
    from search.run import run_study
    log: list[str] = []
    opts = RunOptions(model=setup["model"], steps=3, study=study, storage=setup["url"], trials=trials,
                      prompts="builtin", reference=setup["ref"], rungs="4,8", guidance=5.0, metrics=("fid",),
                      clip="none", device="cpu", batch_size=8, heartbeat=HEARTBEAT, startup_trials=4, pruner="none",
                      artifacts=str(setup["tmp"] / "art"))
    study = run_study(opts, evaluator=PixelEvaluator(setup["ref"]), model=tiny_model, log=log.append)
    return study, log


def kill_and_rerun(setup, tiny_model, sig, study_name: str):
    proc, out, readers = start_worker(setup, study_name, 40)
    try:
        victim = running_between_rungs(setup, study_name, proc)
        assert victim is not None, "".join(out["stdout"] + out["stderr"])[-3000:]
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for r in readers:
            r.join(timeout=10)
    study = optuna.load_study(study_name=study_name, storage=setup["url"])
    # the victim is whatever the worker held when the signal arrived (`victim` may have finished in between)
    held = [t for t in study.get_trials() if t.state == S.RUNNING or
            (t.state == S.FAIL and t.number >= victim.number)]
    assert len(held) == 1, [(t.number, t.state) for t in study.get_trials()]
    before = {t.number: (t.state, t.params, t.values, t.user_attrs["rungs"]) for t in study.get_trials()
              if t.state in (S.COMPLETE, S.PRUNED)}
    assert len(before) >= 2
    n_before = len(study.trials)
    study, log = rerun(setup, tiny_model, study_name, len(before) + 2)
    trials = study.get_trials()
    victim = trials[held[0].number]
    retry = trials[n_before]   # the first trial of the next run
    assert retry.system_attrs.get("failed_trial") == victim.number and retry.user_attrs["retry_of"] == victim.number
    assert retry.params == victim.params and retry.state == S.COMPLETE
    assert [r["n"] for r in retry.user_attrs["rungs"]] == [4, 8] and "fail_reason" not in retry.user_attrs
    assert all((t.state, t.params, t.values, t.user_attrs["rungs"]) == v for t, v in
               ((trials[k], v) for k, v in before.items())), "a trial finished before the kill changed"
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]
    return proc, out, victim, retry, log


def test_sigterm_fails_the_running_trial_with_a_reason_and_the_next_run_retries_it(setup, tiny_model):
    proc, out, victim, retry, log = kill_and_rerun(setup, tiny_model, signal.SIGTERM, "term")
    err = "".join(out["stderr"])
    assert proc.returncode == 143, err[-3000:]
    assert victim.state == S.FAIL and victim.user_attrs["fail_reason"] == "interrupted (SIGTERM)"
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith("interrupted (SIGTERM) after"), err[-3000:]
    assert "Traceback" not in err and "failed with" not in err, err[-3000:]   # nor Optuna's two warning lines
    assert retry.user_attrs["retry_reason"] == f"trial {victim.number} was interrupted (SIGTERM)"
    assert f"trial {victim.number} was interrupted (SIGTERM); retried" in log


def test_sigkill_leaves_a_running_trial_that_the_next_run_fails_and_retries_at_once(setup, tiny_model):
    proc, _, victim, retry, log = kill_and_rerun(setup, tiny_model, signal.SIGKILL, "kill")
    assert proc.returncode == -signal.SIGKILL
    assert victim.state == S.FAIL and "its process died" in victim.user_attrs["fail_reason"]
    assert "its process died" in retry.user_attrs["retry_reason"]
    assert any(line.startswith(f"trial {victim.number} was RUNNING but its process died") for line in log), log
    waited = (retry.datetime_start - victim.datetime_start).total_seconds()
    assert waited < 3 * HEARTBEAT, f"the retry waited {waited:.0f}s: it must not need the heartbeat grace period"
