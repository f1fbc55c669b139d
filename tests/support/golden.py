"""Compare a command's text or JSON output with tests/unit/golden/<name>.txt|.json, or rewrite the file when
regenerating (MDEV_HOOKS_REGEN_GOLDEN=1, or pytest --regen-golden, which sets that variable).

Invariant: what is compared and what is stored are the same normalised text: every temporary path handed in is
replaced by its placeholder (longest first, e.g. `<SYSFS>`), so a golden file never holds a path of one run.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "unit" / "golden"
REGEN_ENV = "MDEV_HOOKS_REGEN_GOLDEN"


def regenerating() -> bool:
    return os.environ.get(REGEN_ENV, "") not in ("", "0")


def normalise(text: str, paths: Mapping[str, str]) -> str:
    """`text` with each path (key) replaced by its placeholder (value), the longest path first."""
    for path in sorted(paths, key=len, reverse=True):
        text = text.replace(path, paths[path])
    return text


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(), actual.splitlines(), f"golden/{name}", "actual", lineterm="")
    return "\n".join(lines)


def check_text(name: str, actual: str, paths: Mapping[str, str]) -> None:
    """Compare normalised `actual` with golden/<name>.txt (or rewrite it)."""
    got = normalise(actual, paths)
    if not got.endswith("\n"):
        got += "\n"
    path = GOLDEN_DIR / f"{name}.txt"
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
        return
    assert path.exists(), f"{path} is missing: run with {REGEN_ENV}=1 (or --regen-golden), then read it"
    expected = path.read_text()
    assert got == expected, f"output differs from {path} ({REGEN_ENV}=1 rewrites it):\n" + _diff(expected, got, name)


def check_json(name: str, actual: str, paths: Mapping[str, str]) -> Any:
    """Compare normalised `actual` (a JSON document) with golden/<name>.json by value (or rewrite it); returns the
    normalised data."""
    data = json.loads(normalise(actual, paths))
    text = json.dumps(data, indent=2) + "\n"
    path = GOLDEN_DIR / f"{name}.json"
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return data
    assert path.exists(), f"{path} is missing: run with {REGEN_ENV}=1 (or --regen-golden), then read it"
    expected = path.read_text()
    assert data == json.loads(expected), (f"output differs from {path} ({REGEN_ENV}=1 rewrites it):\n"
                                          + _diff(expected, text, name))
    return data
