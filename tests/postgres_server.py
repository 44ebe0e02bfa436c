"""A real, throw-away PostgreSQL server for the test session (Debian's ``postgresql`` package, never mocked).

``PostgresServer.start()`` runs ``initdb`` into a fresh temporary folder and starts ``postgres`` on 127.0.0.1 with a
free port (its Unix socket in that folder too, so nothing outside it is touched); ``new_database()`` creates an
empty database and returns its URL; ``stop()`` stops the server and removes the folder. ``initdb`` and ``postgres``
refuse to run as root, so as root they run as the ``postgres`` OS user (``runuser``) on a folder that user owns.
Missing binaries fail the session with one sentence saying what to install: the tests are never skipped.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start."""


def _bin_dir() -> Path:
    """The folder holding initdb / pg_ctl / postgres (PATH first, then Debian's versioned folders)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresUnavailable(
        "The PostgreSQL server binaries (initdb, pg_ctl) were not found; install Debian's postgresql package "
        "(apt-get install -y postgresql) to run the storage tests."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``root`` (trust authentication, loopback only, fsync off: tests only)."""

    root: Path
    port: int = 0
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    _running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(_bin_dir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="lstm-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, user=SUPERUSER, group=SUPERUSER)
        os.chmod(root, 0o700)
        server = cls(root=root)
        initdb = server._run(
            "initdb", "-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale",
            "--no-sync",
        )
        if initdb.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
        last_error = ""
        for _ in range(5):  # a free port can be taken between probing and binding: try another
            server.port = _free_port()
            options = (
                f"-p {server.port} -h 127.0.0.1 -k {root} -F -c max_connections=200 -c shared_buffers=32MB "
                "-c full_page_writes=off -c synchronous_commit=off -c timezone=UTC"
            )
            started = server._run(
                "pg_ctl", "-D", str(server.data_dir), "-l", str(server.log_file), "-o", options, "-w", "-t", "60",
                "start",
            )
            if started.returncode == 0:
                server._running = True
                atexit.register(server.stop)
                return server
            last_error = server.log_file.read_text() if server.log_file.exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL would not start: {last_error.strip()[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "test") -> str:
        """Create an empty database and return its URL (``postgresql://postgres@127.0.0.1:PORT/NAME``)."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, closing any session still on it (a killed writer's, a leaked one)."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
