"""`LocalHost`: the indexed functions of a v2 app, served on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .app_loader import EventGridFunction, HttpFunction, QueueFunction, load_app, read_all_functions
from .eventgrid import SYSTEM_KEY_NAME, WEBHOOK_PATH, EventGridWebhook
from .host_config import HostConfig, load_host_config, parse_timespan
from .http_server import FunctionsHttpServer, HttpLimits
from .invoker import Invoker
from .queues import QueueListener

#: Like the Python worker's PYTHON_THREADPOOL_THREAD_COUNT default on recent runtimes.
DEFAULT_THREADS = 32


class LocalHost:
    def __init__(
        self,
        app_dir: str | os.PathLike[str] = ".",
        app_module: str = "function_app",
        port: int = 0,
        function_keys: Mapping[str, str] | None = None,
        master_key: str | None = None,
        settings: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        limits: HttpLimits | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.app_module = app_module
        self.function_keys = dict(function_keys) if function_keys else {"default": secrets.token_urlsafe(24)}
        self.master_key = master_key or secrets.token_urlsafe(32)
        #: The runtime's system keys, as Azure creates them: the Event Grid webhook's `code`.
        self.system_keys = {SYSTEM_KEY_NAME: secrets.token_urlsafe(32)}
        self._settings = dict(settings or {})
        self._address = (host, port)
        self._limits = limits
        self._server: FunctionsHttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._listeners: list[QueueListener] = []
        self._invoker: Invoker | None = None
        self.http_functions: list[HttpFunction] = []
        self.queue_functions: list[QueueFunction] = []
        self.event_grid_functions: list[EventGridFunction] = []
        self.config: HostConfig | None = None
        self._replaced_environment: dict[str, str | None] = {}

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the host is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def event_grid_url(self, function_name: str) -> str:
        """The URL an Event Grid subscription delivers to, system key included (as the portal gives it)."""
        return f"{self.base_url}{WEBHOOK_PATH}?functionName={function_name}&code={self.system_keys[SYSTEM_KEY_NAME]}"

    def start(self) -> LocalHost:
        # App settings reach the app as environment variables, before it is imported (as in Azure);
        # stop() puts back what was there, so hosts started one after another do not leak settings.
        self._replaced_environment = {name: os.environ.get(name) for name in self._settings}
        os.environ.update(self._settings)
        self.config = load_host_config(self.app_dir)
        app = load_app(self.app_dir, self.app_module)
        self.http_functions, self.queue_functions, self.event_grid_functions = read_all_functions(app)
        timeout = self._function_timeout(self.config.raw)
        self._invoker = Invoker(int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or DEFAULT_THREADS))
        self._server = FunctionsHttpServer(
            self._address,
            functions=self.http_functions,
            route_prefix=self.config.route_prefix,
            function_keys=self.function_keys,
            master_key=self.master_key,
            invoker=self._invoker,
            function_timeout=timeout,
            limits=self._limits,
            event_grid=EventGridWebhook(self.event_grid_functions, self._invoker, timeout),
            system_keys=self.system_keys,
        )
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="localhost-http", daemon=True)
        self._server_thread.start()
        for function in self.queue_functions:
            listener = QueueListener(function, self.config.queues, self._invoker, timeout)
            listener.start()
            self._listeners.append(listener)
        return self

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
            self._server_thread = None
        if self._invoker is not None:
            self._invoker.close()
            self._invoker = None
        for name, value in self._replaced_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._replaced_environment = {}

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _function_timeout(raw: dict[str, Any]) -> float | None:
        value = next((v for k, v in raw.items() if k.lower() == "functiontimeout"), None)
        return parse_timespan(value) if value else None
