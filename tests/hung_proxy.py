"""A TCP proxy in front of the test S3 server that can play dead, as a SIGSTOPped server does.

Once hung it still accepts connections (the kernel does that for a stopped process too)
but never answers; ``hang_on`` hangs it the moment a request mentions a marker, so a test
can stop the store in the middle of a run at a chosen write.
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit


class HungProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.hung = threading.Event()
        self.hang_on: bytes | None = None
        self.hung_at: float | None = None
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.hung.is_set():
                continue  # held open, never read, never answered
            upstream = socket.create_connection(self.upstream)
            self._sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if requests and self.hang_on is not None and self.hang_on in chunk:
                    self.hung_at = self.hung_at or time.monotonic()
                    self.hung.set()
                if self.hung.is_set():
                    return  # swallow it: the caller waits for an answer that never comes
                target.sendall(chunk)
        except OSError:
            return
        finally:
            if not self.hung.is_set():
                for each in (source, target):
                    with suppress(OSError):
                        each.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        for each in self._sockets:
            each.close()


@contextmanager
def hung_proxy(upstream_url: str) -> Iterator[HungProxy]:
    proxy = HungProxy(upstream_url)
    try:
        yield proxy
    finally:
        proxy.close()
