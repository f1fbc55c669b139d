"""The vendor drivers of the fake kernel: vfio-ap's matrix attributes, mdev params and uevent, and NVIDIA's
vendor-specific vGPU interface on VFs (current_vgpu_type, creatable_vgpu_types).

Invariant: a mixin of Kernel: every method runs under Kernel's lock and changes only what its device or VF owns.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from fakesysfs import parse, profiles
from fakesysfs.profiles import ParentSpec
from fakesysfs.state import AP_MAX_ID, UEVENT_ACTIONS, Device, err
from fakesysfs.tree import Writer, text


class VendorDrivers:
    """Kernel's vendor-driver files (mixed into Kernel)."""

    def _vendor_files(self, dev: Device) -> None:
        t, p = self.tree, dev.parent
        if p.is_nvidia:
            t.file(f"{dev.path}/nvidia/vgpu_params", lambda: dev.params, self._params_writer(dev), **self._meta(dev))
        for attr in p.attributes:
            path = f"{dev.path}/{attr}"
            if attr == "vendor/sample_mdev_dev":
                t.file(path, text(f"This is MDEV {dev.uuid}"))
            elif attr == "vendor/memory":
                t.file(path, text(f"{dev.type.consumes.get('mbytes', 0)} MB"))
            elif attr.startswith(("assign_", "unassign_")):
                t.file(path, write=self._ap_writer(dev, attr), **self._meta(dev))
            elif attr in ("matrix", "guest_matrix"):
                t.file(path, lambda: _ap_matrix(dev))
            elif attr == "control_domains":
                t.file(path, lambda: "".join(f"{d:04x}\n" for d in sorted(dev.control_domains)).encode())
            else:
                t.file(path, text(""))

    @staticmethod
    def _meta(dev: Device) -> dict[str, Any]:
        return {"op": "write", "parent": dev.parent.name, "type": dev.type.id, "uuid": dev.uuid}

    def _params_writer(self, dev: Device) -> Writer:
        def write(data: bytes, rec: dict[str, Any]) -> None:
            with self.lock:
                dev.params = data

        return write

    def _ap_writer(self, dev: Device, attr: str) -> Writer:
        assign = attr.startswith("assign_")
        kind = attr.split("_", 1)[1]  # adapter | domain | control_domain

        def write(data: bytes, rec: dict[str, Any]) -> None:
            value = parse.kstrtoul(data)
            with self.lock:
                if value > AP_MAX_ID:
                    raise err(errno.ENODEV)
                ids = {"adapter": dev.adapters, "domain": dev.domains, "control_domain": dev.control_domains}[kind]
                if not assign:
                    ids.discard(value)
                    return
                if kind != "control_domain":
                    wanted = (
                        {(value, d) for d in dev.domains} if kind == "adapter" else {(a, value) for a in dev.adapters}
                    )
                    for other in self.devices.values():
                        taken = {(a, d) for a in other.adapters for d in other.domains}
                        if other is not dev and other.parent is dev.parent and wanted & taken:
                            raise err(errno.EBUSY)  # an APQN belongs to one mdev only
                ids.add(value)

        return write

    def _uevent(self, data: bytes, rec: dict[str, Any]) -> None:
        words = data.split()
        if not words or words[0] not in UEVENT_ACTIONS:
            raise err(errno.EINVAL)

    # ---- NVIDIA vendor-specific VFIO (no mdev) -----------------------------------------------------------------

    def _build_vendor_vfio(self, p: ParentSpec) -> None:
        base = f"{p.path}/nvidia"
        self.tree.file(f"{base}/creatable_vgpu_types", lambda: self._creatable(p))
        self.tree.file(
            f"{base}/current_vgpu_type",
            lambda: f"{self.vgpus.get(p.name, '0')}\n".encode(),
            self._vgpu_writer(p),
            op="write",
            parent=p.name,
        )

    def _creatable(self, p: ParentSpec) -> bytes:
        with self.lock:
            live = self._live()
            rows = [f"{t.id:<6}: {t.name}\n" for t in p.types if profiles.available(self.host, live, p.name, t.id)]
        return ("ID    : vGPU Name\n" + "".join(rows)).encode()

    def _vgpu_writer(self, p: ParentSpec) -> Writer:
        def write(data: bytes, rec: dict[str, Any]) -> None:
            value = parse.kstrtoul(data)
            rec["op"] = "create" if value else "remove"
            self._inject(rec["op"], p.name)
            with self.lock:
                if p.name not in self.registered or p.name in self.unregistering:
                    raise err(errno.ENODEV)
                if not value:
                    rec["type"] = self.vgpus.pop(p.name, None)
                    rec["noop"] = rec["type"] is None
                    return
                rec["type"] = type_id = str(value)
                # The errnos below are our guess: NVIDIA documents none for current_vgpu_type.
                if p.name in self.vgpus:
                    raise err(errno.EBUSY)  # the VF already has a vGPU: clear it with 0 first
                if p.type(type_id) is None or profiles.available(self.host, self._live(), p.name, type_id) < 1:
                    raise err(errno.EINVAL)  # not in creatable_vgpu_types right now
                self.vgpus[p.name] = type_id
                pause = self.rules.delay("create", p.name)
            if pause:
                time.sleep(pause)

        return write


def _ap_matrix(dev: Device) -> bytes:
    """vfio_ap matrix_show(): aa.dddd per APQN, or aa. / .dddd while one side is still empty."""
    adapters, domains = sorted(dev.adapters), sorted(dev.domains)
    if adapters and domains:
        lines = [f"{a:02x}.{d:04x}" for a in adapters for d in domains]
    else:
        lines = [f"{a:02x}." for a in adapters] + [f".{d:04x}" for d in domains]
    return "".join(line + "\n" for line in lines).encode()
