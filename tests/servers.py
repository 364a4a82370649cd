"""Real servers for the tests: PostgreSQL, Mosquitto and a headless Chromium, once per test session.

They come from Debian's packages (``make system-deps``: postgresql, mosquitto, mosquitto-clients, chromium).
Each one is started by the tests themselves, on loopback only, in a temporary folder, in its own process
group (so that teardown can kill it with everything it forked), and stopped at the end of the session.
A fixture skips, with its reason, only where the binary is not installed.

Fixtures (all ``scope="session"``; registered for every test by ``tests/conftest.py``):

``postgres_server`` -> :class:`PostgresServer`
    ``.url`` and ``.dsn`` (both ``postgresql://postgres@127.0.0.1:PORT/edgeqwq``: libpq's form, which
    SQLAlchemy 2.1 and Optuna open with psycopg 3, the driver in the lock), ``.host``, ``.port``, ``.user``, ``.dbname``,
    ``.psql(sql, dbname=None, timeout=30) -> str`` (needs the ``psql`` client), ``.log_path``.
``postgres_url`` -> ``str``: ``postgres_server.url``, for ``sqlalchemy.create_engine`` and Optuna's storage.
``mosquitto_broker`` -> :class:`Broker`
    ``.url`` (``mqtt://127.0.0.1:PORT``), ``.host``, ``.port``, ``.stop()`` (SIGTERM: Mosquitto writes its
    persistence file), ``.kill()`` (SIGKILL, a crash), ``.start()``, ``.restart()``, ``.running``,
    ``.persistence_dir``, ``.log_path``. The port and the persistence folder stay the same across restarts.
    A test that stops the broker must start it again (``try/finally``); ``start()`` is a no-op when it runs.
``mosquitto_url`` -> ``str``: ``mosquitto_broker.url``.
``chromium`` -> :class:`Chromium`
    ``.screenshot(html_path, png_path, width=1280, height=800) -> Path``,
    ``.eval_page(html_path, js) -> str``, ``.dump_dom(html_path) -> str``. Each call runs one headless
    browser (``--headless --no-sandbox --disable-gpu``) with a fresh profile and no network: every request
    goes to a closed loopback port (``--proxy-server=127.0.0.1:9``, loopback included) and no host name
    resolves (``--host-resolver-rules``), so any fetch fails.

Nothing here ever talks to an address other than 127.0.0.1.
"""
from __future__ import annotations

import atexit
import html
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0  # s, for a server to accept connections
STOP_TIMEOUT = 15.0  # s, between the polite signal and SIGKILL
INSTALL_HINT = "run `make system-deps` (apt-get install {pkg})"

_RUNNING: set[subprocess.Popen] = set()  # every process group started here, for the atexit safety net


# --------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path | None, n: int = 3000) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-n:]


def wait_until(ready: Callable[[], bool], what: str, *, timeout: float = START_TIMEOUT,
               proc: subprocess.Popen | None = None, log: Path | None = None, interval: float = 0.05) -> float:
    """Poll ``ready()`` until it is true; return the seconds it took. Fails early if ``proc`` exits."""
    t0 = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - t0
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode} before it was ready\n{_tail(log)}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{_tail(log)}")
        time.sleep(interval)


