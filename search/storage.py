"""Storage URL → Optuna storage: the one place a study's storage is made.

An SQLAlchemy URL: `sqlite:///studies/hpyn.db` (default; a file relative to the working directory, one worker
at a time) or `postgresql://user:pass@host/db` (many workers and machines; `pip install hpyn[postgres]`).
Artifacts (image grids) go to a folder: next to an SQLite file (`studies/artifacts/`) unless given.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_STORAGE", "check_url", "get_storage", "artifact_dir", "artifact_store", "redact"]

DEFAULT_STORAGE = "sqlite:///studies/hpyn.db"


def check_url(url: str):
    """Parse and check an SQLAlchemy URL without connecting; errors name the URL and say what is wrong."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"--storage {url!r} is empty: give an SQLAlchemy URL such as {DEFAULT_STORAGE}")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"--storage {url!r} is not an SQLAlchemy URL; examples: {DEFAULT_STORAGE}, "
                         "sqlite:////abs/path/study.db, postgresql://user:pass@host:5432/db") from None
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
        parent = Path(db).expanduser().resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--storage {url!r}: cannot create folder {parent} ({e.strerror})") from None
    else:
        try:
            dialect.import_dbapi()
        except ImportError as e:
            raise ValueError(f"--storage {redact(url)!r} needs the database driver {e.name or ''} "
                             "(PostgreSQL: pip install psycopg2-binary, or hpyn[postgres])") from None
    return parsed


def redact(url: str) -> str:
    """The URL with its password hidden (for logs and exported provenance)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used for messages
        return url


def get_storage(url: str = DEFAULT_STORAGE, *, heartbeat_interval: int | None = None,
                grace_period: int | None = None, retry_failed: int | None = None):
    """An `optuna.storages.RDBStorage` for `url`.

    heartbeat_interval / grace_period: let Optuna mark trials of a dead worker as failed (needed with many
    workers); retry_failed: re-enqueue such trials up to that many times (`RetryHeartbeatStaleTrialCallback`).
    """
    import warnings

    import optuna

    parsed = check_url(url)
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = None
            if retry_failed is not None and heartbeat_interval is not None:
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retry_failed)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                              heartbeat_stale_trial_callback=callback)
    except Exception as e:  # noqa: BLE001 - connection problems of any driver
        raise ValueError(f"--storage {redact(url)!r}: cannot open it ({type(e).__name__}: {e})") from None


def artifact_dir(url: str, override: str | Path | None = None) -> Path:
    """Where trial artifacts go: `override`, else `artifacts/` beside an SQLite file, else ./studies/artifacts."""
    if override is not None:
        return Path(override)
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        return Path(parsed.database).expanduser().resolve().parent / "artifacts"
    return Path("studies") / "artifacts"


def artifact_store(path: str | Path):
    from optuna.artifacts import FileSystemArtifactStore
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
