"""A TCP proxy between one replica and the kube-apiserver, for tests: it can stall the connections
open at a moment (bytes stop flowing both ways, the sockets stay open: a half-dead load balancer)
or reset them, while new connections pass normally. TLS goes through untouched."""

from __future__ import annotations

import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> int:
        """Stop relaying on every connection open now; returns how many."""
        with self._lock:
            for _, _, stalled in self._pairs:
                stalled.set()
            return len(self._pairs)

    def reset(self) -> int:
        """Reset (RST) every connection open now; returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream, _ in pairs:
            for sock in (client, upstream):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                except OSError:
                    pass
        return len(pairs)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.reset()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            stalled = threading.Event()
            with self._lock:
                self._pairs.append((client, upstream, stalled))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(a, b, stalled), daemon=True).start()

    @staticmethod
    def _relay(source: socket.socket, sink: socket.socket, stalled: threading.Event) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if stalled.is_set():
                    stalled.wait()  # hold everything from now on: the connection goes silent
                    threading.Event().wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
