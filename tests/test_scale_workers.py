"""Many workers on one study in a real PostgreSQL server (tests/pgserver.py starts a throwaway cluster from the
Debian `postgresql` package, or uses $HPYN_TEST_POSTGRES_URL): two worker processes racing on a new study, and a
worker killed with SIGKILL mid-trial followed by a restarted worker that recovers everything.

Workers are real `search.run.run_study` processes (tests/scale_helpers.py) generating with a tiny diffusers
pipeline and scoring with a cheap deterministic pixel-statistics FID."""

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
from pgserver import postgres_server
from scale_helpers import make_reference

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
S = optuna.trial.TrialState


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL server: install the Debian package `postgresql` (CI does) or set "
                        "HPYN_TEST_POSTGRES_URL=postgresql://user:pass@host/db")
        yield url


@pytest.fixture(scope="module")
def setup(tiny_pipeline_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    return {"model": str(tiny_pipeline_dir), "ref": make_reference(tmp / "ref.npz"), "tmp": tmp}


def worker(setup, url, study, trials, sleep=0.0, **kw):
    args = [sys.executable, str(ROOT / "tests" / "scale_helpers.py"), "--model", setup["model"], "--reference",
            setup["ref"], "--storage", url, "--study", study, "--trials", str(trials), "--sleep", str(sleep),
            "--artifacts", str(setup["tmp"] / "art")]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trial_numbers(out: str) -> set[int]:
    import re
    return {int(m) for m in re.findall(r"^\[trial (\d+)", out, re.MULTILINE)}


def local_worker(setup, model, url, study, trials, sleep=0.0, seed=0, log=None):
    """A worker in this process (the test's own interpreter, model already loaded): the same run_study."""
    from scale_helpers import PixelEvaluator

    from search.options import RunOptions
    from search.run import run_study
    opts = RunOptions(model=setup["model"], steps=3, study=study, storage=url, trials=trials, prompts="builtin",
                      reference=setup["ref"], rungs="4,8", guidance=5.0, seed=seed, metrics=("fid",), clip="none",
                      device="cpu", batch_size=8, heartbeat=1, startup_trials=4, artifacts=str(setup["tmp"] / "art"),
                      baselines=("paper", "dpmpp2m-karras"))
    return run_study(opts, evaluator=PixelEvaluator(setup["ref"], sleep), model=model, log=log)


def wait_for(url, study_name, cond, timeout=90, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            trials = optuna.load_study(study_name=study_name, storage=url).get_trials()
        except KeyError:
            trials = []
        hit = cond(trials)
        if hit:
            return hit
        time.sleep(0.2)
    return None


def test_workers_racing_on_a_new_study_enqueue_the_baselines_once(setup, pg_url):
    from search.options import BASELINES, RunOptions
    from search.storage import open_storage, study_lock
    from search.study import enqueue_baselines, open_study, prepare
    opts = {"model": setup["model"], "steps": 3, "study": "race", "storage": pg_url, "prompts": "builtin", "reference": setup["ref"],
                "rungs": "4,8", "guidance": 5.0, "metrics": ("fid",), "clip": "none", "heartbeat": 1}
    preps = [prepare(RunOptions(**opts)) for _ in range(4)]
    storages = [open_storage(pg_url, 1) for _ in range(4)]   # one connection pool each, like separate processes
    barrier, errors = threading.Barrier(4), []

    def start(i):
        try:
            barrier.wait()
            with study_lock(pg_url, "race"):
                enqueue_baselines(open_study(preps[i], storages[i]), preps[i])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    study = optuna.load_study(study_name="race", storage=pg_url)
    assert [t.user_attrs["baseline"] for t in study.trials] == list(BASELINES)
    assert study.user_attrs["worker_starts"] == 4 and study.user_attrs["hpyn"]["steps"] == 3


def test_two_workers_share_a_study_and_a_sigkilled_worker_loses_nothing(setup, pg_url, tiny_model):
    """Worker A (a process) and worker B (this process) on one study; then A is SIGKILLed mid-trial and a restarted
    worker recovers: A's trial is failed as stale and retried, every finished trial is intact."""
    name = "shared"
    # A spends 1 s per evaluation, so that the SIGKILL of phase 2 lands inside a trial (a rung takes ~1.3 s), not
    # in the short gap between two trials, where nothing would be RUNNING
    a = worker(setup, pg_url, name, 40, sleep=1.0)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(a.stdout), daemon=True)
    reader.start()
    try:
        # -- phase 1: B joins once A is running a trial; B stops when the study has 8 finished trials
        assert wait_for(pg_url, name, lambda ts: any(t.state == S.RUNNING for t in ts), proc=a), "".join(lines)
        b_log: list[str] = []
        local_worker(setup, tiny_model, pg_url, name, 8, sleep=0.4, log=b_log.append)
        study = optuna.load_study(study_name=name, storage=pg_url)
        trials = study.get_trials()
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        assert sorted(t.user_attrs["baseline"] for t in trials if t.user_attrs.get("baseline")) == \
            ["dpmpp2m-karras", "paper"]   # enqueued once
        assert study.user_attrs["worker_starts"] == 2
        # no parameter set evaluated twice (the two workers' samplers have different seeds, and a constant liar)
        params = [tuple(sorted(t.params.items())) for t in trials if not t.user_attrs.get("baseline")]
        assert len(params) == len(set(params))
        assert sum(t.state in (S.COMPLETE, S.PRUNED) for t in trials) >= 8
        # both workers ran trials, each trial ran in exactly one of them
        theirs, ours = trial_numbers("".join(lines)), trial_numbers("\n".join(b_log))
        assert theirs and ours and not (theirs & ours), (lines, b_log)

        # -- phase 2: SIGKILL A between the first and the last rung of a trial
        busy = wait_for(pg_url, name, lambda ts: next((t for t in ts if t.state == S.RUNNING and t.intermediate_values
                                                       and t.number not in ours), None), proc=a)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            a.kill()
        a.wait(timeout=30)
        reader.join(timeout=10)
        a.stdout.close()
    assert busy is not None, "".join(lines)[-3000:]
    assert a.returncode == -signal.SIGKILL
    study = optuna.load_study(study_name=name, storage=pg_url)
    # the victim is whatever A held when it died: `busy` may have finished in the moment before the kill
    # arrived, and A then started its next trial (B finished in phase 1, so every RUNNING trial is A's)
    running = [t for t in study.get_trials() if t.state == S.RUNNING]
    assert len(running) == 1, ([t.number for t in running], "".join(lines)[-3000:])
    victim = running[0]
    before = {t.number: (t.state, t.params, t.values, t.user_attrs["rungs"]) for t in study.get_trials()
              if t.state in (S.COMPLETE, S.PRUNED)}
    assert study.trials[victim.number].state == S.RUNNING

    # -- phase 3: a restarted worker (after the heartbeat grace period, 3 x 1 s) resumes the study
    time.sleep(3.5)
    out: list[str] = []
    target = len(before) + 2
    study = local_worker(setup, tiny_model, pg_url, name, target, log=out.append)
    trials = study.get_trials()
    # the killed trial was failed as stale, and a copy of it (same parameters) was retried and finished
    assert trials[victim.number].state == S.FAIL
    assert "no heartbeat" in trials[victim.number].user_attrs["fail_reason"]   # a failed trial says why
    assert any("their worker died" in line for line in out), out
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state in (S.COMPLETE, S.PRUNED)
    assert retry[0].params == victim.params and retry[0].user_attrs.get("baseline") == victim.user_attrs.get("baseline")
    assert retry[0].user_attrs["rungs"][0]["n"] == 4 and retry[0].intermediate_values
    # every trial finished before the kill is intact
    after = {t.number: (t.state, t.params, t.values, t.user_attrs["rungs"]) for t in trials}
    assert all(after[k] == v for k, v in before.items())
    # nothing left running or waiting, the study reached its target, the baselines ran once
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]
    assert sum(t.state in (S.COMPLETE, S.PRUNED) for t in trials) >= target
    names = [t.user_attrs["baseline"] for t in trials if t.user_attrs.get("baseline") and t.state != S.FAIL]
    assert sorted(names) == ["dpmpp2m-karras", "paper"]
    for t in trials:
        if t.state in (S.COMPLETE, S.PRUNED):
            assert t.user_attrs["rungs"] and t.intermediate_values


