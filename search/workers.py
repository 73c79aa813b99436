"""Many workers on one study: locks, stale-trial recovery, worker seeds, and a one-process-per-GPU launcher.

Several `python -m search.run ... --storage postgresql://...` processes (on one machine or many) work on one study:

* Trials: Optuna's RDB storage hands each trial to exactly one worker (a new trial number is a row insert; an
  enqueued/retried WAITING trial is claimed by a conditional state update), so numbers and enqueued trials are
  never shared. Each worker's TPE sampler gets its own seed (`worker_seed`) and `constant_liar=True`, so two
  workers that start together do not propose the same parameter sets.
* Study creation and baselines: `study_lock(url, study)` serialises "create or load the study, check its settings,
  enqueue the missing baselines" across processes and machines: a PostgreSQL session advisory lock
  (`pg_advisory_lock`, keyed by the study name; released by the server if the holder dies), MySQL `GET_LOCK`, or
  an `fcntl` lock file beside an SQLite file. Why a lock rather than "whoever creates the study enqueues": a study
  is created and *then* given its settings attribute, so a loser of the creation race could read it half made;
  and a resumed study re-enqueues a baseline that failed, which two restarting workers would otherwise both do.
* Worker death: the storage records a heartbeat per running trial (`--heartbeat S`, default 30 s). A trial whose
  heartbeat is older than the grace period (3·S) belongs to a dead worker: the next worker that starts a trial
  (or `fail_stale`) marks it FAIL and `RetryHeartbeatStaleTrialCallback` enqueues a copy (same parameters and
  baseline tags, system attr `failed_trial` = the dead trial's number) that the next free worker runs. Finished
  trials are never touched; a restarted worker simply resumes the study.
* Killed on SQLite: every run holds a shared lock on `DB.workers.lock` (`WorkerLock`) while it works. A run that
  starts (under the study lock) and finds no other holder knows that no live process runs a trial of this file,
  so every RUNNING trial is dead (SIGKILL, power loss): `recover` fails it with a `fail_reason` and enqueues a
  copy at once, without waiting for the heartbeat grace period. It also retries, once, a trial that was
  interrupted (Ctrl-C, SIGTERM: failed with the reason "interrupted (...)").
* SQLite is the single-worker default: `warn_shared_sqlite` says so (stderr) when it sees another live worker on
  the same SQLite study. A journal file storage would allow several processes on one machine, but Optuna's
  journal storage has no heartbeat, so a killed worker's trial would stay RUNNING forever: use PostgreSQL
  (a local server is one `apt-get install postgresql` away) for more than one worker.

Launcher, one worker process per GPU (each loads the model and the metrics once and runs trials one at a time on
its GPU, `CUDA_VISIBLE_DEVICES` set to that GPU)::

    python -m search.workers --gpus all -- --model sd15 --steps 5 --reference coco2014:/data/coco \\
        --storage postgresql://hpyn:secret@dbhost/hpyn
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = [
    "WorkerLock",
    "check_run_args",
    "fail_stale",
    "launch",
    "live_workers",
    "main",
    "recover",
    "warn_shared_sqlite",
]

from search.storage import GRACE_FACTOR, backend_of


def fail_stale(study) -> list[int]:
    """Fail the trials of dead workers now (heartbeat older than the grace period), each with a `fail_reason`,
    and retry them (the storage's stale-trial callback, search.trials.RetryCallback). Returns their numbers.
    Optuna also fails stale trials whenever a worker starts a trial (then without a reason on the failed trial;
    its retried copy has `retry_reason`)."""
    import copy

    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    storage = study._storage   # (Optuna's cache in front of the RDBStorage)
    if not is_heartbeat_enabled(storage):
        return []
    grace = getattr(getattr(storage, "_backend", storage), "grace_period", None) or \
        GRACE_FACTOR * storage.get_heartbeat_interval()
    why = f"its worker died: no heartbeat for {grace}s (killed or lost); retried"
    failed = []
    for tid in storage._get_stale_trial_ids(study._study_id):
        try:
            storage.set_trial_user_attr(tid, "fail_reason", why)
            if storage.set_trial_state_values(tid, state=optuna.trial.TrialState.FAIL):
                failed.append(tid)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass   # another worker failed or finished it meanwhile
    callback = storage.get_heartbeat_stale_trial_callback()
    for tid in failed:
        if callback is not None:
            callback(study, copy.deepcopy(storage.get_trial(tid)))
    return sorted(storage.get_trial(tid).number for tid in failed)


INTERRUPTED = "interrupted"   # prefix of the fail_reason of a trial stopped by Ctrl-C or SIGTERM (search.trials)


class WorkerLock:
    """On SQLite, a shared lock on `DB.workers.lock` that every running worker holds; `acquire()` (called inside
    `study_lock`) says whether this process is the only live one. Elsewhere it does nothing and says False."""

    def __init__(self, url: str):
        from search.storage import sqlite_path
        db = sqlite_path(url)
        self.path = db.with_name(db.name + ".workers.lock") if db is not None else None
        self._file = None

    def acquire(self) -> bool:
        import fcntl
        if self.path is None:
            return False
        self._file = open(self.path, "a+")  # noqa: SIM115 - held open (and locked) until release()
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self._file.fileno(), fcntl.LOCK_SH)   # held (shared) until release: "a live worker is here"
        return alone

    def release(self) -> None:
        if self._file is not None:
            self._file.close()   # closing the file drops the lock (and the kernel drops it when a process dies)
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def recover(study, alone: bool) -> list[str]:
    """Fail and retry trials that no live process runs; returns a line per trial for the log.

    alone (SQLite, this process holds the only worker lock): every RUNNING trial is dead. Always: a trial that
    was interrupted (Ctrl-C, SIGTERM) and has not been retried yet is retried once."""
    import optuna

    from search.trials import retry
    S = optuna.trial.TrialState
    storage, lines = study._storage, []
    if alone:
        why = ("its process died while running it (killed: no live process holds the SQLite study's worker "
               "lock); retried")
        for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", why)
                storage.set_trial_state_values(t._trial_id, state=S.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            retry(study, storage.get_trial(t._trial_id), why)
            lines.append(f"trial {t.number} was RUNNING but {why}")
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        reason = str(t.user_attrs.get("fail_reason", ""))
        if t.state == S.FAIL and reason.startswith(INTERRUPTED) and t.number not in retried \
                and retry(study, t, f"trial {t.number} was {reason}"):
            lines.append(f"trial {t.number} was {reason}; retried")
    return lines


def live_workers(study, heartbeat: int | None) -> int:
    """How many trials other workers are running now (RUNNING with a fresh heartbeat, or any RUNNING trial when
    heartbeats are off)."""
    import optuna
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running or not heartbeat:
        return len(running)
    storage = study._storage
    try:
        stale = set(storage._get_stale_trial_ids(study._study_id))
    except Exception:  # noqa: BLE001 - a storage without heartbeats
        stale = set()
    return sum(1 for t in running if t._trial_id not in stale)


def warn_shared_sqlite(url: str, study, heartbeat: int | None, log=None) -> bool:
    """On SQLite, warn (stderr) when another worker is running trials of this study; True if it warned."""
    if backend_of(url) != "sqlite":
        return False
    n = live_workers(study, heartbeat)
    if n:
        msg = (f"warning: {n} trial(s) of study {study.study_name!r} are running in another process on this SQLite "
               "file. SQLite is the single-worker default: several workers on one file contend for its lock and "
               "a killed worker's trial is only noticed after the heartbeat grace period. For several workers use "
               "PostgreSQL: --storage postgresql://USER:PASS@HOST/DB (see README, 'Many workers').")
        (log or (lambda s: print(s, file=sys.stderr)))(msg)
        return True
    return False


# ---- launcher: one worker process per GPU -------------------------------------------------------------
def _gpu_ids(spec: str) -> list[str]:
    if spec == "all":
        try:
            import torch
            n = torch.cuda.device_count()
        except Exception:  # noqa: BLE001
            n = 0
        if n == 0:
            raise ValueError("--gpus all: no CUDA device is visible (use --cpu-workers N on a CPU machine)")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return visible.split(",")[:n] if visible else [str(i) for i in range(n)]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids:
        raise ValueError(f"--gpus {spec!r}: give 'all' or a list like 0,1,2,3")
    return ids


def _pump(proc: subprocess.Popen, tag: str) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        sys.stdout.write(f"[{tag}] {line}")
        sys.stdout.flush()


def check_run_args(run_args: Sequence[str]) -> None:
    """The workers' search.run arguments, checked as each worker will check them (before any worker starts)."""
    from search.options import build_parser, from_args
    from search.study import prepare
    if "--storage" not in run_args and not any(a.startswith("--storage=") for a in run_args):
        raise ValueError("give the shared study's --storage (postgresql://...): every worker must use the same one")
    parser = build_parser("python -m search.run", "", "")
    parser.exit_on_error = False
    try:
        args, unknown = parser.parse_known_args(list(run_args))
    except argparse.ArgumentError as e:
        raise ValueError(f"search.run argument {e}") from None
    if unknown:
        raise ValueError(f"search.run does not know the argument(s) {' '.join(unknown)} (python -m search.run --help)")
    prepare(from_args(args))


def launch(run_args: Sequence[str], gpus: Sequence[str] | None = None, cpu_workers: int = 0,
           stagger: float = 0.0) -> int:
    """Run one `python -m search.run RUN_ARGS` per GPU (or `cpu_workers` CPU processes); returns the worst rc.
    Every argument is checked before the first worker starts; if starting one fails, the started ones stop."""
    if isinstance(cpu_workers, bool) or not isinstance(cpu_workers, int) or not 0 <= cpu_workers <= 1024:
        raise ValueError(f"--cpu-workers {cpu_workers!r}: give a whole number of worker processes, 0 to 1024")
    if not isinstance(stagger, (int, float)) or not 0 <= stagger <= 3600:
        raise ValueError(f"--stagger {stagger!r}: give seconds between worker starts, 0 to 3600")
    slots = [("gpu" + g, {"CUDA_VISIBLE_DEVICES": g}) for g in (gpus or [])]
    slots += [(f"cpu{i}", {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
              for i in range(cpu_workers)]
    if not slots:
        raise ValueError("no workers: give --gpus or --cpu-workers")
    check_run_args(run_args)
    procs: list[subprocess.Popen] = []
    try:
        for i, (tag, env) in enumerate(slots):
            if i and stagger:
                time.sleep(stagger)
            p = subprocess.Popen([sys.executable, "-u", "-m", "search.run", *run_args], env={**os.environ, **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            threading.Thread(target=_pump, args=(p, tag), daemon=True).start()
            procs.append(p)
        rcs = [p.wait() for p in procs]
    except BaseException:
        # Ctrl-C, SIGTERM or a failed start: stop every worker as on Ctrl-C (each marks its trial FAIL, keeps the
        # finished ones), so none is left orphaned
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        rcs = [p.wait() for p in procs]
        if not procs:
            raise
        return max(rcs, key=abs) or 130
    return max(rcs, key=abs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m search.workers",
        description="Run one search.run worker per GPU on one shared study (same arguments for every worker).",
        epilog="example:\n  python -m search.workers --gpus all -- --model sd15 --steps 5 --reference "
               "coco2014:/data/coco --storage postgresql://hpyn:secret@localhost/hpyn\n"
               "  (on several machines: run the same command on each; they share the study through PostgreSQL)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", help="'all' or a list of GPU ids, e.g. 0,1,2,3: one worker process per GPU")
    p.add_argument("--cpu-workers", type=int, default=0, help="CPU worker processes (no GPU)")
    p.add_argument("--stagger", type=float, default=0.0, help="seconds between worker starts")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the search.run arguments")
    a = p.parse_args(argv)
    run_args = a.run_args[1:] if a.run_args[:1] == ["--"] else a.run_args
    try:
        gpus = _gpu_ids(a.gpus) if a.gpus else None
        return launch(run_args, gpus=gpus, cpu_workers=a.cpu_workers, stagger=a.stagger)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before any worker started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
