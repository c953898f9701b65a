"""The local host's queue side against a real Azurite: delivery, retries, poison, encoding."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from devtools.azurite import Azurite
from devtools.localhost import LocalHost

HERE = Path(__file__).parent
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


def deliveries(record_dir: Path) -> list[dict]:
    path = record_dir / "deliveries.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def run_sample(app: str, azurite: Azurite, tmp_path: Path) -> tuple[LocalHost, QueueClient, QueueClient]:
    queue_name = f"sample-{uuid.uuid4().hex[:8]}"
    host = LocalHost(app_dir=HERE / app, settings={
        "SAMPLE_QUEUE": queue_name,
        "SAMPLE_RECORD_DIR": str(tmp_path),
        "AzureWebJobsStorage": azurite.connection_string,
    }).start()
    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue_name}-poison")
    return host, queue, poison


def test_plain_text_messages_are_processed_and_deleted(azurite: Azurite, tmp_path: Path) -> None:
    host, queue, poison = run_sample("sample_app", azurite, tmp_path)
    try:
        bodies = [json.dumps({"n": n, "text": "ünïcode"}) for n in range(10)]
        for body in bodies:
            queue.send_message(body)
        wait_for(lambda: len(deliveries(tmp_path)) >= 10, "ten deliveries")
        wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0, "an empty queue")
    finally:
        host.stop()
    seen = deliveries(tmp_path)
    assert sorted(d["body"] for d in seen) == sorted(bodies)
    assert {d["dequeue_count"] for d in seen} == {1}
    assert poison.get_queue_properties().approximate_message_count == 0


def test_failing_message_is_retried_then_poisoned_byte_identical(azurite: Azurite, tmp_path: Path) -> None:
    host, queue, poison = run_sample("sample_app", azurite, tmp_path)
    original = 'please fail — "exactly" as sent\u00a0'
    try:
        queue.send_message(original)
        wait_for(lambda: poison.get_queue_properties().approximate_message_count == 1, "the poison message")
    finally:
        host.stop()
    attempts = [d for d in deliveries(tmp_path) if d["body"] == original]
    assert [d["dequeue_count"] for d in attempts] == [1, 2, 3]  # host.json maxDequeueCount
    assert [m.content for m in poison.receive_messages()] == [original]
    assert queue.get_queue_properties().approximate_message_count == 0


def test_base64_encoding_decodes_and_rejects_non_base64(azurite: Azurite, tmp_path: Path) -> None:
    host, queue, poison = run_sample("sample_app_base64", azurite, tmp_path)
    try:
        queue.send_message(base64.b64encode(b"decoded by the host").decode())
        queue.send_message("not base64 at all!")
        wait_for(lambda: any(d["body"] == "decoded by the host" for d in deliveries(tmp_path)), "the delivery")
        wait_for(lambda: poison.get_queue_properties().approximate_message_count == 1, "the poison message")
    finally:
        host.stop()
    assert [m.content for m in poison.receive_messages()] == ["not base64 at all!"]
    assert all(d["body"] != "not base64 at all!" for d in deliveries(tmp_path))  # never bound


def test_cli_prints_banner_serves_and_stops_on_sigterm(azurite: Azurite, tmp_path: Path) -> None:
    env = {**os.environ, "SAMPLE_QUEUE": "sample-cli", "SAMPLE_RECORD_DIR": str(tmp_path),
           "AzureWebJobsStorage": azurite.connection_string, "ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:9/;accesskey=cHc="}
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.localhost", "--app-dir", str(HERE / "sample_app"), "--port", "0",
         "--function-key", "default=cli-key"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=Path(__file__).parents[2],
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and not any("Press Ctrl+C" in line for line in lines):
            lines.append(process.stdout.readline())
        banner = "".join(lines)
        assert "Function key 'default': cli-key" in banner
        url = next(line.split()[2] for line in lines if line.strip().startswith("special:"))
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(url, headers={"x-functions-key": "cli-key"}), timeout=30) as answer:
            assert answer.read() == b"special"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
