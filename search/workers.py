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
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["DEFAULT_HEARTBEAT", "backend_of", "lock_key", "study_lock", "open_storage", "worker_seed",
           "fail_stale", "warn_shared_sqlite", "live_workers", "main"]

DEFAULT_HEARTBEAT = 30          # seconds between heartbeats of a running trial; grace period = 3x
GRACE_FACTOR = 3
LOCK_TIMEOUT = 600.0            # seconds to wait for another worker's study set-up


def backend_of(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', ... (the SQLAlchemy backend name) of a storage URL."""
    from search.storage import check_url
    return check_url(url).get_backend_name()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name (stable across processes, machines and Python versions)."""
    return int.from_bytes(hashlib.sha256(f"hpyn:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another worker holds {path} for more than {timeout:.0f}s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def study_lock(url: str, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold a lock named `name` shared by every process that uses the storage `url` (see the module docstring).

    The lock lives on its own connection (not Optuna's), so Optuna's writes inside the block commit as usual and
    a waiting worker sees them once it gets the lock."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from search.storage import check_url
    parsed = check_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = Path(parsed.database).expanduser().resolve()
        with _file_lock(db.with_name(db.name + ".lock"), timeout):
            yield
        return
    if backend not in ("postgresql", "mysql", "mariadb"):
        yield   # no portable lock: correct for one worker; use PostgreSQL for many
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                key = lock_key(name)
                conn.execute(text(f"SET lock_timeout = {int(timeout * 1000)}"))
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            else:
                lname = f"hpyn:{hashlib.sha256(name.encode()).hexdigest()[:48]}"
                got = conn.execute(text("SELECT GET_LOCK(:n, :t)"), {"n": lname, "t": int(timeout)}).scalar()
                if got != 1:
                    raise TimeoutError(f"another worker holds the lock {lname!r} for more than {timeout:.0f}s")
                try:
                    yield
                finally:
                    conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lname})
    finally:
        engine.dispose()


def open_storage(url: str, heartbeat: int | None = DEFAULT_HEARTBEAT, retries: int = 1):
    """`search.storage.get_storage` with heartbeats (grace period 3x) and one retry of a dead worker's trial.

    The first connection to an empty database creates Optuna's tables; with many workers starting at once that
    runs under the lock, since concurrent `CREATE TABLE`s on PostgreSQL can fail."""
    from search.storage import get_storage
    kw = {}
    if heartbeat:
        kw = dict(heartbeat_interval=int(heartbeat), grace_period=int(heartbeat) * GRACE_FACTOR,
                  retry_failed=retries)
    with study_lock(url, "__schema__"):
        return get_storage(url, **kw)


def worker_seed(seed: int, n_existing: int, worker_index: int) -> int:
    """The sampler seed of a worker: reproducible for one worker, different for workers that start together."""
    return seed * 7919 + n_existing + 104_729 * worker_index


def fail_stale(study) -> list[int]:
    """Fail the trials of dead workers now (heartbeat older than the grace period); the retry callback re-enqueues
    them. Returns their numbers. Optuna also does this whenever a worker starts a trial."""
    import optuna
    S = optuna.trial.TrialState
    before = {t.number for t in study.get_trials(deepcopy=False, states=(S.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(S.RUNNING,))}
    return sorted(before - after - {t.number for t in study.get_trials(deepcopy=False, states=(S.COMPLETE,
                                                                                              S.PRUNED))})


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


def launch(run_args: Sequence[str], gpus: Sequence[str] | None = None, cpu_workers: int = 0,
           stagger: float = 0.0) -> int:
    """Run one `python -m search.run RUN_ARGS` per GPU (or `cpu_workers` CPU processes); returns the worst rc."""
    if "--storage" not in run_args and not any(a.startswith("--storage=") for a in run_args):
        raise ValueError("give the shared study's --storage (postgresql://...): every worker must use the same one")
    slots = [("gpu" + g, {"CUDA_VISIBLE_DEVICES": g}) for g in (gpus or [])]
    slots += [(f"cpu{i}", {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
              for i in range(cpu_workers)]
    if not slots:
        raise ValueError("no workers: give --gpus or --cpu-workers")
    procs = []
    for i, (tag, env) in enumerate(slots):
        if i and stagger:
            time.sleep(stagger)
        p = subprocess.Popen([sys.executable, "-u", "-m", "search.run", *run_args], env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=_pump, args=(p, tag), daemon=True).start()
        procs.append(p)
    try:
        rcs = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        rcs = [p.wait() for p in procs]
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


if __name__ == "__main__":
    raise SystemExit(main())
