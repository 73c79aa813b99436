"""`python -m search.run ... --backend ray`: the study's trials run on a Ray cluster through Ray Tune.

    python -m search.run --model sd15 --steps 5 --reference coco2014:/data/coco \\
        --storage postgresql://hpyn:secret@dbhost/hpyn --backend ray --ray-address auto --gpus-per-trial 1

The driver (the process running this) owns the Optuna study; Ray runs the trials:

* `StudySearch` (an `OptunaSearch`) asks the study for each trial, with the study's TPE sampler and a
  define-by-run space (`search.space.suggest_config`), and writes into the same Optuna storage object (Ray's
  OptunaSearch needs a storage object, not a URL). Enqueued baselines and retried trials are asked first.
* Each rung's result (FID at n samples, every metric, the config, σ grid) goes back to the driver, which records
  it on the Optuna trial (`trial.report(fid, step=n)` and the user attributes the worker's `Objective` wrote through
  search.trials, the one bookkeeping path of both backends), so the dashboard and `search.export` read the same
  trials whichever backend ran them. The study itself is set up by search.study, as for the local backend.
* ASHA (`ray.tune.schedulers.ASHAScheduler`, time attribute = sample count n, milestones on the study's rungs,
  the reduction factor of search.study.reduction_factor as for Optuna's SHA, baselines exempt) stops poor trials
  early. Ray's stock OptunaSearch would tell such a trial COMPLETE with its
  low-sample FID; here a trial that ended before the last rung is told PRUNED (value = its last FID, as Optuna
  prunes), a trial that raised is told FAIL with its `fail_reason`, and only a trial that reached the last rung
  is COMPLETE.
* GPU placement: each trial asks Ray for `--gpus-per-trial` GPUs (default 1 when the cluster has GPUs, else
  0 and one CPU), so one trial runs per GPU; Ray actors are reused across trials and each worker process loads
  the model and the metrics once (a per-process cache), not once per trial.
* Liveness: the driver records a heartbeat for every trial in flight, so if the driver dies its RUNNING trials go
  stale and the next run (Ray or `search.run` workers) fails and retries them; a Ray worker that dies mid-trial
  is an errored Ray trial, told FAIL.

Every node needs this package installed (`pip install -e .` of the same checkout) and read access to the model,
the prompt and reference sets at the same paths; only the driver talks to the database.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import optuna

from search.study import load_evaluator, make_sampler, prepare, reduction_factor
from search.trials import (
    config_for,
    counts,
    finished_count,
    reason,
    record_config,
    record_conventions,
    verdict,
)

__all__ = ["SpaceFunction", "StudySearch", "make_scheduler", "ray_trainable", "run_ray"]

DEFAULT_RAY_ENV = {"RAY_DEDUP_LOGS": "0", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1e9"}


# ---- driver side --------------------------------------------------------------------------------------
class SpaceFunction:
    """Define-by-run space for OptunaSearch (picklable): the trial's SamplerConfig plus its bookkeeping."""

    def __init__(self, space, table):
        self.space, self.table = space, table

    def __call__(self, trial) -> dict:
        attrs = trial.user_attrs
        config = config_for(trial, self.space)
        return {"hpyn": {"config": config.to_dict(), "number": trial.number, "baseline": attrs.get("baseline"),
                         "user_attrs": {k: v for k, v in attrs.items() if k in ("baseline", "fixed_config")}}}


def _optuna_search_cls():
    from ray.tune.search.optuna import OptunaSearch
    return OptunaSearch


