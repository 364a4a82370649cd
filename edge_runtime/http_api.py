"""The service's HTTP side: /healthz, /readyz, /metrics (Prometheus), /status (JSON), /latest.jpg.

    >>> api = HttpApi("127.0.0.1:8080", view)   # view: an object with the methods of `ServiceView`
    >>> api.start(); ...; api.close()            # doctest: +SKIP

The server runs in its own threads and only reads what the service loop publishes. No client, and no number
of clients, can take the service's descriptors or stall its loop (issue 11, finding 4):

* one thread (`http`) does all the network I/O without blocking (`selectors`): accepts, reads request
  heads, writes answers; a connection costs a socket, never a thread, and a client that reads its answer
  slowly holds only its socket;
* at most `max_connections` sockets are open (a quarter of the descriptor limit, 256 at most), so the
  camera, the store and the model always find descriptors: a connection over the cap closes the oldest one
  that has not sent a whole request yet or, when every slot holds a request, is answered 503 at once;
* a request head must arrive whole within `request_timeout` seconds of the connect, else the socket is
  closed (half-open and slowloris sockets); an answer must be read within the same time;
* `workers` threads (1 by default) build the answers, one at a time each, so the Python work done for HTTP
  is bounded whatever the number of clients. Measured (bench/http_load_bench.py, 2 cores, 1000 idle sockets
  and 200 clients): with 4 workers the frame loop kept 64-79 % of its idle decisions/s (GIL contention),
  with 1 worker 99-100 %; nice +10 on 4 workers gave 80-98 %, not consistently, so it is not used. Probes
  and scrapes (/healthz, /readyz, /metrics) are answered before /status and /latest.jpg, and scrapes
  queued together share one /metrics body made after they all arrived (a scrape's p99 under that load:
  ~100 ms before, 45-60 ms after);
* accept failing for want of descriptors (EMFILE/ENFILE, used up elsewhere in the process) lowers the cap,
  closes the oldest idle connections and pauses accepting briefly when there are none, with one warning
  line a minute, not a traceback each time;
* with a bearer token (`token_file`), every route but /healthz and /readyz (systemd and k8s probes) asks for
  `Authorization: Bearer <token>`, else 401.
"""
from __future__ import annotations

import collections
import errno
import hmac
import io
import itertools
import json
import queue
import resource
import selectors
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Protocol

from edge_runtime.errors import EdgeError

ROUTES = ("/healthz", "/readyz", "/metrics", "/status", "/latest.jpg")
PROBES = ("/healthz", "/readyz")  # answered without a token: systemd/k8s probes carry none
MAX_HEAD = 128 * 1024  # a request head larger than this is answered 414/431 without waiting for its end
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_BUSY_BODY = b"busy: too many requests; try again\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class ServiceView(Protocol):
    registry: object  # prometheus_client.CollectorRegistry

    def healthz(self) -> tuple[bool, str]: ...
    def readyz(self) -> tuple[bool, str]: ...
    def status(self) -> dict: ...
    def latest_jpeg(self) -> bytes | None: ...


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT', '[::1]:PORT') -> (host, port); EdgeError for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise EdgeError(f"--http {text}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def read_token(path: str) -> str:
    """The bearer token held in the file `path` (surrounding whitespace stripped); EdgeError when the file
    is missing, unreadable, empty or holds more than one word of printable ASCII. The token is never shown."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as e:
        raise EdgeError(f"--http-token-file {path}: cannot read it ({e.strerror or e})") from None
    token = raw.strip()
    if not token:
        raise EdgeError(f"--http-token-file {path}: the file is empty; put the token in it")
    if len(raw) > 4096 or not all(0x21 <= b <= 0x7E for b in token):
        raise EdgeError(f"--http-token-file {path}: expected one token of printable ASCII without spaces "
                        "(at most 4096 characters), e.g. from `openssl rand -hex 32`")
    return token.decode("ascii")


def default_max_connections() -> int:
    """A quarter of this process's descriptor limit (RLIMIT_NOFILE), between 8 and 256."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    return max(8, min(256, soft // 4))


