"""Indexing the app (`import function_app`, what a cold start pays for) must not load the
heavy side: azure-core and the ACS client, phonenumbers, the Storage SDKs. optouts.runtime
loads them when the first request needs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["azure.core", "phonenumbers", "requests", "azure.storage.queue", "azure.storage.blob",
         "azure.data.tables", "azure.identity", "azure.keyvault.secrets", "optouts.providers.acs.client"]


def loaded_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return set(json.loads(out.stdout))


def test_importing_the_app_loads_nothing_heavy() -> None:
    loaded = loaded_after("import function_app")
    assert "function_app" in loaded and "blueprints.http_api" in loaded
    assert [name for name in HEAVY if name in loaded] == []


def test_the_first_request_path_does_load_the_client() -> None:
    """The probe above can fail: building the client through the runtime loads azure-core."""
    loaded = loaded_after(
        "import function_app\nfrom optouts import runtime\nfrom optouts.config import Settings\n"
        "from optouts.providers.acs.settings import AcsSettings\n"
        "env = {'ACS_CONNECTION_STRING': 'endpoint=http://127.0.0.1:1/;accesskey=ZHVtbXk='}\n"
        "runtime.build_provider(Settings.from_environ(env), AcsSettings.from_environ(env)).close()"
    )
    assert {"azure.core", "requests", "optouts.providers.acs.client"} <= loaded