class StudySearch(_optuna_search_cls()):  # type: ignore[misc]
    """Ray Tune's OptunaSearch, telling Optuna what Ray did: PRUNED for early-stopped trials, FAIL for errors.

    Intermediate values are reported at step = sample count n (as `search.run` does), not Ray's iteration."""

    def __init__(self, *, space, storage, study_name: str, sampler, final_n: int, log=None):
        super().__init__(space=space, metric="fid", mode="min", sampler=sampler, study_name=study_name,
                         storage=storage)
        self.final_n = int(final_n)
        self.log = log
        self._lock = threading.Lock()
        self._last_stale_check = 0.0
        self.told: dict[int, str] = {}
        self.early_stopped: set[str] = set()   # Ray trial ids the scheduler stopped before the last rung
        self._workers_seen: set[int] = set()

    # Tune checkpoints the searcher into its experiment folder; the Optuna storage is the record, and a study is
    # resumed by running search.run again, so there is nothing to save (and no database objects to pickle).
    def save_to_dir(self, *args, **kwargs):
        return None

    def __getstate__(self):   # Tune pickles its config once (not to restore it: see save_to_dir)
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["log"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def in_flight(self) -> list[int]:
        with self._lock:
            return [t._trial_id for tid, t in self._ot_trials.items() if tid not in self._completed_trials]

    def suggest(self, trial_id: str):
        from search.workers import fail_stale
        now = time.monotonic()
        if now - self._last_stale_check > 10:
            self._last_stale_check = now
            stale = fail_stale(self._ot_study)
            if stale:
                self._say(f"failed the stale trial(s) {stale} of a dead worker; retrying them")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            with self._lock:
                params = super().suggest(trial_id)
        ot_trial = self._ot_trials[trial_id]
        info = params.get("hpyn") if params else None
        if info is not None:
            from hpyn.config import SamplerConfig
            record_config(ot_trial, SamplerConfig.from_dict(info["config"]), self._space.table)
            ot_trial.set_user_attr("backend", "ray")
            ot_trial.set_user_attr("ray_trial_id", trial_id)
        return params

    def _apply(self, ot_trial, result: dict) -> None:
        if "worker_pid" in result and ot_trial.number not in self._workers_seen:
            self._workers_seen.add(ot_trial.number)
            ot_trial.set_user_attr("ray_worker", {"pid": result["worker_pid"], "node": result.get("node_ip"),
                                                  "model_loads": result.get("worker_loads")})
        # (attributes travel as JSON: Tune flattens nested dicts in the results it hands to searchers)
        for k, v in json.loads(result.get("attrs_json") or "{}").items():
            if k == "conventions":   # once per study (search.trials.record_conventions)
                record_conventions(ot_trial, v)
            else:
                ot_trial.set_user_attr(k, v)
        fid, n = result.get("fid"), result.get("n")
        if fid is not None and n is not None and math.isfinite(fid):
            frozen = ot_trial.study._storage.get_trial(ot_trial._trial_id)
            if int(n) not in frozen.intermediate_values:
                ot_trial.report(float(fid), step=int(n))

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._apply(self._ot_trials[trial_id], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        try:
            self._apply(ot_trial, result)
        except Exception as e:  # noqa: BLE001 - the state must be told whatever happens
            self._say(f"warning: could not record the last result of trial {ot_trial.number}: {e}")
        failed = (result.get("failed") or "the Ray trial raised or its worker died (see the Ray logs)") \
            if error or result.get("failed") else None
        reported = bool(ot_trial.study._storage.get_trial(ot_trial._trial_id).intermediate_values)
        state, value, attrs = verdict(result.get("n"), result.get("fid"), self.final_n, failed=failed,
                                      stopped_early=trial_id in self.early_stopped, reported=reported)
        for k, v in attrs.items():
            ot_trial.set_user_attr(k, v)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ot_study.tell(ot_trial, value, state=state)
        except Exception as e:  # noqa: BLE001 - e.g. the trial was failed as stale meanwhile
            self._say(f"warning: could not tell trial {ot_trial.number} {state.name}: {e}")
        with self._lock:
            self._completed_trials.add(trial_id)
        self.told[ot_trial.number] = state.name


class _Heartbeat:
    """Records a heartbeat for every trial the driver has in flight, every `interval` seconds."""

    def __init__(self, searcher: StudySearch, storage, interval: int | None):
        self.searcher, self.storage, self.interval = searcher, storage, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.wait(self.interval):
            for tid in self.searcher.in_flight():
                # a finished trial, a dropped connection: the next beat
                with contextlib.suppress(Exception):
                    self.storage.record_heartbeat(tid)

    def __enter__(self):
        if self.interval and hasattr(self.storage, "record_heartbeat"):
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def make_scheduler(rungs, pruner: str = "sha", stopped: set | None = None):
    """ASHA on the sample-count rungs (milestones r0·rf^k, rf = r1/r0), baselines exempt; None = no early stop."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    if pruner == "none" or len(rungs) < 2:
        return None

    class _ASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if result.get("n", 0) < rungs[-1]:
                if result.get("baseline"):
                    return TrialScheduler.CONTINUE   # baselines run to the end (they still set the rungs' bars)
                if action == TrialScheduler.STOP and stopped is not None:
                    stopped.add(trial.trial_id)
            return action

    return _ASHA(time_attr="n", metric="fid", mode="min", grace_period=rungs[0], max_t=rungs[-1],
                 reduction_factor=float(reduction_factor(rungs)))


def ray_resources(gpus_per_trial: float | None) -> dict:
    import ray
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"cpu": 1, "gpu": float(gpus_per_trial)}


def run_ray(prep, study, storage, *, factory: Callable | None = None, log=print, ray_init: dict | None = None):
    """Run the study's remaining trials on Ray (see the module docstring). Returns the study."""
    import ray
    from ray import tune

    opts = prep.opts
    say = log or (lambda s: None)
    for k, v in DEFAULT_RAY_ENV.items():
        os.environ.setdefault(k, v)
    started = False
    if not ray.is_initialized():
        kw = {"address": opts.ray_address, "include_dashboard": False, "log_to_driver": not opts.quiet,
                  "configure_logging": False}
        ray.init(**{**kw, **(ray_init or {})})
        started = True
    searcher = None
    try:
        c = counts(study)
        remaining = max(opts.trials - finished_count(c), c.get("WAITING", 0))   # (WAITING: enqueued or retried)
        if remaining <= 0:
            return study
        searcher = StudySearch(space=SpaceFunction(prep.space, prep.table), storage=storage,
                               study_name=prep.study_name,
                               sampler=make_sampler(opts, len(study.trials), int(study.user_attrs.get(
                                   "worker_starts", 1)) - 1), final_n=prep.rungs[-1], log=say)
        resources = ray_resources(opts.gpus_per_trial)
        trainable = tune.with_resources(
            tune.with_parameters(ray_trainable, opts_dict=asdict(opts), factory=factory), resources)
        say(f"Ray: {ray.cluster_resources().get('CPU', 0):.0f} CPU, {ray.cluster_resources().get('GPU', 0):.0f} GPU; "
            f"{remaining} trial(s), {resources['gpu']:g} GPU and {resources['cpu']} CPU per trial"
            + (f", at most {opts.max_concurrent} at once" if opts.max_concurrent else ""))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher,
                                        scheduler=make_scheduler(prep.rungs, opts.pruner, searcher.early_stopped),
                                        num_samples=remaining, max_concurrent_trials=opts.max_concurrent,
                                        reuse_actors=True, time_budget_s=opts.timeout,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=f"hpyn-{prep.study_name}".replace("+", "_").replace("/", "_"),
                                      storage_path=os.environ.get("HPYN_RAY_RESULTS"),
                                      verbose=0 if opts.quiet else 1,
                                      failure_config=tune.FailureConfig(max_failures=1)))  # a crashed worker: rerun once
        t0 = time.perf_counter()
        with _Heartbeat(searcher, storage, storage.get_heartbeat_interval()
                        if hasattr(storage, "get_heartbeat_interval") else None):
            tuner.fit()
        say(f"Ray ran {len(searcher.told)} trial(s) in {time.perf_counter() - t0:.0f}s: "
            + ", ".join(f"{s.lower()} {sum(1 for v in searcher.told.values() if v == s)}"
                        for s in ("COMPLETE", "PRUNED", "FAIL") if s in searcher.told.values()))
        return study
    finally:
        if searcher is not None:
            # anything Ray never finished (interrupted, time budget) must not stay RUNNING in the study
            for tid in list(searcher._ot_trials):
                if tid not in searcher._completed_trials:
                    searcher.on_trial_complete(tid, None, error=False)
            S = optuna.trial.TrialState
            leftover = [t.number for t in study.get_trials(deepcopy=False, states=(S.RUNNING,))
                        if t.user_attrs.get("backend") == "ray" and t.number in searcher.told]
            if leftover:
                say(f"warning: trials {leftover} are still RUNNING in the study")
        if started:
            ray.shutdown()


