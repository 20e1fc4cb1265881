"""A real PostgreSQL server for the tests: started from the system binaries in a temp dir on a free
port, listening on 127.0.0.1 only, stopped at the end of the session (also after failures).

``.ci/run`` installs the binaries (Debian's ``postgresql`` package); where they cannot be found the
tests that use the fixture are skipped with that reason. As root, initdb/pg_ctl run as the
``postgres`` system user (initdb refuses root).

Roles: ``postgres`` connects from 127.0.0.1 without a password (trust); ``hpo_user`` needs its
password (scram-sha-256), so a wrong password is refused for real.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

DATABASE = "hpo_test"
PASSWORD_USER = "hpo_user"
PASSWORD = "right-pw"


@dataclass(frozen=True)
class PostgresServer:
    port: int
    data_dir: Path

    @property
    def url(self) -> str:  # trust auth for the postgres role: no password in the URL
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def password_url(self, password: str = PASSWORD) -> str:
        return f"postgresql://{PASSWORD_USER}:{password}@127.0.0.1:{self.port}/{DATABASE}"


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, else initdb's folder on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(command: list[str]) -> list[str]:
    """As root, run a server binary as the postgres system user (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], timeout: float = 120) -> None:
    done = subprocess.run(_as_owner(command), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")


def _start(bin_dir: Path, base: Path) -> PostgresServer:
    data = base / "data"
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
          "--no-sync", "--no-instructions"])
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
    )
    last_error: Exception | None = None
    for _ in range(3):  # the free port can be taken between our probe and the server's bind
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        try:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", options,
                  "-w", "-t", "60", "start"])
        except RuntimeError as error:
            last_error = error
            continue
        psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        _run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"])
        _run([*psql, "-d", "postgres", "-c", f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'"])
        _run([*psql, "-d", DATABASE, "-c", f"GRANT ALL ON SCHEMA public TO {PASSWORD_USER}"])
        return PostgresServer(port=port, data_dir=data)
    log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
    raise RuntimeError(f"PostgreSQL did not start: {last_error}; log: {log[-2000:]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason='the PostgreSQL driver is an extra: pip install -e ".[postgres]"')
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
                    "or on PATH; install the system package `postgresql` (.ci/run does)")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` system user to run initdb as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and `runuser` is missing: cannot run initdb as postgres")
    # Not under pytest's tmp dirs: those are 0700 root-owned, and the postgres user must reach its data.
    base = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
    if os.geteuid() == 0:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server: PostgresServer | None = None
    try:
        server = _start(bin_dir, base)
        yield server
    finally:
        if (base / "data" / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/hpo_test`` of a running server (trust auth)."""
    return postgres_server.url