def test_study_lock_is_exclusive_across_connections(pg_url):
    from search.storage import study_lock
    inside, overlaps = [], []

    def hold(i):
        with study_lock(pg_url, "lock-test"):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(list(inside))
            time.sleep(0.3)
            inside.remove(i)
    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps and time.perf_counter() - t0 >= 0.85
    with study_lock(pg_url, "another-name"):   # locks of other studies are independent
        pass


def test_sqlite_with_two_workers_warns(tmp_path, capsys):
    from search.storage import open_storage
    from search.workers import warn_shared_sqlite
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=5))
    assert not warn_shared_sqlite(url, study, 5)
    with pytest.warns(UserWarning):
        trial = study.ask()   # another worker's running trial (as study.optimize would record it)
    study._storage.record_heartbeat(trial._trial_id)
    assert warn_shared_sqlite(url, study, 5)
    assert "single-worker default" in capsys.readouterr().err


def test_launcher_checks_its_arguments(capsys, monkeypatch):
    from search import workers
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert workers.main(["--gpus", "all", "--", "--model", "toy", "--steps", "5", "--storage", "sqlite:///x.db"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert workers.main(["--cpu-workers", "2", "--", "--model", "toy", "--steps", "5"]) == 2
    assert "--storage" in capsys.readouterr().err
    assert workers._gpu_ids("0, 2") == ["0", "2"]
    from search.storage import lock_key
    assert lock_key("toy-5") == lock_key("toy-5") != lock_key("toy-6")


def test_the_readme_postgresql_url_works_verbatim(setup, pg_url, tiny_model, tmp_path):
    """`postgresql://user:pw@host/db` (no +driver), as the README writes it: SQLAlchemy 2.1 reads it as psycopg 3,
    search.storage gives it the installed driver. A run, a resumed run and an export all work with it."""
    from sqlalchemy.engine import make_url

    from search.export import main as export_main
    u = make_url(pg_url)
    readme = f"postgresql://{u.username}:pw@{u.host}:{u.port}/{u.database}"
    study = local_worker(setup, tiny_model, readme, "readme-url", 3)
    assert sum(t.state in (S.COMPLETE, S.PRUNED) for t in study.get_trials()) >= 3
    assert local_worker(setup, tiny_model, readme, "readme-url", 3).study_name == "readme-url"   # resumed
    out = tmp_path / "best.json"
    assert export_main(["--storage", readme, "--study", "readme-url", "--out", str(out)]) == 0
    assert out.is_file()
