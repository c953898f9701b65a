"""`python -m devtools.mutation` (`make mutation`): mutation testing of the core modules with mutmut.

Each module is mutated in a scratch copy of the project (`.mutation/<module>/`), against only the
fast tests that are about it, so one run stays within a shared machine's means and a module's
score does not depend on slow end-to-end tests that happen to pass through it. Within a module,
mutmut runs for each mutant only the tests that executed the mutated function.

The report gives each module's score (killed / mutants) and names every survivor, so that it
can be killed with a test or explained as equivalent in docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"

#: Tests of the audit trail that are slow (thousands of numbers, the local Functions host) and are not
#: the only ones to reach any of its code: left out of the audit modules' selections.
_SLOW_AUDIT_TESTS = tuple(
    argument
    for test in (
        "test_a_10000_number_remove_has_every_numbers_history",
        "test_concurrent_operations_on_the_same_numbers_keep_their_order",
        "test_queued_changes_are_journalled_indexed_and_readable",
    )
    for argument in ("--deselect", f"tests/test_audit.py::{test}")
)

#: Each core module and the fast tests that are about it (pytest arguments: files, and
#: `--deselect` pairs for a file's slow tests).
MODULES: dict[str, tuple[str, ...]] = {
    "optouts/domain/phone.py": ("tests/test_phone.py",),
    "optouts/domain/commands.py": ("tests/test_commands.py",),
    "optouts/usecases/service.py": (
        "tests/test_service.py", "tests/test_usecases_fake_provider.py", "tests/test_service_audit.py",
        "tests/test_telemetry.py",
    ),
    "optouts/usecases/queued_requests.py": (
        "tests/test_queued_results.py", "tests/test_queued_requests.py", "tests/test_usecases_fake_provider.py",
        "tests/test_service_audit.py",
        "tests/test_telemetry.py",
    ),
    "optouts/providers/acs/client.py": (
        "tests/test_client_answers.py", "tests/test_client.py", "tests/test_retry_after.py",
    ),
    "optouts/providers/fanout.py": (
        "tests/test_providers.py", "tests/test_usecases_fake_provider.py", "tests/test_client.py",
    ),
    "optouts/audit/trail.py": (
        "tests/test_audit_records.py", "tests/test_service_audit.py", "tests/test_audit.py", *_SLOW_AUDIT_TESTS,
    ),
    "optouts/audit/index.py": ("tests/test_audit_records.py", "tests/test_audit.py", *_SLOW_AUDIT_TESTS),
}
#: Copied next to the mutated package so the tests can import and serve what they need.
ALSO_COPY = ("devtools/", "blueprints/", "function_app.py", "host.json", "tests/")
#: Set for the tests: one Azurite serves every mutant's run instead of one started per run.
SHARED_AZURITE = "OPTOUTS_MUTATION_AZURITE"
#: mutmut's verdicts that count as caught.
KILLED = frozenset({"killed", "timeout", "segfault", "caught by type check"})

_MUTMUT_SECTION = """
[tool.mutmut]
source_paths = ["optouts/"]
only_mutate = [{module}]
also_copy = [{also_copy}]
pytest_add_cli_args_test_selection = [{tests}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
use_git_change_detection = false
"""


@dataclass
class ModuleScore:
    module: str
    counts: dict[str, int]
    survivors: list[tuple[str, str]]
    seconds: float
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def killed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in KILLED)

    @property
    def score(self) -> float | None:
        return self.killed / self.total if self.total else None


def _quoted(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(json.dumps(item) for item in items)


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def prepare(module: str, tests: tuple[str, ...]) -> Path:
    """A fresh scratch copy of the project configured to mutate `module` only."""
    work = _workdir(module)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in _project_files():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    if (ROOT / "node_modules").exists():  # Azurite, for the tests that need Storage; they run in mutants/
        (work / "mutants").mkdir()
        for where in (work, work / "mutants"):
            (where / "node_modules").symlink_to(ROOT / "node_modules")
    pyproject = work / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text(encoding="utf-8")
        + _MUTMUT_SECTION.format(module=json.dumps(module), also_copy=_quoted(ALSO_COPY), tests=_quoted(tests)),
        encoding="utf-8",
    )
    return work


def _mutmut(work: Path, *arguments: str, timeout: float | None = None,
            azurite: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HYPOTHESIS_PROFILE": "mutation", "PYTHONDONTWRITEBYTECODE": "1"}
    if azurite is not None:
        environment[SHARED_AZURITE] = azurite
    return subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), *arguments],
        cwd=work, env=environment, capture_output=True, text=True, timeout=timeout,
    )


_RESULT_LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+?)\s*$")


def _workdir(module: str) -> Path:
    return WORK / module.replace("/", "_").removesuffix(".py")


def _results(work: Path) -> list[tuple[str, str]]:
    listed = _mutmut(work, "results", "--all", "true", timeout=300)
    return [(match["name"], match["status"]) for match in map(_RESULT_LINE.match, listed.stdout.splitlines())
            if match is not None]


def refresh_tests(work: Path) -> None:
    """The project's current tests in an earlier run's scratch copy (where mutmut runs them: mutants/)."""
    for where in (work, work / "mutants"):
        shutil.rmtree(where / "tests")
        shutil.copytree(ROOT / "tests", where / "tests", ignore=shutil.ignore_patterns("__pycache__"))


def score_module(module: str, tests: tuple[str, ...], *, jobs: int, timeout: float,
                 azurite: str | None = None, again: bool = False) -> ModuleScore:
    """`again`: in the scratch copy of an earlier run of the same code, test only that run's survivors,
    against the current tests (mutmut collects coverage for the tests that are new)."""
    started = time.monotonic()
    rerun: list[str] = []
    if again and (_workdir(module) / "mutants").is_dir():
        work = _workdir(module)
        refresh_tests(work)
        rerun = [name for name, status in _results(work) if status not in KILLED]
    else:
        work = prepare(module, tests)
    log = work / "mutmut-run.log"
    try:
        run = _mutmut(work, "run", "--max-children", str(jobs), *rerun, timeout=timeout, azurite=azurite)
        log.write_text(run.stdout + run.stderr, encoding="utf-8")
        error = None if run.returncode == 0 else f"mutmut run exited {run.returncode} (see {log})"
    except subprocess.TimeoutExpired as expired:
        log.write_text(str(expired.stdout or "") + str(expired.stderr or ""), encoding="utf-8")
        error = f"stopped after {timeout:.0f} s; the counts are for the mutants tested so far"
    counts: dict[str, int] = {}
    survivors: list[tuple[str, str]] = []
    for name, status in _results(work):
        if status == "not checked":  # never run (the run was stopped): not part of the score
            continue
        counts[status] = counts.get(status, 0) + 1
        if status not in KILLED:
            survivors.append((name, status))
    return ModuleScore(module, counts, survivors, time.monotonic() - started, error)


def report(scores: list[ModuleScore]) -> str:
    lines = ["# Mutation score", "", "| module | mutants | killed | survived | score | time |", "|---|---|---|---|---|---|"]
    for score in scores:
        percent = f"{score.score:.1%}" if score.score is not None else "n/a"
        lines.append(f"| {score.module} | {score.total} | {score.killed} | {score.total - score.killed} "
                     f"| {percent} | {score.seconds:.0f} s |")
    total = sum(s.total for s in scores)
    killed = sum(s.killed for s in scores)
    if total:
        lines.append(f"| **all** | {total} | {killed} | {total - killed} | {killed / total:.1%} | |")
    for score in scores:
        if score.error:
            lines += ["", f"{score.module}: {score.error}"]
        if score.survivors:
            lines += ["", f"## Survivors in {score.module}", ""]
            lines += [f"- `{name}`: {status}" for name, status in score.survivors]
    lines += ["", "See one with `cd .mutation/<module> && ../../.venv/bin/mutmut show <name>`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.mutation", description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (the CPU is shared)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per module")
    parser.add_argument("--minimum", type=float, default=0.0, help="exit 1 if the overall score is below this")
    parser.add_argument("--again", action="store_true",
                        help="re-test only the survivors of the last run (same module code) against the current tests")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a core module: {', '.join(unknown)}")
    scores = []
    with Azurite() as azurite:
        for module in args.modules or MODULES:
            print(f"mutating {module} against {' '.join(MODULES[module])} ...", flush=True)
            scores.append(score_module(module, MODULES[module], jobs=args.jobs, timeout=args.timeout,
                                       azurite=azurite.connection_string, again=args.again))
            print(f"  {scores[-1].killed}/{scores[-1].total} killed in {scores[-1].seconds:.0f} s", flush=True)
    text = report(scores)
    WORK.mkdir(exist_ok=True)
    (WORK / "report.md").write_text(text, encoding="utf-8")
    for score in scores:  # kept per module: a later run of another module rewrites report.md
        (_workdir(score.module) / "report.md").write_text(report([score]), encoding="utf-8")
    print(text)
    print(f"(written to {WORK / 'report.md'})")
    total = sum(s.total for s in scores)
    overall = sum(s.killed for s in scores) / total if total else 0.0
    failed = any(s.error and not s.total for s in scores)
    return 1 if failed or overall < args.minimum else 0


if __name__ == "__main__":
    sys.exit(main())
