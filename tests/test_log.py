"""The hook's log: JSON lines in log_file, or (log_file = "journal") journald's native protocol with the event and
every field as journal fields. journald here is a datagram socket the test reads, at the path the hook is given."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.asserts import one_line
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, MTTY, uid


def parse_entry(data: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY\\n<64-bit little-endian length><value>\\n."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode()
            i = nl + 9 + size + 1
    return fields


def journal(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "journal.socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def entries(s: socket.socket) -> list[dict[str, str]]:
    out = []
    while True:
        try:
            out.append(parse_entry(s.recv(1 << 20)))
        except socket.timeout:
            return out


def test_journal_gets_every_event_with_its_fields(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    fs = fakesysfs("mtty-sample")
    h = HookEnv(tmp_path / "hook", fs.root, 'log_file = "journal"')
    s, path = journal(tmp_path)
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml, MDEV_HOOKS_JOURNAL_SOCKET=path).returncode == 0
    assert h.run("vm1", "release", "end", xml, MDEV_HOOKS_JOURNAL_SOCKET=path).returncode == 0
    got = entries(s)
    events = [e["EVENT"] for e in got]
    assert events[:1] == ["hook.invoked"] and "mdev.created" in events and "mdev.removed" in events, events
    created = next(e for e in got if e["EVENT"] == "mdev.created")
    assert created["SYSLOG_IDENTIFIER"] == "mdev-hooks" and created["PRIORITY"] == "6"
    assert (created["MDEV"], created["PARENT"], created["TYPE"], created["DOMAIN"], created["OP"]) == (
        u, MTTY, "mtty-2", "vm1", "prepare")
    assert created["MESSAGE"].startswith("mdev.created ") and f"mdev={u}" in created["MESSAGE"]
    assert not h.log_file.exists()  # the journal instead of the file


def test_journal_failure_is_a_warning_priority_and_still_one_line(fakesysfs: Callable[..., Any],
                                                                   tmp_path: Path) -> None:
    fs = fakesysfs("mtty-sample")
    h = HookEnv(tmp_path / "hook", fs.root, 'log_file = "journal"')
    s, path = journal(tmp_path)
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), MTTY, "nope")]),
              MDEV_HOOKS_JOURNAL_SOCKET=path)
    assert r.returncode == 1 and "does not offer type nope" in one_line(r.stderr)
    failed = [e for e in entries(s) if e["EVENT"] == "hook.failed"]
    assert len(failed) == 1 and failed[0]["PRIORITY"] == "3" and "does not offer type nope" in failed[0]["ERROR"]


def test_journal_without_journald_falls_back_to_syslog_and_never_fails(fakesysfs: Callable[..., Any],
                                                                        tmp_path: Path) -> None:
    fs = fakesysfs("mtty-sample")
    h = HookEnv(tmp_path / "hook", fs.root, 'log_file = "journal"')
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")])
    r = h.run("vm1", "prepare", "begin", xml, MDEV_HOOKS_JOURNAL_SOCKET=str(tmp_path / "no-such-socket"))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.devices() == {u: (MTTY, "mtty-2")}
    assert h.run("vm1", "release", "end", xml).returncode == 0


def test_multiline_values_use_the_binary_form() -> None:
    from mdev_hooks.log import _journal_entry

    entry = _journal_entry(None, "error", {"event": "hook.crashed", "level": "error",
                                            "exception": "Traceback\n  line 1\nValueError: x"})
    fields = parse_entry(entry)
    assert fields["EXCEPTION"] == "Traceback\n  line 1\nValueError: x" and fields["PRIORITY"] == "3"
