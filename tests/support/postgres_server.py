"""A throwaway PostgreSQL server for the tests and the benchmark: started on a free loopback port, removed after."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.service_process import LOOPBACK, free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why and what to install."""


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise PostgresUnavailable(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


class ThrowawayPostgres:
    """initdb + pg_ctl in a temporary directory; as the postgres user when the tests run as root.

    ``durable`` keeps PostgreSQL's fsync on, as a benchmark needs; tests turn it off for speed.
    """

    def __init__(self, *, durable: bool = False) -> None:
        """Prepare (not start) a server on a free loopback port."""
        self._durable = durable
        self._directory = Path(tempfile.mkdtemp(prefix="trading-orders-pg-"))
        self.port = free_port()
        # initdb and pg_ctl refuse to run as root.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> ThrowawayPostgres:
        """Create the cluster and start it; raises PostgresUnavailable with the server's own words."""
        initdb = _binary("initdb")
        if self._as:
            shutil.chown(self._directory, "postgres")
        data = self._directory / "data"
        self._run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self._start_server()
        return self

    def _start_server(self) -> None:
        options = f"-p {self.port} -k {self._directory} -c listen_addresses={LOOPBACK}"
        if not self._durable:
            options += " -c fsync=off"
        data = self._directory / "data"
        log = self._directory / "server.log"
        self._run([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])

    def crash(self) -> None:
        """Stop the server at once, as a crash would (no shutdown checkpoint; every connection cut)."""
        self._run([_binary("pg_ctl"), "-D", str(self._directory / "data"), "-m", "immediate", "-w", "stop"])

    def start_again(self) -> None:
        """Start the server after crash(), on the same port and data (it recovers from its WAL)."""
        self._start_server()

    def _run(self, command: list[str]) -> None:
        result = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(command[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def new_database(self) -> str:
        """A new empty database on the server; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run(
            [_binary("psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {name}"]
        )
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        data = self._directory / "data"
        if data.exists():
            subprocess.run(
                [*self._as, _binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
            )
        shutil.rmtree(self._directory, ignore_errors=True)
