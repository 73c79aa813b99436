"""Run or resume an Optuna search for the best few-step sampler schedule of a diffusion model.

Checks every input first (model name, device, storage URL, CLIP spec, prompt and reference sets, rungs, space
file) and exits with a message naming the bad value before any model is loaded. Then it loads the model and the
metrics, and only then creates the study, or loads it when a study of that name exists (running the same command
again resumes it: finished trials are kept, the study goes on until it has --trials finished trials), enqueues
the baselines once (the paper's setting and classic DPM++2M-Karras, both at the study's guidance), and optimises.
A failing trial (NaN, out of memory, an exception) is recorded as FAIL with its reason and the study goes on;
Ctrl-C and SIGTERM stop cleanly (the running trial is marked FAIL "interrupted" and retried by the next run).
With --refine N (local backend), stage 2 follows: N trials that move the interior grid points of the best
parametric trial one by one (search.refine); they are marked `stage: 2` and do not count toward --trials.

Exit status: 0 done; 1 the run ended without the work it was asked for (every trial failed, or it stopped after
repeated failures), with the reason; 2 a bad input; 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from search.options import RunOptions, build_parser, from_args
from search.study import (
    Prepared,
    enqueue_baselines,
    load_evaluator,
    load_existing,
    open_study,
    prepare,
)
from search.trials import (
    Interrupted,
    counts,
    finished_count,
    format_metrics,
    trial_metrics,
)

__all__ = ["MAX_CONSECUTIVE_FAILURES", "RunFailed", "main", "run_study"]

MAX_CONSECUTIVE_FAILURES = 5


def _epilog() -> str:
    from search.space import docs_table
    return """\
examples:
  python -m search.run --model toy --steps 5                 # the embedded model: a complete study in ~10 min
  python -m search.run --model toy --steps 5                 # again: resumes the same study
  python -m search.run --model sd15 --steps 5 --reference coco2014:/data/coco --prompts coco2014:/data/coco
  python -m search.run --model sdxl --steps 8 --objective fid+clip --trials 100 --storage postgresql://u:p@host/db
  python -m search.workers --gpus all -- --model sd15 --steps 5 --storage postgresql://u:p@host/db   # 1 worker/GPU
  python -m search.run --model sd15 --steps 5 --storage postgresql://u:p@host/db --backend ray --ray-address auto
  python -m search.run --model toy --steps 4 --space my_space.json --study toy-4-narrow

then:
  optuna-dashboard sqlite:///studies/hpyn.db --artifact-dir studies/artifacts
  python -m search.export --study toy-5 --out best.json
  python -m hpyn.generate --model toy --config best.json --prompt 'a photo of a sneaker' --seeds 0-7 --out out/

objectives:
  fid       single objective: FID at the last rung (lower is better). FID is reported at every rung and the
            pruner stops poor trials early. --clip-margin M adds a constraint: CLIP score no worse than the
            paper baseline's by more than M (at the same N).
  fid+clip  two objectives (FID down, CLIP up); `search.export --pareto` exports the Pareto front. Optuna
            cannot prune multi-objective studies, so every trial is evaluated once, at the last rung.

prompts:    builtin | toy | coco2014:ROOT | coco2014:CAPTIONS.json | coco2017:ROOT | laion:FILE | file:PROMPTS.txt
reference:  toy | coco2014:ROOT | coco:ROOT | dir:DIR | folder:DIR | npz:FILE | laion:CAPTIONS:IMAGES_DIR
space:      default | full (also searches the FreeU factors) | a JSON file (see search/space.py), e.g.
            {"base": "default", "rho_time": [0.8, 2.0], "guidance": [3, 9]}   (examples: studies/spaces/)

search dimensions:
""" + docs_table() + """

