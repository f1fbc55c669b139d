"""The heavy path imports only what it needs: the modules a managed `prepare` and a `release` load, read from the
live import graph (`-X importtime` of the front as `mdev-hooks install` writes it, -I -S), against the import floor
(`import lxml.etree, structlog, filelock` on the same interpreter and paths) plus the pinned list below.

A module outside both fails the test: add it to PINNED only if the hook cannot do without it (say why), since
every managed VM start and stop pays for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, GVT, uid

from mdev_hooks.admin import front
from mdev_hooks.admin.install_cmd import MARKER
from mdev_hooks.log import OPTIONAL

# beyond the floor: the package's own modules on the managed path, and `gc` (hook.main turns the collector off)
PINNED = {
    "gc",
    "mdev_hooks", "mdev_hooks.hook", "mdev_hooks.errors", "mdev_hooks.config", "mdev_hooks.log", "mdev_hooks.domain",
    "mdev_hooks.enums", "mdev_hooks.names", "mdev_hooks.fsutil", "mdev_hooks.mdevctl",
    "mdev_hooks.core", "mdev_hooks.core.env", "mdev_hooks.core.faultpoint", "mdev_hooks.core.ledger",
    "mdev_hooks.core.locks", "mdev_hooks.core.plan", "mdev_hooks.core.prepare", "mdev_hooks.core.release",
    "mdev_hooks.core.sriov",
    # the kinds' registry and the one kind these domains use (an mdev-only run never imports nvidia_vf's module)
    "mdev_hooks.core.kinds", "mdev_hooks.core.kinds.base", "mdev_hooks.core.kinds.mdev",
    "mdev_hooks.kernel", "mdev_hooks.kernel.errnos", "mdev_hooks.kernel.mdev", "mdev_hooks.kernel.nvidia",
    "mdev_hooks.kernel.pci", "mdev_hooks.kernel.root",
}
# the import floor: the three libraries the managed path cannot do without (and what they pull in, which differs
# between their versions and the interpreter's)
FLOOR = "import lxml.etree, structlog, filelock"


def modules(stderr: str) -> set[str]:
    """The module names of `-X importtime` lines; any other stderr line is an error of the run."""
    names = set()
    for line in stderr.splitlines():
        assert line.startswith("import time:"), stderr[-3000:]
        name = line.rsplit("|", 1)[1].strip()
        if name != "package":  # the header line
            names.add(name)
    return names


@pytest.fixture(scope="module")
def paths() -> list[str]:
    found = front.site_paths(sys.executable)
    assert found is not None, "this interpreter cannot run the hook with -I -S"
    return found


@pytest.fixture
def traced(tmp_path: Path, paths: list[str]) -> Path:
    """The front as install writes it, whose interpreter is this one with -X importtime."""
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -X importtime "$@"\n')
    wrapper.chmod(0o755)
    hook = tmp_path / "50-mdev-hooks"
    hook.write_text(front.render(str(wrapper), paths, MARKER))
    hook.chmod(0o755)
    return hook


def floor(paths: list[str]) -> set[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-I", "-S", "-c", f"import sys; sys.path += {paths!r}; "
                        + FLOOR], capture_output=True, text=True, timeout=120, check=True)
    return modules(r.stderr)


def test_a_managed_prepare_and_release_import_only_the_pinned_set(fakesysfs: Callable[..., Any], tmp_path: Path,
                                                                  traced: Path, paths: list[str]) -> None:
    fs = fakesysfs(["intel-gvtg"])
    h = HookEnv(tmp_path / "hook", fs.root)
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, GVT, "i915-GVTg_V5_4")])
    allowed = floor(paths) | PINNED
    # libvirt's environment: the config file is the only thing the test adds (-I ignores PYTHON* variables)
    env = {k: v for k, v in h.environ().items() if k != "MDEV_HOOKS_PYTHON"}
    seen: set[str] = set()
    for op, sub in (("prepare", "begin"), ("release", "end")):
        r = subprocess.run([str(traced), "vm1", op, sub, "-"], input=xml, capture_output=True, env=env, timeout=120,
                           cwd="/", check=False)
        loaded = modules(r.stderr.decode())
        assert r.returncode == 0 and r.stdout == b""
        assert (u in fs.devices()) == (op == "prepare")  # the managed path ran, not an early exit
        assert "mdev_hooks.core." + op in loaded
        # log.OPTIONAL: the import attempts log.py turns into ImportError (a line of -X importtime, nothing loaded)
        seen |= loaded
        outside = sorted(loaded - allowed - set(OPTIONAL))
        assert outside == [], f"{op} imports modules outside the floor and the pinned list"
    # and the list stays tight: a module of ours that neither loads any more leaves it
    assert sorted(m for m in PINNED if m.startswith("mdev_hooks") and m not in seen) == []


def test_structlog_comes_without_its_optional_console_modules(tmp_path: Path) -> None:
    """log.setup leaves rich/colorama/better_exceptions (here: stand-ins on the path) unloaded, and importable
    afterwards."""
    for name in OPTIONAL:
        (tmp_path / f"{name}.py").write_text("")
    code = ("import sys; from mdev_hooks import log; log.setup('/dev/null', domain='d'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in log.OPTIONAL)); import rich; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.stdout.splitlines() == ["[]", "ok"], r.stderr
