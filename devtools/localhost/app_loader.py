"""Load a v2-model function app and read the functions it indexes."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.indexing import indexed_functions

from .routing import RouteTemplate

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "eventGridTrigger")
_load_counter = itertools.count(1)


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: RouteTemplate
    methods: frozenset[str]  # empty: any method
    auth_level: str  # anonymous | function | admin
    argument: str
    user_function: Any


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    connection: str
    argument: str
    user_function: Any


@dataclass(frozen=True)
class EventGridFunction:
    """Served on the host's Event Grid webhook, `/runtime/webhooks/eventgrid?functionName=NAME`."""

    name: str
    argument: str
    user_function: Any


def load_app(app_dir: Path, module_name: str) -> Any:
    """Import `<app_dir>/<module_name>.py` under a fresh module name, so several apps (or
    the same app twice) can be loaded in one process without sharing an index."""
    path = app_dir / f"{module_name}.py"
    if not path.exists():
        raise FileNotFoundError(f"no {path}")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    unique = f"_localhost_app_{next(_load_counter)}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise ValueError(f"{path} defines no FunctionApp named 'app'")
    return app


def read_functions(app: Any) -> tuple[list[HttpFunction], list[QueueFunction]]:
    http, queues, _ = read_all_functions(app)
    return http, queues


def read_all_functions(app: Any) -> tuple[list[HttpFunction], list[QueueFunction], list[EventGridFunction]]:
    http: list[HttpFunction] = []
    queues: list[QueueFunction] = []
    event_grid: list[EventGridFunction] = []
    for name, function in indexed_functions(app).items():
        trigger = function.get_trigger()
        kind = trigger.get_binding_name()
        if kind not in SUPPORTED_TRIGGERS:
            raise ValueError(f"function {name}: trigger {kind} is not supported by the local host")
        for binding in function.get_bindings():
            if binding is trigger:
                continue
            if not (binding.get_binding_name() == "http" and binding.name == "$return"):
                raise ValueError(f"function {name}: binding {binding.get_binding_name()} "
                                 f"({binding.name}) is not supported by the local host")
        data = trigger.get_dict_repr()
        if kind == "eventGridTrigger":
            event_grid.append(EventGridFunction(name=name, argument=trigger.name,
                                                user_function=function.get_user_function()))
        elif kind == "httpTrigger":
            methods = frozenset(str(_value(m)).upper() for m in (data.get("methods") or []))
            http.append(HttpFunction(
                name=name,
                route=RouteTemplate(data.get("route") or name),
                methods=methods,
                auth_level=str(_value(data.get("authLevel") or "function")).lower(),
                argument=trigger.name,
                user_function=function.get_user_function(),
            ))
        else:
            queues.append(QueueFunction(
                name=name,
                queue_name=str(data["queueName"]),
                connection=str(data.get("connection") or "AzureWebJobsStorage"),
                argument=trigger.name,
                user_function=function.get_user_function(),
            ))
    http.sort(key=lambda f: f.route.precedence)
    return http, queues, event_grid


def _value(item: Any) -> Any:
    """The decorators hand back enums (HttpMethod.POST, AuthLevel.FUNCTION); the host reads their values."""
    return getattr(item, "value", item)
