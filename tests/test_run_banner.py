"""`make run` (`python -m devtools.localhost` on the gateway itself) for a first-time user: the
banner tells the senders, the embedded Azurite's connection string and the queue names, and the
queues (the change events' one too) and the results container exist before anything was sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

REPO = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90
EMULATOR_SENDER = "+18005550100"


def test_make_run_banner_has_everything_a_first_run_needs(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ACS_", "OPTOUT_", "KEY_VAULT", "AzureWebJobs", "AzureFunctionsJobHost"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.localhost", "--port", "0", "--settings-file", str(tmp_path / "none.json"),
         "--function-key", "default=banner-key"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and not any("Press Ctrl+C" in line for line in lines):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
        banner = "".join(lines)

        assert f"  default: {EMULATOR_SENDER}" in banner
        assert f"  allowed: {EMULATOR_SENDER}" in banner
        connection = next(line.strip().split("=", 1)[1] for line in lines
                          if line.strip().startswith("AzureWebJobsStorage="))
        assert "AccountName=devstoreaccount1" in connection and "QueueEndpoint=http://127.0.0.1:" in connection
        for label, name in (("requests queue", "optout-requests"), ("results queue", "optout-results"),
                            ("poison queue", "optout-requests-poison"), ("events queue", "optout-events")):
            assert any(line.strip().startswith(f"{label}:") and line.strip().split()[2] == name for line in lines)
            # Created at start: a first run can read the results queue before any result exists.
            QueueClient.from_connection_string(connection, name).get_queue_properties()
        assert "results blob container: optout-results" in banner
        assert ContainerClient.from_connection_string(connection, "optout-results").exists()

        # The printed curl works as printed, with the printed sender as the default.
        curl = next(line for line in lines if line.strip().startswith("curl "))
        url = curl.split("'")[1]
        request = urllib.request.Request(url, data=json.dumps({"phoneNumbers": ["+14255550100"]}).encode(),
                                         headers={"x-functions-key": "banner-key", "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert body["sender"] == EMULATOR_SENDER and body["summary"]["succeeded"] == 1
        # And the whole local setup is ready: settings, key, emulator, Azurite with its queues.
        ready = urllib.request.Request(url.replace("/optouts/check", "/health/ready"),
                                       headers={"x-functions-key": "banner-key"})
        with urllib.request.urlopen(ready, timeout=30) as answer:
            assert json.loads(answer.read())["status"] == "ready"

        # The end-user keyword loop, as printed: the emulator applies STOP and the event reaches the audit trail.
        sms_curl = next(line for line in lines if "/emulator/sms:receive" in line)
        sms_url, sms_body = sms_curl.split("'")[1], sms_curl.split("-d '", 1)[1].rsplit("'", 1)[0]
        request = urllib.request.Request(sms_url, data=sms_body.encode(), headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            sent = json.loads(answer.read())
        assert (sent["keyword"], sent["optedOut"], sent["delivered"]) == ("STOP", True, True)
        history_url = url.replace("/optouts/check", "/optouts/%2B14255550100/history")
        records: list[dict] = []
        while time.monotonic() < deadline + WAIT_SECONDS and not records:
            with urllib.request.urlopen(urllib.request.Request(history_url, headers={"x-functions-key": "banner-key"}),
                                        timeout=30) as answer:
                records = json.loads(answer.read())["value"]
            time.sleep(0.2)
        assert [(r["channel"], r["endUser"], r["action"]) for r in records] == [("keyword", True, "add")]

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
