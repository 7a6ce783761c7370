"""A throwaway PostgreSQL server for tests and benchmarks (not used by the product itself).

    with TemporaryPostgres() as pg:          # initdb + pg_ctl start in a temp dir, free port
        url = pg.create_database("pdsync_test")
        ...                                  # stopped and deleted on exit

It finds `initdb`/`pg_ctl` on PATH or under /usr/lib/postgresql/<version>/bin (Debian's
`postgresql` package), listens on 127.0.0.1 only, trusts local connections (it is a test
server: no password, fsync off) and keeps its socket in its own directory. Run as root it runs
the server as the `postgres` OS user (initdb refuses root), via `runuser` or `su`.
`PostgresUnavailable` says why no server could be had.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

SERVER_USER = "postgres"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


def find_bin_dir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`, newest version first; None if absent."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for initdb in sorted(candidates, key=version, reverse=True):
        if Path(initdb).with_name("pg_ctl").exists():
            return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryPostgres:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = 0
        self.root: Path | None = None
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self._started = False

    # -- helpers ----------------------------------------------------------------------------------
    def _command(self, *args: str) -> list[str]:
        if not self._as_root:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", SERVER_USER, "--", *args]
        import shlex

        return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(args)]

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run(  # noqa: S603 - fixed programs, our own arguments
            self._command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    @property
    def admin_url(self) -> str:
        """The URL of the server's `postgres` database (superuser, no password)."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> TemporaryPostgres:
        """initdb and start the server; raises `PostgresUnavailable` with the reason."""
        if self.bin_dir is None:
            raise PostgresUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under "
                "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package"
            )
        if self._as_root:
            try:
                import pwd

                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no `{SERVER_USER}` OS user to run the "
                    "server as (initdb refuses root)"
                ) from None
        # As root the server runs as `postgres`, who must reach the directory: /tmp always
        # lets it through, a $TMPDIR under /root would not.
        parent = "/tmp" if self._as_root and os.path.isdir("/tmp") else None  # noqa: S108
        self.root = Path(tempfile.mkdtemp(prefix="pdsync-pg-", dir=parent))
        if self._as_root:
            os.chown(self.root, account.pw_uid, account.pw_gid)
        data, sockets, logfile = self.root / "data", self.root / "sockets", self.root / "log"
        initdb, pg_ctl = str(self.bin_dir / "initdb"), str(self.bin_dir / "pg_ctl")
        try:
            self._run(
                initdb, "-D", str(data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync",
            )  # fmt: skip
            self._run("mkdir", "-p", str(sockets))
            last_error: PostgresUnavailable | None = None
            for _ in range(5):  # the free port may be taken before the server binds it
                self.port = free_port()
                options = (
                    f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200"
                )
                try:
                    self._run(
                        pg_ctl, "-D", str(data), "-o", options, "-l", str(logfile), "-w",
                        "-t", str(START_TIMEOUT_S), "start",
                    )  # fmt: skip
                except PostgresUnavailable as exc:
                    last_error = exc
                    continue
                self._started = True
                break
            else:
                raise last_error or PostgresUnavailable("the server did not start")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            engine = sa.create_engine(self.admin_url, poolclass=sa.pool.NullPool)
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return
            except sa.exc.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"the server does not answer: {exc}") from None
                time.sleep(0.2)
            finally:
                engine.dispose()

    def create_database(self, name: str) -> str:
        """Create database `name` (letters, digits, underscores) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and underscores: {name!r}")
        engine = sa.create_engine(
            self.admin_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (immediately) and delete its directory. Idempotent."""
        if self.root is None:
            return
        if self._started and self.bin_dir is not None:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                    "-m", "immediate", "-w", "stop",
                )  # fmt: skip
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
