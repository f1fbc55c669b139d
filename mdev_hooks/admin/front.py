"""The hook file libvirt runs (share/qemu-hook = hooks/qemu): one file read by sh, which answers every operation
outside the active set, then by Python; written here for an interpreter, as `mdev-hooks install` and the .deb do.

Invariant: the case line that decides which operations start Python is generated from mdev_hooks.hook.ACTIVE each
time the file is written (the repository's copy is checked against it by tests/test_sh_front.py); apart from the
marker line, nothing of the template changes but the interpreter, its flags and the import paths.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterable, Sequence

from mdev_hooks.errors import HookError
from mdev_hooks.hook import ACTIVE

SHARE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "share")
SOURCE = os.path.join(SHARE, "qemu-hook")
CASE = 'case "$2 $3" in'
PYTHON_LINE = "python=${MDEV_HOOKS_PYTHON:-/usr/bin/python3}"
EXEC_LINE = 'exec "$python" "$0" "$@"'
PATHS_LINE = "PATHS = []  # type: list[str]"
# what the heavy path needs: the interpreter must import all of it the way the hook will run it
NEEDS = ("mdev_hooks.hook", "mdev_hooks.core.prepare", "mdev_hooks.core.release", "lxml.etree", "filelock",
         "structlog")


def template() -> str:
    with open(SOURCE, encoding="utf-8") as f:
        return f.read()


def case_line(active: Iterable[tuple[str, str]] = ACTIVE) -> str:
    """The sh pattern of the operations that start Python, e.g. `'prepare begin' | 'release end') ;;`."""
    return " | ".join(f"'{op} {sub}'" for op, sub in sorted(active)) + ") ;;"


def active_of(text: str) -> set[tuple[str, str]]:
    """The operations a front's case line lets through to Python (what tests compare with ACTIVE)."""
    lines = text.splitlines()
    pattern = lines[lines.index(CASE) + 1].rsplit(")", 1)[0]
    words = [w.strip().strip("'") for w in pattern.split("|")]
    return {(w.split(" ")[0], w.split(" ")[1]) for w in words}


def _replace(text: str, old: str, new: str) -> str:
    lines = text.split("\n")
    if lines.count(old) != 1:
        raise HookError(f"{SOURCE}: expected the line {old!r} once; reinstall mdev-hooks")
    lines[lines.index(old)] = new
    return "\n".join(lines)


def render(python: str, paths: Sequence[str] | None, marker: str) -> str:
    """The front for `python`: run as `-I`, or as `-I -S` with exactly `paths` added to its own (faster start)."""
    if not os.path.isabs(python) or "\n" in python:
        raise HookError(f"interpreter path {python!r} must be absolute")
    text = template()
    lines = text.split("\n")
    lines[1] = marker
    lines[lines.index(CASE) + 1] = case_line()
    text = "\n".join(lines)
    text = _replace(text, PYTHON_LINE, f"python={shlex.quote(python)}")
    flags = "-I" if paths is None else "-I -S"
    text = _replace(text, EXEC_LINE, f'exec "$python" {flags} "$0" "$@"')
    return _replace(text, PATHS_LINE, f"PATHS = {list(paths or [])!r}")


_PROBE = ("import json, os, sys\nimport mdev_hooks\n"
          "print(json.dumps([sys.path, os.path.dirname(os.path.dirname(os.path.abspath(mdev_hooks.__file__)))]))")


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HookError(f"cannot run {argv[0]}: {e}") from None


def _error(python: str, flags: str, proc: subprocess.CompletedProcess[bytes]) -> HookError:
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return HookError(f"{python} {flags} cannot import mdev_hooks: {err[-1] if err else proc.returncode}")


def site_paths(python: str) -> list[str] | None:
    """The import paths `python -I` gets from its site module (site-packages, .pth entries) plus the directory
    mdev_hooks is in (an editable install's finder): with them, `-I -S` imports the same code without running site.
    None if that does not import everything the hook needs (then the front runs `-I`)."""
    plain = _run([python, "-I", "-c", _PROBE])
    if plain.returncode != 0:
        raise _error(python, "-I", plain)
    nosite = _run([python, "-I", "-S", "-c", "import json, sys; print(json.dumps(sys.path))"])
    if nosite.returncode != 0:
        return None
    full, home = json.loads(plain.stdout)
    own = set(json.loads(nosite.stdout))
    paths = [p for p in dict.fromkeys([*full, home]) if p and p not in own and os.path.isdir(p)]
    check = _run([python, "-I", "-S", "-c", f"import sys; sys.path += {paths!r}; import {', '.join(NEEDS)}"])
    return paths if check.returncode == 0 else None


def check_interpreter(python: str, paths: Sequence[str] | None) -> None:
    """The front's interpreter must import the hook and its dependencies the way libvirt will run it; otherwise
    the installed hook would silently let every VM start without its mdevs."""
    flags = ["-I"] if paths is None else ["-I", "-S"]
    proc = _run([python, *flags, "-c", f"import sys; sys.path += {list(paths or [])!r}; import {', '.join(NEEDS)}"])
    if proc.returncode != 0:
        raise _error(python, " ".join(flags), proc)
