"""The layout's rules, checked over the source (ast) and in a fresh interpreter.

- domain/ holds rules only: no Azure package, no provider, nothing above it;
- the use cases reach providers only through the interface (optouts.providers.base);
- the provider interface, the fan-out, the router and the fake are light (no SDK);
- only the composition root (optouts/runtime.py) and a provider's own package import a
  provider's package; the blueprints go through the runtime;
- `import function_app` (indexing, cold start) loads no heavy SDK and no provider.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "optouts"

#: Third-party packages that are an SDK of some upstream or platform.
SDKS = ("azure", "boto3", "botocore", "aiobotocore", "httptools", "requests", "urllib3", "opentelemetry")
#: Provider packages: everything under optouts.providers but the shared, light modules.
SHARED_PROVIDER_MODULES = {"optouts.providers", "optouts.providers.base", "optouts.providers.fanout",
                           "optouts.providers.router", "optouts.providers.fake"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in `path`, in functions and TYPE_CHECKING
    blocks too: a type-only import still ties the layers together."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from optouts.providers import acs` imports a package
                yield node.lineno, f"{module}.{alias.name}"


def is_within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def is_provider_package(module: str) -> bool:
    return is_within(module, "optouts.providers") and not any(
        module == shared or (module.startswith(shared + ".") and shared != "optouts.providers")
        for shared in SHARED_PROVIDER_MODULES
    )


def sources(*relative: str) -> list[Path]:
    found: list[Path] = []
    for entry in relative:
        path = REPO / entry
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def violations(paths: list[Path], forbidden: Callable[[str], bool]) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} imports {module}"
            for path in paths for line, module in imports(path) if forbidden(module)]


def test_the_layout_has_its_layers() -> None:
    for package in ("domain", "usecases", "audit", "azure", "contract", "providers", "providers/acs"):
        assert (PACKAGE / package / "__init__.py").is_file(), package
    assert (PACKAGE / "runtime.py").is_file()
    # What moved is gone from where it was: one way to import each thing.
    for old in ("acs", "commands.py", "phone.py", "problems.py", "service.py", "queued_requests.py",
                "storage.py", "identity.py", "keyvault.py", "openapi.py", "logtext.py", "audit.py"):
        path = PACKAGE / old
        assert not (path.is_file() or (path.is_dir() and any(path.rglob("*.py")))), old


def test_domain_imports_no_azure_package_no_provider_and_nothing_above_it() -> None:
    above = tuple(f"optouts.{name}" for name in ("providers", "usecases", "audit", "azure", "contract", "runtime"))
    assert violations(sources("optouts/domain"), lambda m: is_within(m, *SDKS, *above)) == []


def test_the_audit_trail_imports_no_use_case_and_no_provider() -> None:
    """It reads reports (domain), never the service that makes them: no layering inversion."""
    forbidden = ("optouts.usecases", "optouts.runtime", "optouts.providers", "boto3", "botocore")
    assert violations(sources("optouts/audit"), lambda m: is_within(m, *forbidden)) == []


def test_use_cases_reach_providers_only_through_the_interface() -> None:
    def forbidden(module: str) -> bool:
        return (is_within(module, "optouts.providers") and module not in {"optouts.providers",
                                                                            "optouts.providers.base"}
                and not module.startswith("optouts.providers.base.")) or is_within(
            module, "boto3", "botocore", "optouts.runtime")

    assert violations(sources("optouts/usecases"), forbidden) == []


def test_the_provider_interface_fanout_router_and_fake_are_light() -> None:
    shared = [PACKAGE / "providers" / name for name in ("__init__.py", "base.py", "fanout.py", "router.py",
                                                        "fake.py")]
    assert violations(shared, lambda m: is_within(m, *SDKS) or is_provider_package(m)) == []


def test_only_the_composition_root_knows_the_providers() -> None:
    everything = sources("optouts", "blueprints", "function_app.py")

    def owner_may_import(path: Path, module: str) -> bool:
        own = module_name(path)
        return path == PACKAGE / "runtime.py" or (
            own.count(".") >= 2 and is_within(module, ".".join(own.split(".")[:3]))
        )

    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in everything for line, module in imports(path)
             if is_provider_package(module) and not owner_may_import(path, module)]
    assert found == []


def test_the_package_uses_absolute_imports_only() -> None:
    """So that a module can move without its imports changing meaning (layout-rewrite.py relies on it)."""
    relative = [f"{path.relative_to(REPO)}:{node.lineno}" for path in sources("optouts")
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


def test_the_checker_sees_a_violation() -> None:
    """The rules above are only worth something if they can fail."""
    path = REPO / "optouts" / "domain" / "phone.py"
    assert not violations([path], lambda m: is_within(m, "azure"))
    assert violations([path], lambda m: is_within(m, "phonenumbers"))
    assert is_provider_package("optouts.providers.acs.client")
    assert is_provider_package("optouts.providers.aws")
    assert not is_provider_package("optouts.providers.base")
    assert not is_provider_package("optouts.providers.fanout")


HEAVY_AT_INDEXING = ("azure.core", "azure.identity", "azure.storage", "azure.data", "azure.keyvault",
                     "phonenumbers", "boto3", "botocore", "requests", "httptools")
#: Light by contract: every package root, and the modules a blueprint or a test may import freely.
LIGHT = [module_name(path) for path in sources("optouts") if path.name == "__init__.py"] + [
    "optouts.config", "optouts.domain.operations", "optouts.domain.reports", "optouts.domain.problems",
    "optouts.domain.logtext", "optouts.providers.base", "optouts.providers.fanout", "optouts.providers.router",
    "optouts.providers.fake", "optouts.providers.acs.settings", "optouts.runtime",
]


def loaded_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after running `statement`."""
    probe = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))\n"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                               timeout=120, check=True, env={"PYTHONPATH": str(REPO)})
    return completed.stdout.split()


def test_indexing_the_app_loads_no_sdk_and_no_provider() -> None:
    loaded = loaded_after("import function_app")
    assert "azure.functions" in loaded and "blueprints.http_api" in loaded  # the probe really indexed the app
    # Startup validates every provider's settings (runtime.start), so a provider's light package root
    # and its `settings` module may load; its client, errors (azure-core) and SDK may not.
    startup = {m for m in loaded if m.count(".") == 2 and m.startswith("optouts.providers.")}
    startup |= {m for m in loaded if m.count(".") == 3 and m.startswith("optouts.providers.") and m.endswith(".settings")}
    heavy = [m for m in loaded if is_within(m, *HEAVY_AT_INDEXING) or (is_provider_package(m) and m not in startup)]
    assert heavy == []
    assert "optouts.providers.acs.client" not in loaded


@pytest.mark.parametrize("module", LIGHT)
def test_package_roots_and_light_modules_load_no_sdk(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert module in loaded
    assert [m for m in loaded if is_within(m, *HEAVY_AT_INDEXING, "azure.functions")] == []