exit status: 0 done, 1 the run ended without the work asked for (says why), 2 bad input, 130 Ctrl-C, 143 SIGTERM
"""


class RunFailed(RuntimeError):
    """The run ended without the work it was asked for (every trial failed, or it gave up after failures)."""

    def __init__(self, message: str, study=None):
        super().__init__(message)
        self.study = study


class _Stopper:
    """Stops the study at `target` finished (complete or pruned) trials, or after repeated failures."""

    def __init__(self, target: int, log):
        self.target, self.log, self.fails, self.gave_up = target, log, 0, False

    def __call__(self, study, trial) -> None:
        import optuna
        self.fails = self.fails + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        c = counts(study, stage=1)
        if finished_count(c) >= self.target and not c.get("WAITING"):
            study.stop()   # (WAITING: an enqueued baseline or a dead worker's retried trial still to run)
        elif self.fails >= MAX_CONSECUTIVE_FAILURES:
            self.gave_up = True
            study.stop()


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM raises `Interrupted` in the main thread, so it stops a run as Ctrl-C does (a second one kills)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        raise Interrupted(signal.Signals(signum).name)
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial in two records, the first with its traceback; for an interruption the run says
    one line instead, so both records of that trial are dropped."""

    def __init__(self):
        super().__init__()
        self.trial: str | None = None   # "Trial 12" of an interrupted trial whose second record is still to come

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.trial = record.getMessage().split(" failed", 1)[0]
            return False
        if self.trial is not None and record.getMessage().startswith(f"{self.trial} failed with value"):
            self.trial = None
            return False
        return True


def _loaded(prep: Prepared, model, evaluator, say):
    """The model and the metrics (loaded here unless given): before the study is created, so that a model, a CLIP
    model or a feature extractor that cannot load leaves nothing behind."""
    o = prep.opts
    if model is None:
        from hpyn.models import load_model
        t = time.perf_counter()
        try:
            model = load_model(o.model, device=o.device)
        except Exception as e:  # noqa: BLE001 - any loader error becomes one line naming the model
            raise ValueError(f"--model {o.model!r}: cannot load it ({type(e).__name__}: {_first_line(e)})") from None
        say(f"loaded model {prep.spec.name} on {model.device} in {time.perf_counter() - t:.1f}s")
    if evaluator is None:
        t = time.perf_counter()
        try:
            evaluator = load_evaluator(prep)
        except Exception as e:  # noqa: BLE001 - a CLIP model, extractor weights or reference that cannot load
            raise ValueError(f"cannot load the metrics (--metrics {','.join(o.metrics)}, --clip {o.clip!r}, "
                             f"--reference {o.reference!r}): {type(e).__name__}: {_first_line(e)}") from None
        say(f"loaded metrics ({','.join(o.metrics)}; reference {o.reference}) in {time.perf_counter() - t:.1f}s")
    return model, evaluator


def _first_line(e: BaseException) -> str:
    return next((line for line in str(e).splitlines() if line.strip()), "")


def _nothing_to_do(study, prep: Prepared) -> bool:
    from search.refine import stage2_done
    c = counts(study, stage=1)
    names = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)
             if t.state.name in ("COMPLETE", "PRUNED")}
    return finished_count(c) >= prep.opts.trials and not c.get("WAITING") and not c.get("RUNNING") and \
        {"paper", "dpmpp2m-karras"} <= names and stage2_done(study) >= prep.opts.refine


def _verdict(study, finished_before: set[int], stopper: _Stopper | None) -> str | None:
    """Why the run did not do the work it was asked for, or None."""
    import optuna
    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    ran = [t for t in trials if t.state.is_finished() and t.number not in finished_before]
    failed = [t for t in ran if t.state == S.FAIL]
    last = f"; last fail_reason: {failed[-1].user_attrs.get('fail_reason', '?')}" if failed else ""
    if stopper is not None and stopper.gave_up:
        none = not any(t.state == S.COMPLETE for t in trials)
        return (f"stopped after {stopper.fails} consecutive failed trials"
                + (", and the study has no complete trial" if none else "") + last)
    if ran and len(failed) == len(ran):
        return f"all {len(ran)} trial(s) of this run failed" + last
    return None


def run_study(opts: RunOptions, *, evaluator=None, model=None, callbacks: Sequence[Callable] = (),
              log: Callable[[str], None] | None = print, ray_factory: Callable | None = None):
    """Run (or resume) a study; returns it. `evaluator`/`model` may be passed in (tests, notebooks); with
    `opts.backend == "ray"`, `ray_factory(prep) -> (model, evaluator)` builds them in each Ray worker.
    Raises ValueError for a bad input (before anything is written), RunFailed when the run ends without the work
    asked for, KeyboardInterrupt (`Interrupted` for SIGTERM) when stopped."""
    t0 = time.perf_counter()
    try:
        with _stop_signals():
            return _run(opts, evaluator, model, callbacks, log, ray_factory)
    except KeyboardInterrupt as e:
        what = e.args[0] if isinstance(e, Interrupted) and e.args else "Ctrl-C"
        print(f"interrupted ({what}) after {time.perf_counter() - t0:.0f}s: finished trials are kept, a running "
              "trial is marked FAIL; run the same command again to resume (it retries that trial)",
              file=sys.stderr, flush=True)
        raise


