"""The functions an app indexes, by name, computed once per app object.

`FunctionApp.get_functions()` may be called only once per app: it remembers the
names it has seen and refuses them the second time. Tests, benchmarks and tools
that share one process go through here.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_indexed: dict[int, tuple[Any, dict[str, Any]]] = {}


def indexed_functions(app: Any) -> dict[str, Any]:
    with _lock:
        entry = _indexed.get(id(app))
        if entry is None or entry[0] is not app:
            entry = (app, {f.get_function_name(): f for f in app.get_functions()})
            _indexed[id(app)] = entry
        return entry[1]
