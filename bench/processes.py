"""Dev servers as child processes, so their CPU does not share the benchmark's GIL
(a real ACS is another machine; in-process it would inflate the gateway's figures)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def emulator_process(latency_ms: float = 0.0) -> Iterator[str]:
    """Run `python -m devtools.acs_emulator` and yield its connection string."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.acs_emulator", "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()  # "listening on ..."
        yield process.stdout.readline().strip().split("=", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
