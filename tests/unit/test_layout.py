"""The architecture as tests: which package may import which, no test module importing another, module size.

No root, no I/O beyond reading the sources. (The hook's runtime import graph is checked in tests/test_cli.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.hookrun import REPO

PACKAGE = REPO / "mdev_hooks"
MAX_LINES = 350


def imports(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in the file names (absolute names; the code uses no others)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py")) if sub else sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("layer,forbidden", [
    ("kernel", ("mdev_hooks.core", "mdev_hooks.admin")),  # sysfs under a root: no policy, no command
    ("core", ("mdev_hooks.admin",)),  # runs under libvirt's domain lock
    ("", ("mdev_hooks.admin",)),  # the top-level modules serve the hook as well
])
def test_a_layer_never_imports_the_ones_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = {f"{p.relative_to(REPO)}: {name}" for p in modules(layer) for name in imports(p)
           if any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not bad, sorted(bad)


def test_no_test_module_imports_another() -> None:
    tests = REPO / "tests"
    bad = {f"{p.relative_to(REPO)}: {name}" for p in tests.rglob("*.py") if "e2e" not in p.parts
           for name in imports(p) if name.split(".")[0].startswith("test_")}
    assert not bad, sorted(bad)


def test_no_module_is_longer_than_350_lines_without_a_reason_at_its_top() -> None:
    long = [p for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > MAX_LINES
            and "longer than 350 lines because" not in p.read_text()[:2000]]
    assert not long, [f"{p.relative_to(REPO)}: {len(p.read_text().splitlines())} lines" for p in long]


def test_every_module_says_its_job_and_its_invariant() -> None:
    """The house style: a module docstring with the job in one sentence and its invariant (the package inits and
    the entry points say the invariant in their own words)."""
    missing = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
               if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing
