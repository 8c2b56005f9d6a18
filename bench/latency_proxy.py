"""A TCP proxy on 127.0.0.1 that adds network latency: what S3 or Domino cost from another machine.

Every byte is forwarded unchanged (TLS, HTTP, anything), each direction `rtt / 2` later than it arrived, so a
request and its answer take `rtt` longer than on loopback; a new connection also waits one `rtt` before its
first byte goes through (the TCP handshake of a real network; a real TLS handshake would add one or two more),
unless `handshake=False`.
Bandwidth is not limited. The proxy counts connections and HTTP requests (a client chunk that starts with an
HTTP method), so a benchmark can say how many round trips a command made.

    with LatencyProxy("127.0.0.1", moto_port, rtt=0.030) as proxy:
        ... endpoint_url = proxy.url ...
        print(proxy.requests)

Used by bench/remote.py; tests may reuse it (tests/test_latency_proxy.py), but never to assert a time.
"""
from __future__ import annotations

import collections
import re
import socket
import threading
import time
from typing import Any

_REQUEST = re.compile(rb"^(GET|HEAD|PUT|POST|DELETE|PATCH|OPTIONS) \S+ HTTP/1\.[01]\r\n")
_AGENT = re.compile(rb"\r\nuser-agent: *([^/\s\r]+)", re.IGNORECASE)
CHUNK = 65536


class LatencyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, rtt: float = 0.0, *, handshake: bool = True) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rtt = rtt            # may be changed while running (e.g. 0 while setting up, then the figure's)
        # False: a new connection costs nothing extra. For a server that closes every connection (moto's answers
        # say `Connection: close`) where the real one keeps them open (S3): its clients' pools would be warm.
        self.handshake = handshake
        self.requests = 0
        self.connections = 0
        self.by_method: collections.Counter[str] = collections.Counter()
        self.by_agent: collections.Counter[str] = collections.Counter()  # User-Agent's product: Boto3, python-requests, Python-urllib
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)

    def start(self) -> "LatencyProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for s in list(self._open):
                try:
                    s.close()
                except OSError:
                    pass

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.connections = 0
            self.by_method.clear()
            self.by_agent.clear()

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "connections": self.connections, "by_method": dict(self.by_method),
                    "by_agent": dict(self.by_agent)}

    # -- forwarding ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        if self.rtt and self.handshake:
            time.sleep(self.rtt)  # the handshake's round trip
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((client, upstream))
        done = threading.Event()
        for src, dst, count in ((client, upstream, True), (upstream, client, False)):
            _Pipe(self, src, dst, count, done).start()

    def _saw(self, data: bytes) -> None:
        m = _REQUEST.match(data)
        if m:
            agent = _AGENT.search(data)
            with self._lock:
                self.requests += 1
                self.by_method[m.group(1).decode()] += 1
                self.by_agent[agent.group(1).decode(errors="replace") if agent else "?"] += 1

    def _closed(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._open.discard(s)
                try:
                    s.close()
                except OSError:
                    pass


class _Pipe:
    """One direction of one connection: a reader stamps each chunk, a writer sends it `rtt / 2` later, in order."""

    def __init__(self, proxy: LatencyProxy, src: socket.socket, dst: socket.socket, count: bool,
                 done: threading.Event) -> None:
        self.proxy, self.src, self.dst, self.count, self.done = proxy, src, dst, count, done
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.ready = threading.Condition()

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            if self.count and data:
                self.proxy._saw(data)
            with self.ready:
                self.queue.append((time.monotonic() + self.proxy.rtt / 2, data or None))
                self.ready.notify()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                due, data = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:  # the source closed: pass the end on, and close when both directions are done
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if self.done.is_set():
                    self.proxy._closed(self.src, self.dst)
                self.done.set()
                return
            try:
                self.dst.sendall(data)
            except OSError:
                self.proxy._closed(self.src, self.dst)
                return
