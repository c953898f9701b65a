"""`python -m bench.localhost_probe [--app-dir DIR]`: the local host (`make run`) under the
probes of docs/reliability.md, measured from outside: threads and RSS of its process.

- half-sent: many connections that send part of a request head and stop;
- unauthenticated bodies: parallel clients posting large bodies without a function key;
- smuggling: Content-Length: 0 with Transfer-Encoding: chunked, a request hidden behind it.

`--app-dir` points at another checkout (e.g. the code before a fix) to compare. Dev machine
figures, not a pass/fail test; loops and waits are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

KEY = "probe-function-key"


def start_host(app_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LOCALHOST_FUNCTION_KEYS": f"default={KEY}", "PYTHONPATH": str(app_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.localhost", "--port", str(port), "--settings-file", "none.json"],
        cwd=app_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the local host did not start")


def status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = int(value.split()[0])
    return {"threads": fields["Threads"], "rss_mb": fields["VmRSS"] // 1024}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def half_sent(port: int, pid: int, count: int, wait: float) -> dict[str, object]:
    before = status(pid)
    sockets = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /api/optouts/check HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        except OSError:
            break
    time.sleep(2)
    during = status(pid)
    time.sleep(wait)
    still_open = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            data = sock.recv(1024)
            still_open += 0 if data == b"" or data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) else 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    after = status(pid)
    for sock in sockets:
        sock.close()
    return {"connections": len(sockets), "before": before, "during": during,
            f"after_{wait:.0f}s": after, "still_held_by_server": still_open}


def unauthenticated_bodies(port: int, pid: int, clients: int, size: int) -> dict[str, object]:
    before = status(pid)
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            current = status(pid)
            peak["rss_mb"] = max(peak["rss_mb"], current["rss_mb"])
            peak["threads"] = max(peak["threads"], current["threads"])
            time.sleep(0.05)

    answers: list[tuple[str, float]] = []

    def post() -> None:
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(f"POST /api/optouts/check HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode())
                block = b" " * 65536
                sent = 0
                try:
                    while sent < size:
                        sent += sock.send(block[: min(len(block), size - sent)])
                except OSError:
                    pass
                answer = sock.recv(64)
            answers.append((answer.split(b"\r\n", 1)[0].decode(errors="replace"), time.monotonic() - started))
        except OSError as error:
            answers.append((type(error).__name__, time.monotonic() - started))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    posters = [threading.Thread(target=post) for _ in range(clients)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join(timeout=120)
    done.set()
    sampler.join(timeout=5)
    return {"clients": clients, "body_mb": size // 2**20, "before": before, "peak": peak,
            "answers": sorted({a for a, _ in answers}), "slowest_answer_s": round(max(t for _, t in answers), 2)}


def smuggling(port: int) -> dict[str, object]:
    """TE.CL: a front end that reads the chunked body forwards one request; a server that reads
    Content-Length instead takes the chunk size line as the body and serves the hidden request."""
    hidden = b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    size_line = f"{len(hidden):x}\r\n".encode()
    request = (b"POST /api/optouts/check HTTP/1.1\r\nHost: 127.0.0.1\r\nx-functions-key: " + KEY.encode() +
               f"\r\nContent-Length: {len(size_line)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() +
               size_line + hidden + b"\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    statuses = [status.decode() for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    return {"answers": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.localhost_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", default=".")
    parser.add_argument("--half-sent", type=int, default=3000)
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the server to let go")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--body-mb", type=int, default=100)
    arguments = parser.parse_args()
    app_dir = Path(arguments.app_dir).resolve()
    port = free_port()
    process = start_host(app_dir, port)
    try:
        time.sleep(1)
        results = {
            "app_dir": str(app_dir),
            "smuggling": smuggling(port),
            "unauthenticated_bodies": unauthenticated_bodies(port, process.pid, arguments.clients,
                                                             arguments.body_mb * 2**20),
            "half_sent": half_sent(port, process.pid, arguments.half_sent, arguments.wait),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
