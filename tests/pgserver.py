"""A throwaway PostgreSQL server for tests: $HPYN_TEST_POSTGRES_URL if set, else a fresh cluster in a temp dir
started with the Debian server binaries (as the `postgres` user when running as root), else None."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    exe = shutil.which("pg_ctl")
    return os.path.dirname(exe) if exe else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    url = os.environ.get("HPYN_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = _bindir()
    if bindir is None:
        yield None
        return
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        yield None
        return
    root = tempfile.mkdtemp(prefix="hpyn-pg-")
    data, port = os.path.join(root, "data"), _free_port()

    def run(*cmd):
        cmd = [os.path.join(bindir, cmd[0]), *cmd[1:]]
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    if as_root:
        shutil.chown(root, "postgres")
    run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    run("pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start")
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)
