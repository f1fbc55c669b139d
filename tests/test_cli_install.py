"""`mdev-hooks install` and `uninstall` into a temporary hooks dir: a fresh install, an update, a foreign hook,
--force and its restore, and the launcher naming the right Python.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from support.cliworld import World
from support.common import CLI, REPO
from support.hookrun import mdev_xml
from support.ids import DOM_C, MTTY, uid

from mdev_hooks.admin import front
from mdev_hooks.admin.install_cmd import MARKER, default_config_text, launcher_text

# -- install / uninstall ---------------------------------------------------------------------------------------------
FOREIGN = "#!/bin/sh\n# a user's own dispatcher\nexec /usr/local/bin/dispatch \"$@\"\n"


def test_launcher_is_the_repositorys_hook() -> None:
    """One source: hooks/qemu is the package's launcher, and what install writes is it with the marker, the
    interpreter and its paths changed (tests/test_sh_front.py: the rest of the front)."""
    repo_hook = REPO / "hooks" / "qemu"
    assert repo_hook.resolve() == (REPO / "mdev_hooks" / "share" / "qemu-hook").resolve()
    assert repo_hook.read_text() == front.template()
    assert launcher_text("/usr/bin/python3").split("\n", 2)[2] == written_body("/usr/bin/python3", None)


def script_python(script: Path) -> str:
    """The interpreter a console script runs with (its #! line): the one `install` must name."""
    return script.read_text().split("\n", 1)[0][2:].strip()


def install(w: World, hooks: Path, *args: str, python: str = str(CLI)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "install", "--hooks-dir", str(hooks), "--config-dir", str(hooks.parent / "etc"),
                           "--share-dir", str(hooks.parent / "share"), "--logrotate-dir", str(hooks.parent / "lr"),
                           *args], capture_output=True, text=True, env=w.env(), timeout=120, check=False)


def uninstall(w: World, hooks: Path) -> subprocess.CompletedProcess[str]:
    return w.cli("uninstall", "--hooks-dir", str(hooks), "--config-dir", str(hooks.parent / "etc"),
                 "--share-dir", str(hooks.parent / "share"), "--logrotate-dir", str(hooks.parent / "lr"))


def written_body(python: str, paths: list[str] | None) -> str:
    """The template after its first two lines, with the lines install writes for `python` (and `paths`: -I -S)."""
    body = (REPO / "hooks" / "qemu").read_text().split("\n", 2)[2]
    body = body.replace(front.PYTHON_LINE, f"python={python}")
    body = body.replace(front.EXEC_LINE, front.EXEC_LINE.replace('"$0"', "-I -S \"$0\"" if paths else '-I "$0"'))
    return body.replace(front.PATHS_LINE, f"PATHS = {paths or []!r}")


