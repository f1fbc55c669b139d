"""The .deb that scripts/build-deb makes: lintian, its contents and control data, the man page, the completion."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess

import pytest
from debpkg import REPO, Built, rules_variable, source_python, source_value

pytestmark = pytest.mark.package

INSTALLED_HOOK = "etc/libvirt/hooks/qemu.d/50-mdev-hooks"
EXPECTED_FILES = {
    INSTALLED_HOOK,
    "etc/mdev-hooks/config.toml",
    "etc/logrotate.d/mdev-hooks",
    "lib/systemd/system/libvirtd.service.d/mdev-hooks.conf",
    "lib/systemd/system/virtqemud.service.d/mdev-hooks.conf",
    "usr/bin/mdev-hooks",
    "usr/lib/python3/dist-packages/mdev_hooks/__init__.py",
    "usr/lib/python3/dist-packages/mdev_hooks/hook.py",
    "usr/libexec/mdev-hooks/ledger-report",
    "usr/libexec/mdev-hooks/ledger-downgrade",
    "etc/apt/apt.conf.d/20mdev-hooks",
    "usr/share/bash-completion/completions/mdev-hooks",
    "usr/share/man/man8/mdev-hooks.8.gz",
    "usr/share/doc/mdev-hooks/copyright",
    "usr/share/doc/mdev-hooks/CHANGELOG.md.gz",  # over 4 kB: dh_compress compresses it (Debian policy 12.3)
    "usr/share/doc/mdev-hooks/changelog.gz",
}

# the parser's commands and options, read from the source tree with the import path debian/rules uses
PARSER_DUMP = r"""
import argparse, importlib, json, sys
mod, _, func = sys.argv[1].partition(":")
parser = getattr(importlib.import_module(mod), func)()
sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
def shown(a):  # as argparse shows a positional: its metavar, else {its,choices}, else its dest
    return a.metavar or ("{" + ",".join(map(str, a.choices)) + "}" if a.choices else a.dest)
