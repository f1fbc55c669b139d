"""The control file of the fake kernel (/.fake-control): JSON commands that inject delays, errnos, busy devices,
vanishing devices, exhaustion and parent unregistration, and `reset`.

Invariant: a mixin of Kernel: a command changes only Kernel's rules and devices, under its lock; a bad command is
EINVAL and changes nothing.
"""

from __future__ import annotations

import errno
import json
import threading
from typing import Any

from fakesysfs import parse, profiles
from fakesysfs.state import FailRule, Rules, err, errno_of


class ControlFile:
    """Kernel's control file (mixed into Kernel)."""

    def _control(self, data: bytes, rec: dict[str, Any]) -> None:
        try:
            cmd = json.loads(data)
            if not isinstance(cmd, dict):
                raise ValueError("a JSON object is needed")
            rec["cmd"] = cmd.get("cmd")
            self.command(cmd, rec["pid"])
        except (ValueError, KeyError, TypeError) as e:
            rec["error"] = str(e)
            raise err(errno.EINVAL) from e

    def command(self, cmd: dict[str, Any], pid: int = 0) -> None:
        name = cmd["cmd"]
        if name == "delay":
            op, ms = _op(cmd), float(cmd.get("ms", 0))
            with self.lock:
                if ms > 0:
                    self.rules.delays[(op, cmd.get("parent"))] = ms / 1000
                else:
                    self.rules.delays.pop((op, cmd.get("parent")), None)
        elif name == "fail":
            rule = FailRule(
                op=_op(cmd),
                code=errno_of(cmd.get("errno", "EIO")),
                nth=int(cmd.get("nth", 1)),
                count=int(cmd.get("count", 1)),
                parent=cmd.get("parent"),
            )
            with self.lock:
                self.rules.fails.append(rule)
        elif name == "busy":
            uuid, mode = str(cmd["uuid"]).lower(), cmd.get("mode", "block")
            if mode not in ("block", "ebusy"):
                raise ValueError(f"busy mode {mode!r}: block or ebusy")
            with self.lock:
                if cmd.get("on", True):
                    self.rules.busy[uuid] = mode
                else:
                    self.rules.busy.pop(uuid, None)
                self.changed.notify_all()
        elif name == "vanish":
            timer = threading.Timer(float(cmd.get("after_ms", 0)) / 1000, self._vanish, [str(cmd["uuid"]).lower()])
            timer.daemon = True
            with self.lock:
                self.rules.timers.append(timer)
            timer.start()
        elif name == "create_external":
            p = self.host.parents[cmd["parent"]]
            ty = p.type(cmd["type"])
            if ty is None:
                raise KeyError(f"parent {p.name} has no type {cmd['type']}")
            uuid = parse.create_uuid(str(cmd["uuid"]).encode())
            rec = self._record("create", "external", pid, parent=p.name, type=ty.id, uuid=uuid)
            try:
                self.create(p, ty, uuid, actor="external")
            except OSError as e:
                rec["result"] = errno.errorcode.get(e.errno or 0, str(e.errno))
                raise
            finally:
                self._close(rec)
        elif name == "remove_external":
            self.remove_now(str(cmd["uuid"]).lower(), "external", pid)
        elif name == "unregister":
            self.unregister(cmd["parent"], pid)
        elif name in ("unbind", "bind"):
            # a vendor-VFIO VF leaving the nvidia driver (libvirt's managed='yes' binds it to vfio-pci for the VM)
            # loses its nvidia/ directory; its vGPU type stays set. bind gives the directory back.
            p = self.host.parents[cmd["vf"]]
            if p.interface != profiles.VENDOR_VFIO:
                raise ValueError(f"{p.name} is not a vendor-VFIO VF")
            with self.lock:
                if name == "unbind":
                    self.tree.drop(f"{p.path}/nvidia")
                else:
                    self._build_vendor_vfio(p)
        elif name == "exhaust_errno":
            with self.lock:
                self.rules.exhaust[cmd.get("parent")] = errno_of(cmd["errno"])
        elif name == "reset":
            self.reset()
        else:
            raise ValueError(f"unknown command {name!r}")

    def reset(self) -> None:
        """Drop every rule; removes blocked by `busy` complete now."""
        with self.lock:
            for timer in self.rules.timers:
                timer.cancel()
            self.rules = Rules()
            self.changed.notify_all()


def _op(cmd: dict[str, Any]) -> str:
    op = cmd.get("op")
    if op not in ("create", "remove"):
        raise ValueError(f"op {op!r}: create or remove")
    return str(op)