# ---- worker side --------------------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}
_LOADS = 0   # how many times this worker process loaded a model (1 with Ray's actor reuse)


def _worker_context(opts_dict: dict, factory: Callable | None):
    """Prepared inputs, model and evaluator of this worker process: built once, reused by every trial."""
    # (a factory arrives unpickled afresh with each trial: key on its name, not its identity)
    key = json.dumps(opts_dict, sort_keys=True, default=str) + \
        ("" if factory is None else f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}")
    global _LOADS
    ctx = _CACHE.get(key)
    if ctx is None:
        _LOADS += 1
        from search.options import RunOptions
        t = time.perf_counter()
        prep = prepare(RunOptions(**opts_dict))
        if factory is not None:
            model, evaluator = factory(prep)
        else:
            from hpyn.models import load_model
            model = load_model(prep.opts.model, device=prep.opts.device)
            evaluator = load_evaluator(prep)
        ctx = {"prep": prep, "model": model, "evaluator": evaluator, "pid": os.getpid(),
               "load_s": time.perf_counter() - t}
        _CACHE.clear()
        _CACHE[key] = ctx
        print(f"[worker {os.getpid()}] loaded model and metrics in {ctx['load_s']:.1f}s", file=sys.stderr)
    return ctx


class _Stopped(optuna.TrialPruned):
    """Ray stopped the trial (the scheduler's decision) while it waited in a report. A TrialPruned, so that
    Objective lets it through without recording a failure."""