print(json.dumps({
    "top": [s for a in parser._actions for s in a.option_strings],
    "commands": {name: {"options": [s for a in p._actions for s in a.option_strings],
                        "positionals": [shown(a) for a in p._actions if not a.option_strings]}
                 for name, p in sub.choices.items()},
}))
"""


@pytest.fixture(scope="module")
def parser_dump() -> dict[str, object]:
    data: dict[str, object] = json.loads(source_python(PARSER_DUMP, rules_variable("MDEV_HOOKS_PARSER")))
    return data


def _deb_field(deb: str, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True, check=True).stdout.strip()


# -- (a) lintian -----------------------------------------------------------------------------------------------
def test_lintian_reports_no_error_or_warning_that_is_not_overridden(built: Built) -> None:
    tags = [line for line in built.lintian.splitlines() if re.match(r"^[EWIPXOM]: ", line)]
    bad = [line for line in tags if line.startswith(("E: ", "W: "))]
    assert not bad, "lintian:\n" + "\n".join(tags)
    # an override that no longer matches anything is reported (as info) and would hide nothing: keep them exact
    stale = [line for line in tags if "unused-override" in line or "mismatched-override" in line]
    assert not stale, "\n".join(stale)


def test_every_lintian_override_says_why() -> None:
    path = os.path.join(REPO, "debian", "mdev-hooks.lintian-overrides")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    previous = ""
    for line in lines:
        if line.strip() and not line.startswith("#"):
            assert previous.startswith("#") or previous.startswith("mdev-hooks:"), \
                f"override without a comment giving the reason: {line}"
        previous = line
    assert any(line.startswith("mdev-hooks:") for line in lines)


# -- (b) contents and control data ---------------------------------------------------------------------------
def test_file_list(built: Built) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", built.deb], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[-1].lstrip("./").rstrip("/") for line in listing.splitlines()}
    assert paths >= EXPECTED_FILES, f"missing: {sorted(EXPECTED_FILES - paths)}"
    # nothing from the build or the developer's tree
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc") or "/tests/" in p], paths
    assert not [p for p in paths if p.startswith("usr/lib/python3.")], "modules must be in /usr/lib/python3"


def test_control_fields(built: Built) -> None:
    assert _deb_field(built.deb, "Package") == "mdev-hooks"
    assert _deb_field(built.deb, "Architecture") == "all"
    version = source_python("import mdev_hooks; print(mdev_hooks.__version__)").strip()
    assert _deb_field(built.deb, "Version") == version == built.version
    depends = [d.strip() for d in _deb_field(built.deb, "Depends").split(",")]
    for dep in ("python3-lxml", "python3-filelock", "python3-structlog"):
        assert any(re.fullmatch(rf"{dep}( \(.*\))?", d) for d in depends), depends
    # no TOML library: tomllib from Python 3.11, mdev_hooks.tomlsubset before (Debian 11's main archive has no
    # python3-tomli, so a dependency on it would make apt refuse the package there)
    assert not [d for d in depends if "toml" in d], depends
    assert any(re.fullmatch(r"python3(:any)?( \(.*\))?", d) for d in depends), depends
    assert not [d for d in depends if "libvirt" in d], "libvirt is optional (Suggests/Enhances), not a dependency"


def test_conffiles_are_the_config_and_the_logrotate_snippet_not_the_hook(built: Built) -> None:
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", built.deb], capture_output=True, check=True).stdout
    conffiles = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=control, capture_output=True,
                               check=True).stdout.decode().split()
    # the apt hook that guards downgrades (debian/ledger-downgrade) is configuration apt reads from /etc
    assert sorted(conffiles) == ["/etc/apt/apt.conf.d/20mdev-hooks", "/etc/logrotate.d/mdev-hooks",
                                 "/etc/mdev-hooks/config.toml"]


def test_apt_hook_runs_the_downgrade_guard_only_while_it_is_installed(built: Built) -> None:
    """After `apt remove` the conffile stays but the script is gone: apt must still work then."""
    with open(os.path.join(built.tree, "etc/apt/apt.conf.d/20mdev-hooks"), encoding="utf-8") as f:
        text = f.read()
    script = "/usr/libexec/mdev-hooks/ledger-downgrade"
    assert f'"if [ -x {script} ]; then {script} --apt; else cat >/dev/null; fi"' in text, text
    mode = os.stat(os.path.join(built.tree, script.lstrip("/"))).st_mode
    assert stat.S_IMODE(mode) == 0o755


def test_hook_is_the_launcher_for_the_system_python(built: Built) -> None:
    path = os.path.join(built.tree, INSTALLED_HOOK)
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # the sh front, running the system python without site, on dist-packages
    assert text.splitlines()[0] == "#!/bin/sh" and 'exec "$python" -I -S "$0" "$@"' in text.splitlines()
    assert "python=/usr/bin/python3" in text.splitlines()
    assert "PATHS = ['/usr/lib/python3/dist-packages']" in text.splitlines()
    # generated from the package's own launcher source, not a copy that could drift
    args = rules_variable("MDEV_HOOKS_INTERPRETER"), rules_variable("MDEV_HOOKS_SYS_PATH")
    assert text == source_value(rules_variable("MDEV_HOOKS_LAUNCHER"), *args)


def test_config_is_the_commented_default(built: Built) -> None:
    with open(os.path.join(built.tree, "etc/mdev-hooks/config.toml"), encoding="utf-8") as f:
        text = f.read()
    assert text == source_value(rules_variable("MDEV_HOOKS_CONFIG_TEXT"))
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines()), "every setting commented"


def test_systemd_drop_ins_only_order(built: Built) -> None:
    for unit in ("libvirtd", "virtqemud"):
        with open(os.path.join(built.tree, f"lib/systemd/system/{unit}.service.d/mdev-hooks.conf")) as f:
            settings = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        assert settings == ["[Unit]", "After=nvidia-vgpud.service nvidia-vgpu-mgr.service"], settings


def test_logrotate_snippet(built: Built) -> None:
    with open(os.path.join(built.tree, "etc/logrotate.d/mdev-hooks")) as f:
        text = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("#"))
    assert text.startswith("/var/log/mdev-hooks.log {")
    # each hook run opens the log anew: renaming is enough, no signal and no copytruncate
    for absent in ("copytruncate", "postrotate", "sharedscripts"):
        assert absent not in text
    for present in ("missingok", "notifempty", "delaycompress", "create 0640 root root"):
        assert present in text
    # logrotate itself accepts it (debug mode: parse and plan, change nothing)
    if subprocess.run(["sh", "-c", "command -v logrotate"], capture_output=True).returncode == 0:
        proc = subprocess.run(["logrotate", "-d", os.path.join(built.tree, "etc/logrotate.d/mdev-hooks")],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "error" not in proc.stderr.lower(), proc.stderr


def test_installed_command_and_hook_run(built: Built) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.path.join(built.tree, "usr/lib/python3/dist-packages"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([os.path.join(built.tree, "usr/bin/mdev-hooks"), "--version"], capture_output=True,
                          text=True, env=env, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"mdev-hooks {built.version}"), proc.stderr


# -- (c) the man page ----------------------------------------------------------------------------------------
def _render_man(built: Built, tmp_path: object) -> tuple[str, str]:
    page = os.path.join(built.tree, "usr/share/man/man8/mdev-hooks.8.gz")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_DISABLE_SECCOMP="1")
    proc = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def test_man_page_renders_without_warnings(built: Built, tmp_path: object) -> None:
    _text, warnings = _render_man(built, tmp_path)
    assert warnings == "", warnings
    page = os.path.join(built.tree, "usr/share/man/man8/mdev-hooks.8.gz")
    roff = subprocess.run(["zcat", page], capture_output=True, check=True).stdout
    proc = subprocess.run(["groff", "-ww", "-man", "-Tutf8"], input=roff, capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()


def test_man_page_documents_every_command_and_option(built: Built, tmp_path: object,
                                                     parser_dump: dict[str, object]) -> None:
    text, _ = _render_man(built, tmp_path)
    sections = re.findall(r"^([A-Z][A-Z ]+)$", text, re.M)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "FILES", "EXIT STATUS", "EXAMPLES"):
        assert section in sections, sections
    commands_part = text[text.index("\nCOMMANDS\n"):]
    commands = parser_dump["commands"]
    assert isinstance(commands, dict)
    for name, info in commands.items():
        # each command has its own subsection, which lists every option and argument it takes
        m = re.search(rf"^   {re.escape(name)}\n(.*?)(?=^   \S|^\S)", commands_part, re.M | re.S)
        assert m, f"no subsection for command {name}"
        body = m.group(1)
        for option in info["options"]:
            if option in ("-h", "--help") or option in parser_dump["top"]:
                continue
            assert re.search(rf"(^|\s){re.escape(option)}\b", body), f"{name}: option {option} not documented"
        for positional in info["positionals"]:
            assert positional in body, f"{name}: argument {positional} not documented"
    options_part = text[text.index("\nOPTIONS\n"):text.index("\nCOMMANDS\n")]
    top = parser_dump["top"]
    assert isinstance(top, list)
    for option in top:
        assert option in options_part, f"common option {option} not documented"
    assert f"mdev-hooks {built.version}" in text


# -- (d) the bash completion ---------------------------------------------------------------------------------
def _complete(built: Built, line: str, env: dict[str, str]) -> list[str]:
    """What bash offers for `line<Tab>`: COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT as bash sets them."""
    script = os.path.join(built.tree, "usr/share/bash-completion/completions/mdev-hooks")
    driver = r"""
