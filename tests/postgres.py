"""A throwaway PostgreSQL server on loopback for storage tests (Debian's postgresql package).

Started with initdb/pg_ctl in a temporary folder on a free 127.0.0.1 port, as the ``postgres``
user when the tests run as root (initdb refuses root), and stopped afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _run(cmd: list[str], as_postgres: bool) -> None:
    if as_postgres:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


class Server:
    """A running private server: its URL, and stop/start/restart as an operator (or a failover) would."""

    def __init__(self, bindir: Path, data: Path, log: Path, port: int, as_postgres: bool) -> None:
        self.bindir, self.data, self.log, self.port, self.as_postgres = bindir, data, log, port, as_postgres
        self.url = f"postgresql+psycopg2://autotradeoff@127.0.0.1:{port}/studies"

    def _ctl(self, *args: str) -> None:
        _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args], self.as_postgres)

    def start(self) -> None:
        self._ctl("-o", f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a failover."""
        self._ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def postgres_server():
    """Yield an SQLAlchemy URL of a fresh database on a private PostgreSQL server."""
    with postgres() as server:
        yield server.url


@contextmanager
def postgres():
    """Yield a ``Server`` with a fresh database, stopped and removed afterwards."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server not installed (apt-get install postgresql); .ci/run installs it")
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="autotradeoff-pg-"))
    data = root / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if as_postgres:
        shutil.chown(root, "postgres")
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "autotradeoff", "--no-sync"], as_postgres)
        server = Server(bindir, data, root / "log", port, as_postgres)
        server.start()
        _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "autotradeoff", "studies"], as_postgres)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], as_postgres)
        shutil.rmtree(root, ignore_errors=True)