class _RayTrial:
    """The part of optuna.Trial that search.objective.Objective uses, reporting each rung to Ray Tune."""

    def __init__(self, info: dict, final_n: int, extra: dict):
        self.number = info["number"]
        self.user_attrs = dict(info.get("user_attrs") or {})
        self.params: dict = {}
        self.study = None
        self.final_n, self.extra = final_n, extra
        self._new: dict = {}
        self.last_n = 0

    def set_user_attr(self, key: str, value) -> None:
        self.user_attrs[key] = value
        self._new[key] = value

    def drain(self) -> dict:
        out, self._new = self._new, {}
        return out

    def should_prune(self) -> bool:
        return False   # Ray's scheduler decides, after the report

    def set_constraint(self, name, value) -> None:   # pragma: no cover - --clip-margin is refused with Ray
        self.set_user_attr(f"constraint_{name}", value)

    def report(self, value: float, step: int) -> None:
        from ray import tune
        self.last_n = int(step)
        if int(step) >= self.final_n:
            return   # the last rung is reported once the objective has finished (with every attribute)
        try:
            tune.report({"fid": float(value), "n": int(step), "attrs_json": json.dumps(self.drain()), **self.extra})
        except SystemExit:
            raise _Stopped() from None


def ray_trainable(config: dict, opts_dict: dict, factory: Callable | None = None) -> None:
    """The Ray Tune function trainable: one Optuna trial, rung by rung (search.objective.Objective)."""
    import torch
    from ray import tune

    from hpyn.config import SamplerConfig
    from search.objective import Objective

    info = config["hpyn"]
    ctx = _worker_context(opts_dict, factory)
    prep = ctx["prep"]
    if torch.get_num_threads() > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    cfg = SamplerConfig.from_dict(info["config"])

    class _Objective(Objective):
        def config_for(self, trial):
            return cfg

    objective = _Objective(model=ctx["model"], evaluator=ctx["evaluator"], space=prep.space, prompts=prep.prompts,
                           seeds=prep.seeds, rungs=prep.rungs, batch_size=prep.opts.batch_size or 16,
                           log=None if prep.opts.quiet else (lambda s: print(s, file=sys.stderr)))
    import ray
    extra = {"baseline": bool(info.get("baseline")), "worker_pid": os.getpid(), "worker_loads": _LOADS,
             "node_ip": ray.util.get_node_ip_address()}
    trial = _RayTrial(info, prep.rungs[-1], extra)
    try:
        fid = objective(trial)
    except _Stopped:
        raise SystemExit(0) from None   # as Ray's own report() ends a stopped trial's thread
    except Exception as e:  # noqa: BLE001 - told FAIL with its reason; the study goes on
        tune.report({"fid": float("nan"), "n": trial.last_n, "failed": reason(e),
                     "attrs_json": json.dumps(trial.drain()), **extra})
        return
    tune.report({"fid": float(fid), "n": prep.rungs[-1], "attrs_json": json.dumps(trial.drain()), **extra})