class HttpApi:
    def __init__(self, address: str, view: ServiceView, token_file: str | None = None, *,
                 workers: int = 1, max_connections: int | None = None, request_timeout: float = 5.0):
        host, port = parse_host_port(address)
        self.view = view
        token = read_token(token_file) if token_file else None
        try:
            self.server = HttpServer((host, port), _handler(view, token), workers=workers,
                                     max_connections=max_connections, request_timeout=request_timeout)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise EdgeError(f"--http {address}: port {port} is already in use (another edge-qwq?); "
                                "stop it or choose another port") from None
            raise EdgeError(f"--http {address}: cannot listen there ({e.strerror})") from None
        self.port = self.server.server_address[1]

    def start(self) -> "HttpApi":
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close()


class _Conn:
    """A connection, owned by the selector thread except while a worker answers it: reading its request
    head (`buf`), then, once answered, writing what is left of the answer (`out`), then, after an oversized
    head, draining what the client still sends (`draining`)."""
    __slots__ = ("sock", "addr", "deadline", "buf", "complete", "asked", "out", "draining")

    def __init__(self, sock: socket.socket, addr, deadline: float):
        self.sock, self.addr, self.deadline, self.buf = sock, addr, deadline, bytearray()
        self.complete, self.asked, self.out, self.draining = False, 0.0, memoryview(b""), False

    @property
    def head(self) -> bytes:
        return bytes(self.buf)


