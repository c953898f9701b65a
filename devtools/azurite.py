"""Azurite, the Azure Storage emulator from npm, as a managed child process.

Started on loopback with free ports, in its own process group so that stopping it
also stops anything it spawned; waits until the queue service answers a real call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The pinned Azurite (package.json; runs on Node 20). OPTOUT_AZURITE_BIN may name another build: Azurite 3.35's
#: Table service slows with the table's size (Azure/Azurite#2321), which only the largest benchmark reaches.
AZURITE_BIN = Path(os.environ.get("OPTOUT_AZURITE_BIN") or REPO_ROOT / "node_modules" / ".bin" / "azurite")
ACCOUNT = "devstoreaccount1"
#: Azurite's published development key; not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT_SECONDS = 60


def azurite_version() -> str:
    """The version of the Azurite that AZURITE_BIN runs, from its package.json."""
    for folder in AZURITE_BIN.resolve().parents:
        manifest = folder / "package.json"
        if manifest.exists():
            return str(json.loads(manifest.read_text(encoding="utf-8")).get("version", "unknown"))
    return "unknown"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Azurite:
    def __init__(
        self,
        host: str = "127.0.0.1",
        blob_port: int = 0,
        queue_port: int = 0,
        table_port: int = 0,
        location: str | os.PathLike[str] | None = None,
        in_memory: bool = True,
    ) -> None:
        self.host = host
        self.blob_port = blob_port or free_port(host)
        self.queue_port = queue_port or free_port(host)
        self.table_port = table_port or free_port(host)
        self._location = location
        self._in_memory = in_memory and location is None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        base = f"http://{self.host}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def start(self) -> Azurite:
        if not AZURITE_BIN.exists():
            raise FileNotFoundError(f"{AZURITE_BIN} is missing: run `npm ci` (or `make test`) first")
        if self._location is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        location = str(self._location or self._workdir.name)  # type: ignore[union-attr]
        command = [
            str(AZURITE_BIN), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
            "--blobHost", self.host, "--blobPort", str(self.blob_port),
            "--queueHost", self.host, "--queuePort", str(self.queue_port),
            "--tableHost", self.host, "--tablePort", str(self.table_port),
        ]
        # Azurite refuses --location together with --inMemoryPersistence.
        command += ["--inMemoryPersistence"] if self._in_memory else ["--location", location]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=location,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        from azure.storage.queue import QueueServiceClient

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
                raise RuntimeError(f"Azurite exited with {self._process.returncode}: {output[-500:]}")
            try:
                client = QueueServiceClient.from_connection_string(self.connection_string, retry_total=0)
                client.get_service_properties(timeout=2)
                return
            except Exception as error:  # not listening yet
                last_error = error
                time.sleep(0.2)
        raise TimeoutError(f"Azurite did not answer within {START_TIMEOUT_SECONDS} s: {last_error}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
