"""The official JS SDK (`@azure/communication-sms`, npm) removing numbers the way a user
would without the gateway: `optOuts.remove` on each chunk of 100, one after the other. The
SDK refuses plain http, so the emulator serves TLS with a throwaway certificate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from devtools.acs_emulator import AcsEmulator, FaultConfig

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "js_sdk_remove.mjs"
SENDER = "+18005550100"


def sequential_remove(count: int, latency_ms: float) -> float:
    """Seconds the SDK took for `count` numbers, Node's start-up excluded."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required for the JS SDK figure (make node_modules/.ready)")
    with AcsEmulator(tls=True, faults=FaultConfig(latency_seconds=latency_ms / 1000)) as emulator:
        assert emulator.certificate is not None
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": emulator.certificate.ca_bundle}
        done = subprocess.run([node, str(SCRIPT), emulator.connection_string, SENDER, str(count)], check=True,
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["failed"]:
        raise RuntimeError(f"the SDK run had {answer['failed']} failed numbers")
    return float(answer["seconds"])
