"""Cold start: a fresh interpreter importing the app, against one importing only
azure.functions, and the time to the first answered request (import, index, build the
client, call ACS), all as child processes, interleaved."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .measure import Figure, summarize
from .processes import emulator_process

REPO = Path(__file__).resolve().parent.parent
FIRST_REQUEST = """
import azure.functions as func
import function_app
from devtools.indexing import indexed_functions
check = indexed_functions(function_app.app)["CheckOptOuts"].get_user_function()
response = check(func.HttpRequest("POST", "http://127.0.0.1/api/optouts/check",
                 headers={"content-type": "application/json"}, body=b'{"phoneNumbers":["+14255550100"]}'))
assert response.status_code == 200, response.get_body()
"""


def _wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
    return time.perf_counter() - started


def cold_start(runs: int) -> dict[str, Figure]:
    samples: dict[str, list[float]] = {"import azure.functions": [], "import function_app": [], "first answered request": []}
    with emulator_process() as connection_string:
        env = {**os.environ, "ACS_CONNECTION_STRING": connection_string, "OPTOUT_DEFAULT_SENDER": "+18005550100",
               "PYTHONPATH": str(REPO)}
        for _ in range(runs):
            samples["import azure.functions"].append(_wall("import azure.functions", env))
            samples["import function_app"].append(_wall("import function_app", env))
            samples["first answered request"].append(_wall(FIRST_REQUEST, env))
    return {name: summarize(name, values) for name, values in samples.items()}