def check_launcher(path: Path, python: str) -> None:
    text = path.read_text()
    first, marker, body = text.split("\n", 2)
    assert (first, marker, body) == ("#!/bin/sh", MARKER, written_body(python, front.site_paths(python)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def hook_works(w: World, hook: Path) -> None:
    """The installed file, run as libvirt runs it (exec, scrubbed env), creates and removes a device."""
    u = uid()
    xml = mdev_xml("vm9", DOM_C, [(u, MTTY, "mtty-1")])
    for op, sub in (("prepare", "begin"), ("release", "end")):
        r = subprocess.run([str(hook), "vm9", op, sub, "-"], input=xml, capture_output=True, env=w.hook.environ(),
                           timeout=60, cwd="/", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), r.stderr
        assert (u in w.fs.devices()) == (op == "prepare")


def test_install_fresh_update_uninstall(cli_world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    r = install(cli_world, hooks)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    check_launcher(hooks / "qemu", script_python(CLI))
    assert (hooks.parent / "etc" / "config.toml").read_text() == default_config_text()
    assert f"installed {hooks / 'qemu'} (interpreter {script_python(CLI)})" in r.stdout
    # a hook that did not exist before: say how to make libvirt see it (or that no daemon runs)
    assert re.search(r"run:\n    (systemctl reload (libvirtd|virtqemud)|kill -HUP \$\(pidof (libvirtd|virtqemud)\))$"
                     r"|no libvirt daemon \(libvirtd, virtqemud\) is running", r.stdout, re.M), r.stdout
    hook_works(cli_world, hooks / "qemu")

    r = install(cli_world, hooks)
    assert r.returncode == 0 and f"updated {hooks / 'qemu'}" in r.stdout
    assert "kept the existing config" in r.stdout and "nothing to reload" in r.stdout
    assert sorted(p.name for p in hooks.iterdir()) == ["qemu"]  # no temp file left behind

    r = uninstall(cli_world, hooks)
    assert r.returncode == 0, r.stderr
    assert not (hooks / "qemu").exists() and not (hooks.parent / "etc").exists()
    assert uninstall(cli_world, hooks).stdout.startswith(f"mdev-hooks is not installed in {hooks}")


def test_install_refuses_a_foreign_hook_then_qemu_d(cli_world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text(FOREIGN)
    (hooks / "qemu").chmod(0o755)
    r = install(cli_world, hooks)
    assert r.returncode == 1
    assert r.stderr.startswith(f"mdev-hooks: {hooks / 'qemu'} exists and was not written by mdev-hooks")
    assert "mdev-hooks install --qemu-d" in r.stderr and "mdev-hooks install --force" in r.stderr
    assert (hooks / "qemu").read_text() == FOREIGN and sorted(p.name for p in hooks.iterdir()) == ["qemu"]

    r = install(cli_world, hooks, "--qemu-d")
    assert r.returncode == 0, r.stderr
    check_launcher(hooks / "qemu.d" / "50-mdev-hooks", script_python(CLI))
    assert (hooks / "qemu").read_text() == FOREIGN
    assert f"already calls qemu hooks ({hooks / 'qemu'} exists)" in r.stdout or "no libvirt daemon" in r.stdout
    assert os.listdir(hooks / "qemu.d") == ["50-mdev-hooks"]
    hook_works(cli_world, hooks / "qemu.d" / "50-mdev-hooks")
    # installing it a second time as hooks/qemu would run the hook twice
    r = install(cli_world, hooks, "--force")
    assert r.returncode == 1 and "already installed as" in r.stderr
    assert (hooks / "qemu").read_text() == FOREIGN

    r = uninstall(cli_world, hooks)
    assert r.returncode == 0 and f"removed {hooks / 'qemu.d' / '50-mdev-hooks'}" in r.stdout
    assert (hooks / "qemu").read_text() == FOREIGN and os.listdir(hooks / "qemu.d") == []


def test_install_force_saves_and_uninstall_restores(cli_world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text(FOREIGN)
    (hooks / "qemu").chmod(0o750)
    (hooks.parent / "etc").mkdir()
    (hooks.parent / "etc" / "config.toml").write_text("dry_run = true\n")
    r = install(cli_world, hooks, "--force")
    assert r.returncode == 0, r.stderr
    backup = hooks / "qemu.mdev-hooks-backup"
    assert f"saved {hooks / 'qemu'} as {backup}" in r.stdout and "replaced" in r.stdout
    assert backup.read_text() == FOREIGN and stat.S_IMODE(backup.stat().st_mode) == 0o750
    check_launcher(hooks / "qemu", script_python(CLI))
    assert "kept the existing config" in r.stdout and "nothing to reload" in r.stdout
    hook_works(cli_world, hooks / "qemu")

    r = uninstall(cli_world, hooks)
    assert r.returncode == 0, r.stderr
    assert f"restored {hooks / 'qemu'} from {backup}" in r.stdout
    assert (hooks / "qemu").read_text() == FOREIGN and stat.S_IMODE((hooks / "qemu").stat().st_mode) == 0o750
    assert not backup.exists()
    assert (hooks.parent / "etc" / "config.toml").read_text() == "dry_run = true\n"  # edited: kept
    assert "it was edited" in r.stdout


def test_install_from_a_venv_names_the_venvs_python(cli_world: World, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    # the dependencies as this interpreter has them (when it is itself a venv, --system-site-packages misses them)
    import site
    import sysconfig

    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "parent-site.pth").write_text("\n".join([*site.getsitepackages(), sysconfig.get_path("purelib")]))
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--disable-pip-version-check",
                          "-e", str(REPO)], capture_output=True, text=True, timeout=600, check=False)
    assert pip.returncode == 0, pip.stderr
    script = venv / "bin" / "mdev-hooks"
    python = script_python(script)
    assert python.startswith(str(venv / "bin" / "python")), python
    hooks = tmp_path / "hooks"
    r = install(cli_world, hooks, python=str(script))
    assert r.returncode == 0, r.stderr
    check_launcher(hooks / "qemu", python)
    hook_works(cli_world, hooks / "qemu")