def _run(opts, evaluator, model, callbacks, log, ray_factory):
    import optuna

    from search.storage import (
        artifact_dir,
        artifact_store,
        open_storage,
        sqlite_path,
        study_lock,
    )
    from search.workers import WorkerLock, fail_stale, recover, warn_shared_sqlite

    say = log or (lambda s: None)
    prep = prepare(opts)
    o = prep.opts
    for w in prep.warnings:
        print(f"warning: {w}", file=sys.stderr)
    db = sqlite_path(prep.storage_url)
    storage = None
    if db is None or db.exists():   # an existing study: its settings are checked before the model loads
        storage = open_storage(prep.storage_url, o.heartbeat)
        existing = load_existing(prep, storage)
        if existing is not None and _nothing_to_do(existing, prep):
            say(f"the study {prep.study_name!r} already has {finished_count(counts(existing))} finished trials "
                f"(target {o.trials}); give a larger --trials to go on")
            summary(existing, say)
            return existing
    own_metrics = evaluator is None   # a caller with its own evaluator (tests, notebooks) validates/reports itself
    if o.backend == "local":
        model, evaluator = _loaded(prep, model, evaluator, say)
    storage = storage or open_storage(prep.storage_url, o.heartbeat)
    with WorkerLock(prep.storage_url) as presence:
        # one worker at a time creates/checks the study, recovers dead trials and enqueues missing baselines
        with study_lock(prep.storage_url, prep.study_name):
            alone = presence.acquire()
            study = open_study(prep, storage)
            recovered = recover(study, alone)
            added = enqueue_baselines(study, prep)
        warn_shared_sqlite(prep.storage_url, study, o.heartbeat)
        stale = fail_stale(study)
        for line in recovered:
            say(line)
        if stale:
            say(f"failed trial(s) {stale}: their worker died (no heartbeat for {3 * (o.heartbeat or 0)}s); "
                "they are retried")
        c = counts(study, stage=1)   # --trials counts the parametric trials, not --refine's
        done = finished_count(c)
        art = artifact_dir(prep.storage_url, o.artifacts)
        say(f"study {prep.study_name!r} in {prep.storage_url}: model {prep.spec.name}, {o.steps} steps, objective "
            f"{o.objective}, rungs {list(prep.rungs)}, guidance {o.guidance}; {done} finished trial(s) of {o.trials}")
        for name, note in added:
            say(f"  enqueued baseline {name}: {note}")
        from search.refine import stage2_done
        parametric_done = done >= o.trials and not c.get("WAITING")
        if parametric_done and stage2_done(study) >= o.refine:
            say(f"the study already has {done} finished trials (target {o.trials})"
                + (f" and {stage2_done(study)} stage-2 trials (--refine {o.refine})" if o.refine else "")
                + "; give a larger --trials to go on")
            summary(study, say)
            return study
        finished_before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        stopper, refine_failure = None, None
        if o.backend == "ray":
            from search.ray_tune import run_ray
            run_ray(prep, study, storage, factory=ray_factory, log=log)
        else:
            stopper = _Stopper(o.trials, say)
            t_start = time.perf_counter()
            if not parametric_done:
                _optimize(prep, study, model, evaluator, artifact_store(art), [stopper, *callbacks], log)
            if o.refine and not stopper.gave_up:   # stage 2 (search.refine), after the parametric trials
                from search.refine import refine
                left = None if o.timeout is None else max(0.0, o.timeout - (time.perf_counter() - t_start))
                refine_failure = refine(
                    study, o.refine, lambda: _optimize(prep, study, model, evaluator, artifact_store(art), callbacks,
                                                       log, n_trials=1),
                    table=prep.table, seed=o.seed, timeout=left, say=say)
    summary(study, say, prep.storage_url, art)
    failure = _verdict(study, finished_before, stopper) or refine_failure
    if failure:
        raise RunFailed(f"study {prep.study_name!r}: {failure}", study)
    if o.backend == "local" and own_metrics:
        _finish(prep, study, model, evaluator, artifact_store(art), say)
    return study