class HttpServer:
    """An HTTP/1.0 server on one selector thread and a fixed pool of workers (see the module docstring).

    The selector thread does all the network I/O, without blocking: accept, read request heads, write
    answers. Workers only run `handler` (a BaseHTTPRequestHandler subclass) on a head already in memory and
    hand the answer back, so a client that reads slowly holds a socket, never a worker. Counters (`accepted`,
    `evicted`, `timed_out`, `refused`, `fd_exhausted`) are for tests and benchmarks."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, workers: int = 1,
                 max_connections: int | None = None, request_timeout: float = 5.0, backlog: int = 256):
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=backlog)  # SO_REUSEADDR
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()[:2]
        self.handler = handler
        self.max_connections = max_connections or default_max_connections()
        self.request_timeout = request_timeout
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()  # workers wake the selector to write their answers
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._reading: dict[int, _Conn] = {}  # fd -> reading a request head, oldest first (dicts keep order)
        self._writing: dict[int, _Conn] = {}  # fd -> writing an answer (or draining)
        self._busy = 0  # queued for a worker or being answered (and not yet back in _writing)
        self._lock = threading.Lock()
        self._ready: queue.PriorityQueue = queue.PriorityQueue()  # (priority, seq, _Conn | None)
        self._answered: collections.deque[_Conn] = collections.deque()  # from the workers, to write
        self._seq = itertools.count()
        self._closing = threading.Event()
        self._paused_until = 0.0  # accepting paused (out of descriptors) until then
        self._backoff = 0.05
        self._warned_at = self._bug_reported_at = -1e9
        self.accepted = self.evicted = self.timed_out = self.refused = self.fd_exhausted = 0
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._workers = [threading.Thread(target=self._work, name=f"http-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]

    @property
    def open_connections(self) -> int:
        return len(self._reading) + self._busy + len(self._writing)

    def start(self) -> None:
        for t in self._workers:
            t.start()
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for _ in self._workers:
            self._ready.put((9, next(self._seq), None))
        for t in self._workers:
            if t.is_alive():
                t.join(5)
        for c in [*self._reading.values(), *self._writing.values(), *self._answered]:
            self._close(c)
        while not self._ready.empty():
            c = self._ready.get_nowait()[2]
            if c is not None:
                c.sock.close()
        self._sel.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # ---------------------------------------------------------------- the selector thread
    def _serve(self) -> None:
        while not self._closing.is_set():
            now = time.monotonic()
            if self._paused_until and now >= self._paused_until:
                self._paused_until = 0.0
                self._sel.register(self._listener, selectors.EVENT_READ, None)
            timeout = 0.2
            if self._reading:
                timeout = min(timeout, max(0.0, next(iter(self._reading.values())).deadline - now))
            for key, _ in self._sel.select(timeout):
                c = key.data
                if c is None:
                    self._accept()
                elif c is _WAKE:
                    self._take_answers()
                elif self._reading.get(key.fd) is c:  # (not evicted by an accept earlier in this batch)
                    self._read(c)
                elif self._writing.get(key.fd) is c:
                    self._drain(c) if c.draining else self._write(c)
            self._expire(time.monotonic())

    def _accept(self) -> None:
        for _ in range(64):  # then read the connections already there before accepting more
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_FDS and self._out_of_descriptors(e):
                    continue  # descriptors given back: take the next connection with one
                return  # ECONNABORTED and the like: that client gave up
            self.accepted += 1
            self._backoff = 0.05
            if self.open_connections >= self.max_connections and not self._evict_oldest():
                self._refuse(sock)
                continue
            sock.setblocking(False)
            c = _Conn(sock, addr, time.monotonic() + self.request_timeout)
            self._reading[sock.fileno()] = c
            self._sel.register(sock, selectors.EVENT_READ, c)
            self._read(c)  # a real client's request is often there already: it leaves the evictable set now

    def _recv(self, c: _Conn) -> bytes | None:
        """What the client sent (None: nothing yet); closes the connection when the client closed or reset it."""
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._close(c)
            return None
        return data

    def _read(self, c: _Conn) -> None:
        data = self._recv(c)
        if data is None:  # nothing yet, or closed (or reset) before a whole request
            return
        c.buf += data
        c.complete = _head_complete(c.buf)
        if c.complete or len(c.buf) > MAX_HEAD:
            c.asked = time.monotonic()
            self._sel.unregister(c.sock)
            del self._reading[c.sock.fileno()]
            with self._lock:
                self._busy += 1
            self._ready.put((_priority(c.buf), next(self._seq), c))

    def _take_answers(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._answered:
            c = self._answered.popleft()
            with self._lock:
                self._busy -= 1
            self._writing[c.sock.fileno()] = c
            self._sel.register(c.sock, selectors.EVENT_WRITE, c)
            self._write(c)

    def _write(self, c: _Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(c)
            return
        c.out = c.out[n:]
        if c.out:
            return
        if c.complete:
            self._close(c)
            return
        # after an oversized head: read (and drop) what the client still sends for a moment, so that closing
        # does not reset the connection before it has read the answer
        c.draining, c.deadline = True, time.monotonic() + 1.0
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(c)
            return
        self._sel.modify(c.sock, selectors.EVENT_READ, c)

    def _drain(self, c: _Conn) -> None:
        self._recv(c)  # dropped

    def _expire(self, now: float) -> None:
        while self._reading:
            c = next(iter(self._reading.values()))
            if c.deadline > now:
                break
            self.timed_out += 1
            self._close(c)
        for c in [c for c in self._writing.values() if c.deadline <= now]:
            self.timed_out += not c.draining
            self._close(c)

    def _evict_oldest(self) -> bool:
        """Close the connection that has waited longest without sending a whole request; False if none."""
        if not self._reading:
            return False
        self.evicted += 1
        self._close(next(iter(self._reading.values())))
        return True

    def _close(self, c: _Conn) -> None:
        fd = c.sock.fileno()
        if self._reading.get(fd) is c:
            del self._reading[fd]
            self._sel.unregister(c.sock)
        elif self._writing.get(fd) is c:
            del self._writing[fd]
            self._sel.unregister(c.sock)
        c.sock.close()

    def _refuse(self, sock: socket.socket) -> None:
        """503 at once, for a connection over the cap when every slot holds a request being answered."""
        self.refused += 1
        try:
            sock.setblocking(False)
            sock.recv(65536)  # what the client sent already: unread, it would turn our close into a reset
        except OSError:
            pass
        try:
            sock.send(_BUSY)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def _out_of_descriptors(self, e: OSError) -> bool:
        """accept() found no descriptor (the rest of the process holds more than the cap allowed for): lower
        the cap to 3/4 of what is open and close the oldest idle connections down to it, so the camera and
        the store get descriptors back (True: accept again). With none to close, stop accepting for a moment
        (the listener stays readable, so retrying at once would spin). A warning line a minute at most."""
        self.fd_exhausted += 1
        self.max_connections = min(self.max_connections, max(4, self.open_connections * 3 // 4))
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            print(f"edge-qwq: warning: http: cannot accept a connection ({e.strerror}); at most "
                  f"{self.max_connections} connections from now on", file=sys.stderr, flush=True)
        evicted = self._evict_oldest()
        while self.open_connections > self.max_connections and self._evict_oldest():
            pass
        if evicted:
            return True
        self._sel.unregister(self._listener)
        self._paused_until = now + self._backoff
        self._backoff = min(1.0, self._backoff * 2)
        return False

    # ---------------------------------------------------------------- the workers
    def _work(self) -> None:
        while True:
            c = self._ready.get()[2]
            if c is None:
                return
            try:
                answer = self.handler(c, c.addr, self).wfile.getvalue()
            except Exception:  # noqa: BLE001 (a bug in a route: say so, keep serving)
                self._report_bug()
                answer = b""
            sent = 0
            if answer and not self._closing.is_set():
                try:
                    sent = c.sock.send(answer)  # non-blocking: all of it, mostly
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    answer = b""
            if not answer or self._closing.is_set() or (sent == len(answer) and c.complete):
                c.sock.close()
                with self._lock:
                    self._busy -= 1
                continue
            c.out, c.deadline = memoryview(answer)[sent:], time.monotonic() + self.request_timeout
            self._answered.append(c)  # the selector thread writes the rest (without blocking a worker)
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass  # the wake socket is full: the selector thread is awake anyway

    def _report_bug(self) -> None:
        now = time.monotonic()
        if now - self._bug_reported_at >= 60:  # a traceback a minute at most
            self._bug_reported_at = now
            print("edge-qwq: warning: http: a request failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)


_WAKE = object()


def _head_complete(buf: bytearray) -> bool:
    """The request head has arrived whole: its blank line, or a request line without a version (no
    headers follow; the handler answers it)."""
    nl = buf.find(b"\n")
    if nl < 0:
        return False
    return len(buf[:nl].split()) < 3 or b"\n\r\n" in buf or b"\n\n" in buf


def _priority(head: bytearray) -> int:
    """Probes and scrapes first (they must answer under load), then the rest in arrival order."""
    line = bytes(head[:head.find(b"\n")]).split()
    path = line[1].split(b"?", 1)[0] if len(line) > 1 else b""
    return 0 if path in (b"/healthz", b"/readyz", b"/metrics") else 1


def _handler(view: ServiceView, token: str | None = None) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode() if token else None
    scraped = [-1.0, b""]  # the last /metrics body and when it was made

    def metrics_body(asked: float) -> bytes:
        """The registry's text for a request whole at `asked` (time.monotonic()): the last one made, if made
        since then (it is as fresh as a new one would be, for that request), else a new one. A flood of
        scrapes queued together costs one; scrapes one after the other each get a new one."""
        from prometheus_client import generate_latest

        if scraped[0] < asked:
            now = time.monotonic()
            scraped[1], scraped[0] = generate_latest(view.registry), now
        return scraped[1]

    class Handler(BaseHTTPRequestHandler):
        request: _Conn

        def setup(self) -> None:  # the head was read by the selector thread, which also writes the answer
            self.connection = self.request.sock
            self.rfile = io.BytesIO(self.request.head)
            self.wfile = io.BytesIO()

        def finish(self) -> None:
            pass  # the server sends wfile's bytes and closes the socket

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            if not self.request.complete:  # over MAX_HEAD in all, each line and the count within limits
                self.send_error(431, "Request header fields too large")
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = self.path.split("?", 1)[0]
            try:
                if expected is not None and route not in PROBES and not self._authorized():
                    return
                if route in PROBES:
                    ok, why = view.healthz() if route == "/healthz" else view.readyz()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", (why + "\n").encode())
                elif route == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST

                    self._send(200, CONTENT_TYPE_LATEST, metrics_body(self.request.asked))
                elif route == "/status":
                    body = json.dumps(view.status(), indent=1, default=str).encode()
                    self._send(200, "application/json", body)
                elif route == "/latest.jpg":
                    jpg = view.latest_jpeg()
                    if jpg is None:
                        self._send(503, "text/plain; charset=utf-8", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpg)
                else:
                    self._send(404, "text/plain; charset=utf-8",
                               b"not found; try /healthz /readyz /metrics /status /latest.jpg\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _authorized(self) -> bool:
            """`Authorization: Bearer <token>`, compared in constant time; else 401 (and False)."""
            got = self.headers.get("Authorization", "")
            scheme, _, value = got.strip().partition(" ")
            given = b"Bearer " + value.strip().encode("latin-1", "replace")
            if scheme.lower() == "bearer" and hmac.compare_digest(given, expected):
                return True
            challenge = 'Bearer realm="edge-qwq"' + (', error="invalid_token"' if got else "")
            self._send(401, "text/plain; charset=utf-8", b"unauthorized: send Authorization: Bearer <token>\n",
                       {"WWW-Authenticate": challenge})
            return False

        def _send(self, code: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args) -> None:  # no per-request lines in the journal
            pass

    return Handler
