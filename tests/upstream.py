"""A scripted upstream on 127.0.0.1: a raw-socket server that answers each request with
whatever bytes a test gives it, so tests can play a broken or hostile ACS (stray bytes after
an answer, thousands of header lines, absurd Retry-After values, malformed bodies)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Every blocking call of the server gives up after this.
IO_TIMEOUT = 5.0


@dataclass
class Seen:
    """One request as the server read it."""

    connection: int
    head: bytes
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: Given the request, the bytes to send back (or pieces, sent PIECE_PAUSE apart) and whether
#: to close the connection after them.
Script = Callable[[Seen], "tuple[bytes | list[bytes], bool]"]
PIECE_PAUSE = 0.05


def answer(status: int, body: bytes | dict | list, *headers: str, reason: str = "X") -> bytes:
    """One whole HTTP/1.1 answer with a Content-Length."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = "".join(f"{header}\r\n" for header in headers)
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{fields}Content-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


def echo_value(seen: Seen, **fields: Any) -> dict:
    """A well-formed ACS answer: every recipient 200, with `fields` added to each."""
    return {"value": [{"to": r["to"], "httpStatusCode": 200, **fields} for r in seen.json()["recipients"]]}


class ScriptedUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._connections = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, name=f"upstream-{self.port}", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return self._connections

    def connection_string(self, access_key: str = "ZHVtbXkta2V5LWZvci10ZXN0cw==") -> str:
        return f"endpoint={self.endpoint}/;accesskey={access_key}"

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(IO_TIMEOUT)
        self._listener.close()

    def __enter__(self) -> ScriptedUpstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                index = self._connections
                self._connections += 1
                self._open.append(sock)
            threading.Thread(target=self._converse, args=(sock, index), daemon=True).start()

    def _converse(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(IO_TIMEOUT)
        pending = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(pending) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pending += data
                seen = Seen(index, head, pending[:length])
                pending = pending[length:]
                with self._lock:
                    self.requests.append(seen)
                reply, close = self.script(seen)
                for number, piece in enumerate([reply] if isinstance(reply, bytes) else reply):
                    if number:
                        time.sleep(PIECE_PAUSE)
                    if piece:
                        sock.sendall(piece)
                if close:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                if sock in self._open:
                    self._open.remove(sock)
            sock.close()