def _finish(prep: Prepared, study, model, evaluator, artifacts, say) -> None:
    """After the search: held-out validation of the finalists (search.validate), then the study note, pictures and
    report (search.report). A validation that cannot run here is reported with the command to run it later; the
    study itself is complete either way."""
    o = prep.opts
    validation = None
    if not o.no_validate and len(study.directions) == 1:
        from search.validate import ValidateOptions, run_validation
        try:
            validation = run_validation(study, ValidateOptions(device=o.device, batch_size=o.batch_size),
                                        model=model, log=say)
        except ValueError as e:
            say(f"validation skipped: {e}\n  (run it later: python -m search.validate --study {study.study_name} "
                f"--storage {prep.storage_url})")
    if not o.no_report:
        from search.report import publish
        publish(study, model=model, evaluator=evaluator, artifact_store=artifacts,
                validation={k: v for k, v in validation.items() if k != "images"} if validation else None,
                storage_url=prep.storage_url, prompts=prep.prompts, seeds=prep.seeds, batch_size=o.batch_size,
                log=say)


def _optimize(prep: Prepared, study, model, evaluator, artifacts, callbacks, log, n_trials: int | None = None) -> None:
    """The local backend: trials one after another in this process (until a callback stops the study, or
    `n_trials` of them)."""
    from search.objective import Objective, teacher_proxy
    o = prep.opts
    objective = Objective(model=model, evaluator=evaluator, space=prep.space, prompts=prep.prompts,
                          seeds=prep.seeds, rungs=prep.rungs, multi=o.objective == "fid+clip",
                          clip_margin=o.clip_margin, artifacts=artifacts, batch_size=o.batch_size, log=log,
                          proxy=teacher_proxy(prep, model, log))
    quiet = _NoInterruptTraceback()
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet)
    t0 = time.perf_counter()
    try:
        study.optimize(objective, timeout=None if n_trials else o.timeout, n_trials=n_trials, catch=(Exception,),
                       callbacks=callbacks)
    finally:
        optuna_log.removeFilter(quiet)
    if log is not None and n_trials is None:
        log(f"ran for {time.perf_counter() - t0:.0f}s")


def summary(study, say, storage_url: str | None = None, art=None) -> None:
    import optuna
    S = optuna.trial.TrialState
    c = counts(study)
    say("trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(c.items())))
    from search.facts import study_settings
    attrs = study_settings(study.user_attrs)
    last = attrs.get("rungs", [None])[-1]
    for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)):
        if t.user_attrs.get("baseline"):
            m = trial_metrics(t, last)
            if m:
                say(f"  baseline {t.user_attrs['baseline']:15s} (trial {t.number}) n={last}: {format_metrics(m)}")
    try:
        if len(study.directions) == 1:
            best = study.best_trial
            m = trial_metrics(best, last)
            say(f"  best                     (trial {best.number}) n={last}: {format_metrics(m) if m else best.value}")
            done = study.get_trials(deepcopy=False, states=(S.COMPLETE,))
            stage2 = [t for t in done if t.user_attrs.get("stage") == 2]
            if stage2:   # --refine: the best of each stage (same prompts as the search: validate before trusting)
                for label, pool in (("best stage 1", [t for t in done if t.user_attrs.get("stage") != 2]),
                                    ("best stage 2", stage2)):
                    t = min(pool, key=lambda t: t.value, default=None)
                    if t is not None:
                        m = trial_metrics(t, last)
                        say(f"  {label:24s} (trial {t.number}) n={last}: {format_metrics(m) if m else t.value}")
        else:
            say(f"  Pareto front: trials {[t.number for t in study.best_trials]}")
    except ValueError:
        say("  no complete trial yet")
    if storage_url:
        say(f"next: optuna-dashboard {storage_url} --artifact-dir {art}\n"
            f"      python -m search.export --storage {storage_url} --study {study.study_name} --out best.json")


def main(argv=None) -> int:
    args = build_parser("python -m search.run", __doc__.split("\n\n")[0], _epilog()).parse_args(argv)
    try:
        run_study(from_args(args), log=None if args.quiet else print)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted:
        return 143
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
