"""Storage URL → Optuna storage: the one place a study's storage is made.

An SQLAlchemy URL: `sqlite:///studies/hpyn.db` (default; a file relative to the working directory, one worker
at a time) or `postgresql://user:pass@host/db` (many workers and machines; `pip install hpyn[postgres]`).
A bare `postgresql://` URL uses whichever PostgreSQL driver is installed: SQLAlchemy 2.1 reads it as psycopg
(version 3), so when only psycopg2 is installed it is rewritten to `postgresql+psycopg2://` (`engine_url`).
Artifacts (image grids) go to a folder: next to an SQLite file (`studies/artifacts/`) unless given.

`study_lock(url, name)` serialises "create or load a study, check it, enqueue baselines" across processes and
machines (PostgreSQL advisory lock, MySQL GET_LOCK, a lock file beside an SQLite file); `open_storage` is
`get_storage` with heartbeats (search.workers explains how a dead worker's trials are found and retried).

`check_url` only reads (it creates no folder or file); `get_storage` creates the SQLite file's folder and
connects. A server that cannot be reached is a one-line error naming the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DEFAULT_STORAGE",
    "artifact_dir",
    "artifact_store",
    "backend_of",
    "check_url",
    "connect_error",
    "engine_url",
    "get_storage",
    "lock_key",
    "open_storage",
    "redact",
    "sqlite_path",
    "study_lock",
]

DEFAULT_STORAGE = "sqlite:///studies/hpyn.db"
DEFAULT_HEARTBEAT = 30          # seconds between heartbeats of a running trial; grace period = 3x
GRACE_FACTOR = 3
LOCK_TIMEOUT = 600.0            # seconds to wait for another worker's study set-up
CONNECT_TIMEOUT = 10   # seconds to reach a database server
POSTGRES_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))   # (module, SQLAlchemy driver), preferred first


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _parse(url):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"--storage {url!r} is empty: give an SQLAlchemy URL such as {DEFAULT_STORAGE}")
    try:
        return make_url(url)
    except ArgumentError:
        raise ValueError(f"--storage {url!r} is not an SQLAlchemy URL; examples: {DEFAULT_STORAGE}, "
                         "sqlite:////abs/path/study.db, postgresql://user:pass@host:5432/db") from None


def engine_url(url: str) -> str:
    """The URL to connect with: a bare postgresql:// gets the driver that is installed (psycopg, else psycopg2)."""
    parsed = _parse(url)
    if parsed.drivername != "postgresql":
        return url
    for module, driver in POSTGRES_DRIVERS:
        if _installed(module):
            return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    raise ValueError(f"--storage {redact(url)!r} needs a PostgreSQL driver: pip install 'hpyn[postgres]' "
                     "(or psycopg[binary], or psycopg2-binary)")


def check_url(url: str):
    """Parse and check an SQLAlchemy URL without connecting or writing; errors name the URL and what is wrong."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    parsed = make_url(engine_url(url))
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"--storage {redact(url)!r}: unknown database {parsed.drivername!r}; use sqlite:///FILE "
                         "or postgresql://... (any SQLAlchemy dialect Optuna supports)") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise ValueError(f"--storage {url!r}: an in-memory SQLite database cannot keep a study; give a file, "
                             f"e.g. {DEFAULT_STORAGE}")
        path = Path(db).expanduser().resolve()
        if path.is_dir():
            raise ValueError(f"--storage {url!r}: {path} is a folder; give a database file inside it")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"--storage {url!r}: {parent} is a file, so {path.parent} cannot be made")
        if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
            raise ValueError(f"--storage {url!r}: no permission to write {path if path.exists() else parent}")
    else:
        try:
            dialect.import_dbapi()
        except ImportError as e:
            raise ValueError(f"--storage {redact(url)!r} needs the database driver {e.name or ''} "
                             "(PostgreSQL: pip install 'hpyn[postgres]')") from None
    return parsed


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL, else None."""
    parsed = check_url(url)
    return Path(parsed.database).expanduser().resolve() if parsed.get_backend_name() == "sqlite" else None


def redact(url: str) -> str:
    """The URL with its password hidden (for logs and exported provenance)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used for messages
        return url


def connect_error(url: str, e: BaseException) -> ValueError:
    """A one-line error for a storage that cannot be opened, naming the server (or file) and the cause."""
    from sqlalchemy.engine import make_url
    cause = getattr(e, "orig", None) or e
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        where = f"the SQLite file {parsed.database}"
    else:
        where = f"host {parsed.host or 'localhost'}" + (f":{parsed.port}" if parsed.port else "")
    return ValueError(f"--storage {redact(url)!r}: cannot open it at {where} ({type(cause).__name__}: {first})")


def get_storage(url: str = DEFAULT_STORAGE, *, heartbeat_interval: int | None = None,
                grace_period: int | None = None, retry_failed: int | None = None):
    """An `optuna.storages.RDBStorage` for `url` (the SQLite file's folder is created if needed).

    heartbeat_interval / grace_period: let Optuna mark trials of a dead worker as failed (needed with many
    workers); retry_failed: re-enqueue such trials up to that many times (search.trials.RetryCallback).
    """
    import warnings

    import optuna

    from search.trials import RetryCallback

    parsed = check_url(url)
    engine_kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
        try:
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--storage {url!r}: cannot create its folder ({e.strerror})") from None
    else:
        engine_kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = None
            if retry_failed is not None and heartbeat_interval is not None:
                callback = RetryCallback(max_retry=retry_failed)
            return optuna.storages.RDBStorage(engine_url(url), engine_kwargs=engine_kwargs,
                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                              heartbeat_stale_trial_callback=callback)
    except Exception as e:  # noqa: BLE001 - connection problems of any driver, a file that is not a database
        raise connect_error(url, e) from None


# ---- sharing a study between workers (see search.workers) ----------------------------------------------------
def backend_of(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', ... (the SQLAlchemy backend name) of a storage URL."""
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
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

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
    connect_args = {"connect_timeout": 10} if backend == "postgresql" else {}
    engine = create_engine(engine_url(url), poolclass=NullPool, connect_args=connect_args)
    try:
        try:
            conn = engine.connect()
        except DBAPIError as e:
            raise connect_error(url, e) from None
        with conn:
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
    kw = {}
    if heartbeat:
        kw = {"heartbeat_interval": int(heartbeat), "grace_period": int(heartbeat) * GRACE_FACTOR,
                  "retry_failed": retries}
    with study_lock(url, "__schema__"):
        return get_storage(url, **kw)


def artifact_dir(url: str, override: str | Path | None = None) -> Path:
    """Where trial artifacts go: `override`, else `artifacts/` beside an SQLite file, else ./studies/artifacts."""
    if override is not None:
        return Path(override)
    db = sqlite_path(url)
    return db.parent / "artifacts" if db is not None else Path("studies") / "artifacts"


def artifact_store(path: str | Path):
    from optuna.artifacts import FileSystemArtifactStore
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