source "$1"
line=$2
COMP_LINE=$line
COMP_POINT=${#line}
read -ra COMP_WORDS <<<"$line"
[[ $line == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
complete -p mdev-hooks >/dev/null
_mdev_hooks mdev-hooks "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
    proc = subprocess.run(["bash", "-c", driver, "bash", script, line], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, check=False)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


@pytest.fixture
def fake_sysfs(tmp_path: object) -> str:
    root = os.path.join(str(tmp_path), "sys")
    for parent, types in {"0000:00:02.0": ["i915-GVTg_V5_4", "i915-GVTg_V5_8"], "mtty": ["mtty-1", "mtty-2"]}.items():
        for t in types:
            os.makedirs(os.path.join(root, "class/mdev_bus", parent, "mdev_supported_types", t))
    return root


def test_completion_of_commands_and_options(built: Built, parser_dump: dict[str, object]) -> None:
    assert _complete(built, "mdev-hooks pl", {}) == ["plan"]
    commands = parser_dump["commands"]
    assert isinstance(commands, dict)
    assert sorted(_complete(built, "mdev-hooks ", {})) == sorted(commands)
    for name, info in commands.items():
        offered = set(_complete(built, f"mdev-hooks {name} --", {}))
        assert {o for o in info["options"] if o.startswith("--")} == offered, name
    assert _complete(built, "mdev-hooks add vm1 --model vfio-c", {}) == ["vfio-ccw"]


def test_completion_of_parents_and_types_from_sysfs(built: Built, fake_sysfs: str) -> None:
    env = {"MDEV_HOOKS_SYSFS_ROOT": fake_sysfs}
    assert _complete(built, "mdev-hooks add vm1 --parent ", env) == ["0000:00:02.0", "mtty"]
    assert _complete(built, "mdev-hooks types --parent m", env) == ["mtty"]
    assert _complete(built, "mdev-hooks add vm1 --parent mtty --type ", env) == ["mtty-1", "mtty-2"]
    assert _complete(built, "mdev-hooks add vm1 --parent 0000:00:02.0 --type i915-GVTg_V5_", env) == \
        ["i915-GVTg_V5_4", "i915-GVTg_V5_8"]
    # bash splits words at ':' (COMP_WORDBREAKS): only the part after the last ':' is offered
    assert _complete(built, "mdev-hooks add vm1 --parent 0000:00", env) == ["00:02.0"]
    # --sysfs-root on the line wins over the environment
    assert _complete(built, "mdev-hooks --sysfs-root /nonexistent add vm1 --parent ", env) == []


def test_completion_of_domains_and_files(built: Built, tmp_path: object) -> None:
    virsh = os.path.join(str(tmp_path), "virsh")
    with open(virsh, "w") as f:
        f.write('#!/bin/sh\n[ "$*" = "list --all --name" ] && printf "vm1\\nvdi-2\\n\\n"\n')
    os.chmod(virsh, 0o755)
    env = {"MDEV_HOOKS_VIRSH": virsh}
    assert _complete(built, "mdev-hooks add ", env) == ["vm1", "vdi-2"]
    assert _complete(built, "mdev-hooks drop v", env) == ["vm1", "vdi-2"]
    assert _complete(built, "mdev-hooks add vm1 ", env) == []  # the second word of add is not a domain
    xml = os.path.join(str(tmp_path), "vm1.xml")
    open(xml, "w").close()
    assert _complete(built, f"mdev-hooks plan {os.path.join(str(tmp_path), 'vm')}", env) == [xml]


def test_man_page_documents_every_config_key(built: Built, tmp_path: object) -> None:
    text, _ = _render_man(built, tmp_path)
    section = text[text.index("\nCONFIGURATION\n"):text.index("\nFILES\n")]
    keys = json.loads(source_python("import dataclasses, json; from mdev_hooks import config; "
                                    "print(json.dumps([f.name for f in dataclasses.fields(config.Config)]))"))
    documented = set(re.findall(r"^       \[?([a-z_]+)\]?(?: = |$)", section, re.M))
    missing = sorted(set(keys) - {"path"} - documented)
    assert not missing, f"config keys missing from CONFIGURATION: {missing}\n{section}"