def start_group(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new session/process group, stdout+stderr into ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
    _RUNNING.add(proc)
    return proc


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    """Send ``sig`` to the process group of ``proc``; after ``timeout`` s (or once the leader exited and
    reaped) SIGKILL whatever is left of the group, and reap the leader."""
    if proc is None:
        return
    pgid = proc.pid  # the leader of its own session: pgid == pid
    kill_group(pgid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    kill_group(pgid, signal.SIGKILL)  # the leader's helpers, or the leader itself when it did not exit
    proc.wait(timeout=timeout)
    _RUNNING.discard(proc)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _kill_leftovers() -> None:  # a safety net for an interrupted session; teardown normally did this
    for proc in list(_RUNNING):
        kill_group(proc.pid)


def _which(*names: str, dirs: tuple[str, ...] = ()) -> str | None:
    for d in dirs:
        for n in names:
            p = Path(d) / n
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


# ------------------------------------------------------------------------------------------ PostgreSQL
def find_postgres_bin() -> Path | None:
    """The folder with initdb and postgres: $PG_BIN, the newest /usr/lib/postgresql/<ver>/bin, or $PATH.

    (/usr/local/bin/{postgres,initdb,pg_ctl} on this machine are symlinks into /usr/lib/postgresql/15/bin.)
    """
    cands: list[Path] = []
    if os.environ.get("PG_BIN"):
        cands.append(Path(os.environ["PG_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        vers = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        cands += [v / "bin" for v in vers]
    if shutil.which("postgres"):
        cands.append(Path(os.path.realpath(shutil.which("postgres"))).parent)
    for d in cands:
        if (d / "postgres").is_file() and (d / "initdb").is_file():
            return d
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1:<port> only, trust auth."""

    user = "postgres"  # the database superuser (initdb -U), whatever the OS user runs the server
    host = LOOPBACK
    dbname = "edgeqwq"

    def __init__(self, bin_dir: Path, root: Path, os_user: str | None):
        self.bin_dir = bin_dir
        self.root = root
        self.os_user = os_user  # run through `runuser -u <os_user>` (we are root), or None: run as ourselves
        self.datadir = root / "data"
        self.sockdir = root / "sock"
        self.log_path = root / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def dsn(self) -> str:
        """The libpq URL, for psql and psycopg.connect(): postgresql://postgres@127.0.0.1:PORT/edgeqwq."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def url(self) -> str:
        """The SQLAlchemy/Optuna URL: the libpq one, which SQLAlchemy 2.1 opens with psycopg (3), the lock's."""
        return self.dsn

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self.os_user, "--", *cmd] if self.os_user else cmd

    def _run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(self._as_user(cmd), capture_output=True, text=True, timeout=START_TIMEOUT, **kw)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def init(self) -> None:
        self.sockdir.mkdir()
        if self.os_user:
            ent = pwd.getpwnam(self.os_user)
            for p in (self.root, self.sockdir):
                os.chown(p, ent.pw_uid, ent.pw_gid)
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust",
                   "--encoding=UTF8", "--locale=C", "--no-sync"])
        # trust, but only over the Unix socket and loopback
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
        # the test database, made in single-user mode: no client binaries nor driver needed
        self._run([str(self.bin_dir / "postgres"), "--single", "-D", str(self.datadir), "postgres"],
                  input=f"CREATE DATABASE {self.dbname};\n")

    def start(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            cmd = [str(self.bin_dir / "postgres"), "-D", str(self.datadir), "-k", str(self.sockdir),
                   "-h", self.host, "-p", str(self.port),
                   "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            t0 = time.monotonic()
            self.proc = start_group(self._as_user(cmd), self.log_path)

            def ready(offset: int = offset) -> bool:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    logged = b"ready to accept connections" in f.read()
                return logged and port_accepts(self.port)

            try:
                wait_until(ready, "PostgreSQL", proc=self.proc, log=self.log_path)
                self.startup_s = time.monotonic() - t0
                return
            except RuntimeError:
                stop_group(self.proc, signal.SIGINT)
                if attempt + 1 < attempts and "could not bind" in _tail(self.log_path):
                    continue  # someone took the free port in between: another one
                raise

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for every client to disconnect)
        stop_group(self.proc, signal.SIGINT)
        self.proc = None

    def psql(self, sql: str, dbname: str | None = None, timeout: float = 30) -> str:
        """Run ``sql`` with the psql client (unaligned, tuples only); return its stdout."""
        exe = _which("psql", dirs=(str(self.bin_dir),))
        if exe is None:
            pytest.skip("psql not installed (Debian package postgresql-client); " + INSTALL_HINT.format(pkg="postgresql"))
        r = subprocess.run([exe, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p",
                            str(self.port), "-U", self.user, "-d", dbname or self.dbname, "-c", sql],
                           capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        if r.returncode:
            raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr}")
        return r.stdout


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[PostgresServer]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not installed; " + INSTALL_HINT.format(pkg="postgresql"))
    os_user: str | None = None
    if _is_root():  # postgres refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser (util-linux) is missing: cannot start PostgreSQL")
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                os_user = name
                break
            except KeyError:
                pass
        if os_user is None:
            pytest.skip("running as root and there is neither a `postgres` nor a `nobody` user for PostgreSQL")
        # pytest's temporary folders are private to root (0700): the server's user could not reach them
        root = Path(tempfile.mkdtemp(prefix="edgeqwq-pg-"))
        cleanup = True
    else:
        root = tmp_path_factory.mktemp("postgres")
        cleanup = False
    server = PostgresServer(bin_dir, root, os_user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


# ------------------------------------------------------------------------------------------- Mosquitto
class Broker:
    """A Mosquitto broker on 127.0.0.1:<port>, anonymous, with persistence in its own folder.

    ``stop()`` then ``start()`` keep the port, the config and the persistence folder: what the broker
    saved (retained messages, persistent sessions and their queued QoS>0 messages) survives.
    """

    host = LOOPBACK

    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.persistence_dir = root / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.config_path = root / "mosquitto.conf"
        self.log_path = root / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.persistence_dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if _is_root():  # else it would drop to the `mosquitto` user, who cannot write our folder
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        t0 = time.monotonic()
        self.proc = start_group([self.binary, "-c", str(self.config_path)], self.log_path)
        try:
            wait_until(lambda: port_accepts(self.port), "Mosquitto", timeout=timeout, proc=self.proc,
                       log=self.log_path)
        except Exception:
            self.kill()
            raise
        self.startup_s = time.monotonic() - t0

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """A clean shutdown (SIGTERM): Mosquitto writes its persistence file before it exits."""
        stop_group(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        """A crash (SIGKILL): only what Mosquitto had already saved survives."""
        stop_group(self.proc, signal.SIGKILL, 5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mosquitto_broker(tmp_path_factory) -> Iterator[Broker]:
    exe = _which("mosquitto", dirs=("/usr/sbin", "/usr/local/sbin"))
    if exe is None:
        pytest.skip("mosquitto not installed; " + INSTALL_HINT.format(pkg="mosquitto"))
    broker = Broker(exe, tmp_path_factory.mktemp("mosquitto"))
    try:
        for attempt in range(3):
            try:
                broker.start()
                break
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in _tail(broker.log_path):
                    raise
                broker.port = free_port()  # the free port was taken in between: another one
                broker._write_config()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto_url(mosquitto_broker: Broker) -> str:
    return mosquitto_broker.url


# -------------------------------------------------------------------------------------------- Chromium
class ChromiumError(RuntimeError):
    pass


_EVAL_ID = "__edgeqwq_eval__"
# Appended after the page's own markup (the parser puts it at the end of <body>): waits for the load event
# (images decoded), evaluates the code with an indirect eval (its completion value; a promise is awaited)
# and writes {"ok": bool, "value": str} as JSON into a <pre> that --dump-dom prints.
_EVAL_SCRIPT = """
<script>
(async () => {
  const out = (r) => { const p = document.createElement('pre'); p.id = '%(id)s';
                       p.textContent = JSON.stringify(r); document.documentElement.appendChild(p); };
  try {
    if (document.readyState !== 'complete') await new Promise(r => window.addEventListener('load', r));
    const v = await (0, eval)(%(code)s);
    out({ok: true, value: typeof v === 'string' ? v : (v === undefined ? 'undefined' : JSON.stringify(v))});
  } catch (e) {
    out({ok: false, value: String(e && e.stack || e)});
  }
})();
</script>
"""


class Chromium:
    """Headless Chromium, one browser per call, with a fresh profile and no network at all."""

    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root

    def base_args(self, profile: Path) -> list[str]:
        return [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-sync", "--disable-background-networking",
            "--disable-component-update", "--disable-default-apps", "--disable-domain-reliability",
            "--disable-breakpad", "--disable-crash-reporter", "--metrics-recording-only", "--mute-audio",
            "--hide-scrollbars", "--force-device-scale-factor=1",
            # no network: every request (loopback too) goes to a closed loopback port, no name resolves
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        ]

    def run(self, url: str, *args: str, timeout: float = 60) -> str:
        """Run the browser on ``url`` with ``args``; return its stdout (stderr goes to a log on failure)."""
        work = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        out_path, log_path = work / "stdout", work / "stderr"
        try:
            with open(out_path, "wb") as out, open(log_path, "wb") as err:
                proc = subprocess.Popen([self.binary, *self.base_args(work / "profile"), *args, url],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            _RUNNING.add(proc)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_group(proc, signal.SIGKILL, 5)
                raise ChromiumError(f"chromium timed out after {timeout:.0f} s on {url}\n{_tail(log_path)}") from None
            kill_group(proc.pid)  # helpers it may have left behind
            _RUNNING.discard(proc)
            if proc.returncode:
                raise ChromiumError(f"chromium exited with {proc.returncode} on {url}\n{_tail(log_path)}")
            return out_path.read_text(errors="replace")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def screenshot(self, html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280,
                   height: int = 800, *, budget_ms: int = 2000, timeout: float = 60) -> Path:
        """Render ``html_path`` in a ``width`` x ``height`` window and write a PNG to ``png_path``."""
        png = Path(png_path).resolve()
        png.unlink(missing_ok=True)
        self.run(Path(html_path).resolve().as_uri(), f"--screenshot={png}", f"--window-size={width},{height}",
                 f"--virtual-time-budget={budget_ms}", timeout=timeout)
        if not png.is_file():
            raise ChromiumError(f"chromium wrote no screenshot for {html_path}")
        return png

    def dump_dom(self, html_path: str | os.PathLike, *, budget_ms: int = 5000, timeout: float = 60) -> str:
        """The serialized DOM of ``html_path`` after load and ``budget_ms`` of (virtual) time for scripts."""
        return self.run(Path(html_path).resolve().as_uri(), "--dump-dom", f"--virtual-time-budget={budget_ms}",
                        timeout=timeout)

    def eval_page(self, html_path: str | os.PathLike, js: str, *, budget_ms: int = 5000, timeout: float = 60) -> str:
        """Evaluate ``js`` in ``html_path`` once it has loaded; return its value as a string.

        ``js`` is a script whose completion value is the result (``"document.images[0].naturalWidth"``, or
        ``"const x = 1; x + 1"``); a promise is awaited (``"fetch('http://x/').then(() => 'ok', e => 'failed')"``).
        Strings come back as they are, anything else as JSON. A JavaScript exception raises ChromiumError.
        The page is copied next to the original (relative URLs still work) with the evaluating script
        appended, and the copy is removed afterwards.
        """
        src = Path(html_path).resolve()
        copy = src.with_name(f".{src.stem}.eval-{uuid.uuid4().hex[:8]}.html")
        code = json.dumps(js).replace("</", "<\\/")  # cannot close the <script> element
        copy.write_text(src.read_text(errors="replace") + _EVAL_SCRIPT % {"id": _EVAL_ID, "code": code})
        try:
            dom = self.dump_dom(copy, budget_ms=budget_ms, timeout=timeout)
        finally:
            copy.unlink(missing_ok=True)
        m = re.search(rf'<pre id="{_EVAL_ID}">(.*?)</pre>', dom, re.S)
        if m is None:
            raise ChromiumError(f"no result from the page within {budget_ms} ms (virtual time)")
        res = json.loads(html.unescape(m.group(1)))
        if not res["ok"]:
            raise ChromiumError(f"JavaScript error: {res['value']}")
        return res["value"]


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Iterator[Chromium]:
    exe = _which("chromium", "chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed; " + INSTALL_HINT.format(pkg="chromium"))
    yield Chromium(exe, tmp_path_factory.mktemp("chromium"))
