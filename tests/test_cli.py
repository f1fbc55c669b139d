"""The `mdev-hooks` console script, run as the administrator runs it (a subprocess of the installed entry point),
against the FUSE fake of mdev sysfs, the real hook (hooks/qemu) and a fake `virsh` (tests/support/fake_virsh.py; the
real libvirt is exercised by tests/libvirt/). What is checked is what the fake kernel saw (its journal), what the fake
virsh was asked, and what the user sees (exit code, stdout, stderr).
This module: the command line itself, `types`, `add` and `drop`; test_cli_plan.py, test_cli_status.py and
test_cli_install.py the rest.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.asserts import one_line
from support.cliworld import PLAIN, World, canonical
from support.common import CLI, REPO
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, DOM_B, GVT, GVT_V54, GVT_V58, MTTY, T4, uid

from mdev_hooks import domain


# -- the command line itself ---------------------------------------------------------------------------------------
def test_console_script_is_the_installed_entry_point() -> None:
    assert CLI.exists(), f"{CLI}: run `pip install -e .` (scripts/setup)"
    r = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, check=False)
    from mdev_hooks import __version__

    assert (r.returncode, r.stdout.strip()) == (0, f"mdev-hooks {__version__}")


@pytest.mark.parametrize("command", ["install", "uninstall", "plan", "status", "gc", "types", "add", "drop"])
def test_every_command_has_help_with_an_example_and_exit_codes(command: str) -> None:
    r = subprocess.run([str(CLI), command, "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^examples?:\n(  .*\n)*?  .*\bmdev-hooks " + command, r.stdout, re.M), r.stdout
    assert "exit status:" in r.stdout and "2  usage error" in r.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["add", "vm1", "--type", GVT_V54], ["types", "--parent", "../x"],
                                  ["drop", "vm1", "not-a-uuid"], ["plan", "--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage: mdev-hooks" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("op", ["prepare begin", "release end", "migrate begin", "restore begin", "start begin",
                                "started begin", "stopped end", "reconnect begin", "attach begin"])
def test_hook_never_imports_the_admin_package(tmp_path: Path, op: str) -> None:
    """The hook's import graph, for every operation and on its slow path too (a managed mdev and a vGPU VF in the
    domain, failing or not), contains nothing under mdev_hooks.admin: checked by prefix, not by a list."""
    (tmp_path / "h").mkdir()
    h = HookEnv(tmp_path / "h", str(tmp_path / "nosys"))
    vf = ('<metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1"><mdev:device kind="nvidia-vf" '
          'parent="0000:41:00.0" type="1414"/></mdev:mdevs></metadata>')
    xmls = [mdev_xml("vm1", DOM_A, []), mdev_xml("vm1", DOM_A, [(uid(), "mtty", "mtty-1")]),
            mdev_xml("vm1", DOM_A, []).replace(b"<metadata>", vf.encode() + b"<metadata>")]
    code = (
        "import io, sys\n"
        "from mdev_hooks import hook\n"
        f"for xml in {xmls!r}:\n"
        f"    hook.main(['vm1', *{op.split()!r}, '-'], io.BytesIO(xml))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mdev_hooks'))))\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=h.environ(),
                       check=False)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "mdev_hooks.hook" in loaded
    if op in ("prepare begin", "release end", "migrate begin", "restore begin"):
        assert "mdev_hooks.core.plan" in loaded  # the slow path really ran
    else:
        assert loaded == {"mdev_hooks", "mdev_hooks.hook"}  # the no-op path: nothing else at all
    assert not [m for m in loaded if m == "mdev_hooks.admin" or m.startswith("mdev_hooks.admin.")]

# -- types -----------------------------------------------------------------------------------------------------------
def test_types(cli_world: World) -> None:
    cli_world.prepare("vm1", DOM_A, [(uid(), GVT, GVT_V58)])
    r = cli_world.cli("types", "--parent", GVT)
    assert r.returncode == 0
    assert r.stdout.splitlines()[:8] == [
        GVT, f"  {GVT_V54}", "    Available instances: 0", "    In use: 0", "    Device API: vfio-pci",
        "    Name: GVTg_V5_4",
        "    Description: low_gm_size: 128MB, high_gm_size: 512MB, fence: 4, resolution: 1920x1200, weight: 4",
        f"  {GVT_V58}"]
    assert "    In use: 1" in r.stdout
    r = cli_world.cli("types")
    assert [line for line in r.stdout.splitlines() if not line.startswith(" ")] == [GVT, T4, MTTY]
    assert "  nvidia-222" in r.stdout
    data = json.loads(cli_world.cli("types", "--json", "--parent", MTTY).stdout)
    assert [t["type"] for t in data[0]["types"]] == ["mtty-1", "mtty-2"]
    r = cli_world.cli("types", "--parent", "0000:99:00.0")
    assert r.returncode == 1 and "parent 0000:99:00.0 not found" in one_line(r.stderr)


# -- add / drop ------------------------------------------------------------------------------------------------------
def test_add_then_drop_through_virsh(cli_world: World) -> None:
    (cli_world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    u = uid()
    r = cli_world.cli("add", "plain", "--parent", GVT, "--type", GVT_V54, "--uuid", u.upper())
    assert r.returncode == 0, r.stderr
    assert f"added mdev {u} (type {GVT_V54} on {GVT}, model vfio-pci) to domain plain" in r.stdout
    defined = (cli_world.virsh_dir / "domains" / "plain.xml").read_bytes()
    parsed = domain.parse(defined)
    assert [(m.key, m.parent, m.type) for m in parsed.devices] == [(u, GVT, GVT_V54)]
    assert b"passwd='s3cret'" in defined or b'passwd="s3cret"' in defined
    assert b"<!-- keep me -->" in defined
    calls = [c[2:] for c in cli_world.calls()]
    assert calls[0] == ["dumpxml", "--inactive", "--security-info", "plain"]
    assert calls[1][0] == "define" and all(c[:2] == ["-c", "qemu:///system"] for c in cli_world.calls())
    # the hook accepts what add wrote
    assert cli_world.cli("plan", "-", stdin=defined).returncode == 0

    r = cli_world.cli("drop", "plain", u)
    assert r.returncode == 0, r.stderr
    assert f"removed <hostdev type='mdev' managed='yes'> of mdev {u} from domain plain" in r.stdout
    assert canonical((cli_world.virsh_dir / "domains" / "plain.xml").read_bytes()) == canonical(PLAIN)

    r = cli_world.cli("drop", "plain", u)
    assert r.returncode == 1 and f"domain plain has no managed mdev {u}" in one_line(r.stderr)


def test_add_keeps_existing_entries_and_generates_uuid(cli_world: World) -> None:
    (cli_world.virsh_dir / "domains" / "gvtg.xml").write_bytes((REPO / "examples" / "gvtg-desktop.xml").read_bytes())
    r = cli_world.cli("add", "gvtg-desktop", "--parent", MTTY, "--type", "mtty-2", "--connect", "qemu:///session")
    assert r.returncode == 0, r.stderr
    new = re.search(r"added mdev ([0-9a-f-]{36}) ", r.stdout)
    assert new is not None
    xml = (cli_world.virsh_dir / "domains" / "gvtg-desktop.xml").read_bytes()
    parsed = domain.parse(xml)
    assert [(m.parent, m.type) for m in parsed.devices] == [(GVT, GVT_V54), (MTTY, "mtty-2")]
    assert parsed.devices[1].key == new.group(1)
    assert xml.count(b"urn:mdev-hooks:domain:1") == 1  # one metadata element per namespace
    assert cli_world.calls()[0][:2] == ["-c", "qemu:///session"]


@pytest.mark.parametrize(("parent", "mtype", "expected"), [
    (GVT, "i915-GVTg_V5_1", "does not offer type i915-GVTg_V5_1"),
    ("0000:99:00.0", GVT_V54, "parent 0000:99:00.0 not found"),
])
def test_add_refuses_what_this_host_cannot_create(cli_world: World, parent: str, mtype: str, expected: str) -> None:
    (cli_world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    r = cli_world.cli("add", "plain", "--parent", parent, "--type", mtype)
    assert r.returncode == 1 and expected in one_line(r.stderr)
    assert [c[2] for c in cli_world.calls()] == ["dumpxml"]  # nothing defined
    assert (cli_world.virsh_dir / "domains" / "plain.xml").read_bytes() == PLAIN


def test_add_refuses_a_uuid_of_another_domain(cli_world: World) -> None:
    (cli_world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    u = uid()
    cli_world.prepare("other", DOM_B, [(u, MTTY, "mtty-1")])
    r = cli_world.cli("add", "plain", "--parent", MTTY, "--type", "mtty-1", "--uuid", u)
    assert r.returncode == 1 and f"the ledger gives it to domain other ({DOM_B})" in one_line(r.stderr)
    r = cli_world.cli("add", "nosuch", "--parent", MTTY, "--type", "mtty-1")
    assert r.returncode == 1 and "failed to get domain 'nosuch'" in one_line(r.stderr)
