"""The eventlet WSGI server with limits, and a graceful stop.

`socketio.run` gives eventlet's defaults: 1,024 connections, no header or idle
timeout, Nagle's algorithm on, and a listener bound with SO_REUSEPORT (a second
server on the same port starts happily). This is eventlet's own accept loop,
kept small, with:
- MAX_CONNECTIONS open at once (file-descriptor soft limit raised to match);
  beyond it, or beyond MAX_CONNECTIONS_PER_IP from one address, a short
  503/429 answer and close instead of a queue that holds everyone;
- HEADER_TIMEOUT for a request line and headers (slowloris), IDLE_TIMEOUT for
  a keep-alive or silent socket;
- TCP_NODELAY on every accepted socket (tokens leave at once);
- `Drain`: SIGTERM/SIGINT stop accepting, running turns get SHUTDOWN_GRACE.

And one fix to the HTTP clients under eventlet: `keep_idle_checks_off_the_hub`
(compat.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import resource
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable

with warnings.catch_warnings():  # eventlet is in maintenance mode: a known, accepted choice
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.wsgi
    from eventlet import greenio

from compat import (  # noqa: E402
    keep_idle_checks_off_the_hub,  # noqa: F401 - app.py calls it here
    wsgi_protocol,
)

log = logging.getLogger("jellychat.serving")

MAX_REFUSALS = 512  # refusal greenthreads at once; beyond, refused sockets just close


class PortBusy(RuntimeError):
    pass


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit toward the hard limit (enough for `wanted` sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + 1024)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted + 64:
        log.warning("open-file limit %d is below MAX_CONNECTIONS=%d; raise it (ulimit -n)", soft, wanted)
    return soft


def bind(host: str, port: int, backlog: int = 2048):
    """A listening green socket, or PortBusy. Never SO_REUSEPORT: a busy port is an error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, address = infos[0][0], infos[0][4]
        return eventlet.listen(address, family, backlog=backlog, reuse_port=False)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(f"port {port} on {host} is already in use by another process") from None
        if exc.errno == errno.EACCES:
            raise PortBusy(f"no permission to listen on port {port} on {host}") from None
        raise


def check_port_free(host: str, port: int) -> None:
    """For the server we do not bind ourselves (threading): PortBusy if taken."""
    bind(host, port).close()


class Drain:
    """Shutdown state the chat can see: `is_draining`, and the running-turn count.

    `count_running` defaults to turns entered through `track()`; the run
    registry can replace it with its own count.
    """

    def __init__(self):
        self.is_draining = False
        self._running = 0
        self.count_running: Callable[[], int] = lambda: self._running

    @contextlib.contextmanager
    def track(self):
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1

    def running(self) -> int:
        try:
            return int(self.count_running())
        except Exception:  # noqa: BLE001 - a broken counter must not block shutdown
            return 0

    def wait(self, grace: float, sleep=eventlet.sleep) -> int:
        """Wait until no turn runs or `grace` seconds pass; the number still running."""
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            sleep(0.05)
        return self.running()


class HeaderTimeout(socket.timeout):
    pass


class GuardedProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet's protocol with TCP_NODELAY and a deadline for request line + headers.

    The first request of a connection must arrive complete within HEADER_TIMEOUT;
    later ones may wait IDLE_TIMEOUT for their first byte (keep-alive), then get
    HEADER_TIMEOUT for the rest. A socket.timeout ends the connection quietly.
    """

    _timer = None
    _served = 0

    def setup(self):
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _read_request_line(self):
        header_timeout = self.server.header_timeout
        if self._served:
            # keep-alive: the next request may take IDLE_TIMEOUT to start
            try:
                self.connection.settimeout(self.server.keepalive)
                if not self.rfile.peek(1):
                    return ""
            except OSError:
                return ""
        self._timer = eventlet.Timeout(header_timeout, HeaderTimeout("request headers too slow"))
        self._served += 1
        return super()._read_request_line()

    def parse_request(self):
        try:
            return super().parse_request()
        finally:
            self._cancel()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            self._cancel()

    def _cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _refuse(client, status: str, message: str, retry_after: int) -> None:
    """Answer a refused connection with one short HTTP response, read what it sent, close."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: {retry_after}\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    try:
        client.settimeout(2)
        client.sendall(head + body)
        client.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and client.recv(65536):
            pass  # drain so closing does not reset the answer away
    except OSError:
        pass
    finally:
        client.close()


def serve(app, sock, *, max_connections: int, max_per_ip: int, header_timeout: float,
          idle_timeout: float, drain: Drain, log_output: bool = False) -> None:
    """Accept on `sock` until `drain.is_draining`; then stop accepting and return.

    Connections still open are left to the caller (see `close_connections`).
    """
    server = eventlet.wsgi.Server(
        sock, sock.getsockname(), app, log=logging.getLogger("jellychat.http"),
        protocol=wsgi_protocol(GuardedProtocol), keepalive=idle_timeout, socket_timeout=idle_timeout,
        log_output=log_output, debug=False,
        minimum_chunk_size=0,  # write each chunk of a streamed body (SSE events) at once
    )
    server.header_timeout = header_timeout
    pool = eventlet.GreenPool(max_connections)
    per_ip: Counter[str] = Counter()
    connections: dict = {}
    refusing = [0]
    serve.connections = connections  # for close_connections and the benchmarks

    def closed(_thread, conn):
        connections.pop(id(conn), None)
        ip = conn[0][0]
        per_ip[ip] -= 1
        if per_ip[ip] <= 0:
            del per_ip[ip]
        conn[2] = eventlet.wsgi.STATE_CLOSE
        greenio.shutdown_safe(conn[1])
        conn[1].close()

    def refuse(client, status, message, retry_after):
        refusing[0] += 1
        try:
            _refuse(client, status, message, retry_after)
        finally:
            refusing[0] -= 1

    log.info("accepting up to %d connections (%s per address)", max_connections,
             max_per_ip or "no cap")
    while not drain.is_draining:
        try:
            client, address = sock.accept()
        except OSError as exc:
            if drain.is_draining:
                break
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("cannot accept: %s", exc.strerror)
                eventlet.sleep(0.1)
                continue
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EINTR):
                continue
            raise
        if drain.is_draining:
            client.close()
            break
        ip = address[0] if isinstance(address, tuple) else str(address)
        refusal = None
        if pool.free() == 0:
            refusal = ("503 Service Unavailable", "the server is at its connection limit", 5)
        elif max_per_ip and per_ip[ip] >= max_per_ip:
            refusal = ("429 Too Many Requests", "too many connections from your address", 10)
        if refusal:
            if refusing[0] < MAX_REFUSALS:
                eventlet.spawn_n(refuse, client, *refusal)
            else:
                client.close()
            continue
        client.settimeout(idle_timeout)
        per_ip[ip] += 1
        conn = [address, client, eventlet.wsgi.STATE_IDLE]
        connections[id(conn)] = conn
        pool.spawn(server.process_request, conn).link(closed, conn)
    with contextlib.suppress(OSError):
        sock.close()


def close_connections() -> int:
    """Shut down every connection `serve` still holds (idle websockets, keep-alives)."""
    conns = list(getattr(serve, "connections", {}).values())
    for conn in conns:
        conn[2] = eventlet.wsgi.STATE_CLOSE
        greenio.shutdown_safe(conn[1])
    return len(conns)
