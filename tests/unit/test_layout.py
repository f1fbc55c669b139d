"""The architecture as tests: which package may import which, no test module importing another or redefining a
tests/support name, module size, and every module's docstring saying its job and its `Invariant:`.

No root, no I/O beyond reading the sources. (The hook's runtime import graph is checked in tests/test_cli.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.hookrun import REPO

PACKAGE = REPO / "mdev_hooks"
TESTS = REPO / "tests"
SUPPORT = TESTS / "support"
MAX_LINES = 350
MAX_TEST_LINES = 450  # a test, test helper or benchmark module


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
    """The house style: a module docstring with the job in one sentence and a line starting `Invariant:` (the
    package inits and the entry points too: a promise in other words is not found by a reader looking for it)."""
    missing = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
               if not any(line.startswith("Invariant:")
                          for line in (ast.get_docstring(ast.parse(p.read_text())) or "").splitlines())]
    assert not missing, missing


def defined_names(path: Path) -> dict[str, int]:
    """The names a module binds at its top level by assignment, `def` or `class` (not by import), with the line."""
    found: dict[str, int] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.setdefault(node.name, node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found.setdefault(name.id, node.lineno)
    return found


def support_exports() -> dict[str, str]:
    """Every public name tests/support defines: {name: the support module defining it}."""
    return {name: p.stem for p in sorted(SUPPORT.glob("*.py")) for name in defined_names(p)
            if not name.startswith("_")}


def test_no_test_module_redefines_a_name_of_tests_support() -> None:
    """One definition each (ids, the one-line assertion, the XML builder...): a test module imports it instead."""
    exported = support_exports()
    bad = [f"{p.relative_to(REPO)}:{line}: {name} (support.{exported[name]})"
           for p in sorted(TESTS.rglob("test_*.py")) if "e2e" not in p.parts
           for name, line in defined_names(p).items() if name in exported]
    assert not bad, bad


def test_the_redefinition_check_finds_one(tmp_path: Path) -> None:
    """The check above sees a redefined id, function and class, and ignores imports and private names."""
    module = tmp_path / "test_x.py"
    module.write_text("from support.ids import DOM_A\nDOM_B, X = '1', 2\ndef one_line(): pass\nclass MdevWorld: pass\n"
                      "_private = 1\n")
    assert {"DOM_B", "one_line", "MdevWorld"} <= set(support_exports())
    assert set(defined_names(module)) & set(support_exports()) == {"DOM_B", "one_line", "MdevWorld"}


# modules allowed over the limit while they are being split in parallel (none: benchmarks/run.py's split landed)
BEING_SPLIT: set[str] = set()


def test_no_test_helper_or_benchmark_module_is_longer_than_450_lines() -> None:
    roots = [TESTS, REPO / "benchmarks"]
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for root in roots for p in root.rglob("*.py")}
    long = sorted(f"{name}: {n} lines" for name, n in sizes.items() if n > MAX_TEST_LINES and name not in BEING_SPLIT)
    assert not long, long
    # an exception is dropped as soon as it is no longer needed
    assert all(sizes.get(name, 0) > MAX_TEST_LINES for name in BEING_SPLIT), {n: sizes.get(n) for n in BEING_SPLIT}
