"""The hook's sh front (hooks/qemu = mdev_hooks/share/qemu-hook, and what `mdev-hooks install` writes from it): every
operation libvirt 7.0-11.3 documents, with a recording stand-in for the interpreter. Operations outside ACTIVE exit 0
without starting it or reading stdin; the active ones exec it with argv and stdin untouched. No root, no FUSE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.hookrun import HOOK
from support.launcherxml import MANAGED, METADATA
from support.launcherxml import NO_DEVICES as PLAIN

from mdev_hooks.admin import front
from mdev_hooks.admin.install_cmd import MARKER, launcher_text
from mdev_hooks.hook import ACTIVE

# libvirt's hooks.rst and virhook.c, 7.0 to 11.3: OP SUBOP EXTRA (release's EXTRA is the shutoff reason from 10.5)
REASONS = ["-", "unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"]
DOCUMENTED = [("prepare", "begin", "-"), ("start", "begin", "-"), ("started", "begin", "-"), ("stopped", "end", "-"),
              *[("release", "end", r) for r in REASONS], ("migrate", "begin", "-"), ("restore", "begin", "-"),
              ("reconnect", "begin", "-"), ("attach", "begin", "-")]
# what no libvirt sends today: still exit 0 without Python
UNKNOWN = [("prepare", "end", "-"), ("release", "begin", "-"), ("shutdown", "begin", "-"), ("", "", "")]
RECORDER = '#!/bin/sh\nprintf "%s\\n" "$@" >"$REC.args"\ncat >"$REC.stdin"\nexit 3\n'


def _ids(case: tuple[str, str, str]) -> str:
    return "-".join(case).replace(" ", "_") or "empty"


@pytest.fixture()
def recorder(tmp_path: Path) -> Path:
    """An 'interpreter' that records its argv and stdin, and exits 3 (so the front's exit status shows the exec)."""
    path = tmp_path / "python3"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return path


def written(tmp_path: Path, python: str, paths: list[str] | None = None) -> Path:
    """The front as `mdev-hooks install` writes it for `python` (-I, or -I -S with `paths`)."""
    path = tmp_path / ("50-mdev-hooks" + ("-nosite" if paths else ""))
    path.write_text(launcher_text(python, *(paths or [])))
    path.chmod(0o755)
    return path


def call(hook: Path, case: tuple[str, str, str], xml: bytes | None, tmp_path: Path,
         python: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "REC": str(tmp_path / "rec")}
    if python is not None:
        env["MDEV_HOOKS_PYTHON"] = str(python)
    if xml is not None:
        return subprocess.run([str(hook), "g", *case], input=xml, capture_output=True, env=env, timeout=60,
                              check=False)
    # stdin a pipe whose write end stays open and empty: a front that read it would hang into TimeoutExpired
    r, w = os.pipe()
    try:
        return subprocess.run([str(hook), "g", *case], stdin=r, capture_output=True, env=env, timeout=30,
                              check=False)
    finally:
        os.close(r)
        os.close(w)


def test_the_repositorys_front_lets_through_exactly_ACTIVE() -> None:
    text = HOOK.read_text()
    assert front.active_of(text) == ACTIVE
    assert front.case_line() in text.splitlines()


def test_a_written_front_lets_through_exactly_ACTIVE_and_a_disagreement_shows() -> None:
    text = launcher_text("/usr/bin/python3", "/usr/lib/python3/dist-packages")
    assert front.active_of(text) == ACTIVE
    assert text.splitlines()[:2] == ["#!/bin/sh", MARKER]
    other = text.replace(front.case_line(), front.case_line(ACTIVE - {("release", "end")}))
    assert front.active_of(other) == ACTIVE - {("release", "end")}


@pytest.mark.parametrize("case", [c for c in DOCUMENTED + UNKNOWN if c[:2] not in ACTIVE], ids=_ids)
def test_other_operations_exit_0_without_python_or_stdin(tmp_path: Path, recorder: Path,
                                                         case: tuple[str, str, str]) -> None:
    for hook in (HOOK, written(tmp_path, str(recorder))):
        r = call(hook, case, None, tmp_path, recorder)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        assert not (tmp_path / "rec.args").exists()


@pytest.mark.parametrize("case", [c for c in DOCUMENTED if c[:2] in ACTIVE], ids=_ids)
def test_active_operations_exec_the_interpreter_with_argv_and_stdin(tmp_path: Path, recorder: Path,
                                                                     case: tuple[str, str, str]) -> None:
    xml = MANAGED + b"\n" * 70000  # more than a pipe holds: the front must not have read any of it
    for hook, flags in ((HOOK, []), (written(tmp_path, str(recorder)), ["-I"]),
                        (written(tmp_path, str(recorder), ["/x/site"]), ["-I", "-S"])):
        r = call(hook, case, xml, tmp_path, recorder)
        assert (r.returncode, r.stdout, r.stderr) == (3, b"", b"")
        args = (tmp_path / "rec.args").read_text().split("\n")[:-1]
        assert args == [*flags, str(hook), "g", *case]
        assert (tmp_path / "rec.stdin").read_bytes() == xml
        (tmp_path / "rec.args").unlink()


@pytest.mark.parametrize("xml", [MANAGED, METADATA], ids=["managed", "metadata"])
def test_a_missing_interpreter_fails_only_starts_asking_for_managed_devices(tmp_path: Path, xml: bytes) -> None:
    hook = written(tmp_path, str(tmp_path / "gone" / "python3"))
    for case in DOCUMENTED:
        for doc in (xml, PLAIN):
            r = call(hook, case, doc, tmp_path)
            fails = doc is xml and case[1] == "begin" and case[:2] in ACTIVE
            assert (r.returncode, r.stdout) == (int(fails), b""), case
            lines = r.stderr.decode().splitlines()
            assert lines == ([f"mdev-hooks: {tmp_path}/gone/python3 is missing, the hook cannot run; reinstall "
                              "mdev-hooks"] if fails else []), case


def test_a_broken_package_behind_an_installed_front_fails_with_one_line(tmp_path: Path) -> None:
    """The written front runs `-I -S` with the install's paths only: a half-installed package there is still one
    line, for a managed start only."""
    site = tmp_path / "site" / "mdev_hooks"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "hook.py").write_text("import lxml_is_not_installed_here\n")
    hook = written(tmp_path, sys.executable, [str(site.parent)])
    r = call(hook, ("prepare", "begin", "-"), MANAGED, tmp_path)
    assert r.returncode == 1 and r.stdout == b"" and len(r.stderr.decode().splitlines()) == 1
    assert r.stderr.decode().startswith(f"mdev-hooks: {sys.executable} cannot load mdev_hooks (ModuleNotFoundError")
    for case in (("prepare", "begin", "-"), ("release", "end", "destroyed"), ("started", "begin", "-")):
        r = call(hook, case, PLAIN, tmp_path)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_the_install_paths_run_this_venvs_hook_without_site(tmp_path: Path) -> None:
    """site_paths() finds what `-I -S` needs to import the hook (here: the venv's site-packages and the editable
    checkout); the written front then answers a plain domain's prepare and release."""
    paths = front.site_paths(sys.executable)
    assert paths is not None and any(Path(p, "mdev_hooks").is_dir() for p in paths)
    front.check_interpreter(sys.executable, paths)
    hook = written(tmp_path, sys.executable, paths)
    assert 'exec "$python" -I -S "$0" "$@"' in hook.read_text()
    for case in (("prepare", "begin", "-"), ("release", "end", "shutdown")):
        r = call(hook, case, PLAIN, tmp_path)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), r.stderr
    assert os.access(hook, os.X_OK)
