"""The kernel behind the fake mount: the mdev core (vendor drivers: vendor.py, fault injection: control.py).

Independent of FUSE: fs.py hands every write() to Kernel.write() and every read to a node's reader. One re-entrant
lock (the analogue of the core's mdev_list_lock) guards the tree and the state; injected delays sleep outside it, so
concurrent creates really overlap, as on a real kernel.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections import defaultdict
from typing import Any

from fakesysfs import parse, profiles
from fakesysfs.control import ControlFile
from fakesysfs.journal import Journal
from fakesysfs.profiles import Host, ParentSpec, TypeSpec
from fakesysfs.state import CONTROL, Device, Rules, err
from fakesysfs.tree import File, Reader, Tree, Writer, text
from fakesysfs.vendor import VendorDrivers


class Kernel(VendorDrivers, ControlFile):
    """The mdev core and the device tree; vendor drivers and the control file are mixins (vendor.py, control.py)."""

    def __init__(self, host: Host, journal: Journal) -> None:
        self.host = host
        self.journal = journal
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.tree = Tree()
        self.devices: dict[str, Device] = {}
        self.vgpus: dict[str, str] = {}  # vendor-VFIO VF -> current vGPU type id
        self.registered = set(host.parents)
        self.unregistering: set[str] = set()
        self.rules = Rules()
        self._groups: set[int] = set()
        self._build()

    # ---- tree construction -------------------------------------------------------------------------------------

    def _build(self) -> None:
        t = self.tree
        for d in ("/class/mdev_bus", "/bus/mdev/devices", "/bus/mdev/drivers", "/kernel/iommu_groups"):
            t.mkdirs(d)
        t.file(CONTROL, write=self._control, op="control").hidden = True
        for pf in self.host.pfs.values():
            self._pci(pf.path, pf.name, pf.driver, pf.pci_vendor, pf.pci_device)
            t.file(f"{pf.path}/sriov_totalvfs", text(pf.total_vfs))
            t.file(f"{pf.path}/sriov_numvfs", text(len(pf.vfs)))
            for i, vf in enumerate(pf.vfs):
                t.link(f"{pf.path}/virtfn{i}", self.host.parents[vf].path)
        for p in self.host.parents.values():
            t.mkdirs(p.path)
            if p.bus == "pci":
                self._pci(p.path, p.name, p.driver, p.pci_vendor, p.pci_device)
            if p.physfn:
                t.link(f"{p.path}/physfn", self.host.pfs[p.physfn].path)
            if p.interface == profiles.VENDOR_VFIO:
                self._build_vendor_vfio(p)
            else:
                self._build_mdev_parent(p)

    def _pci(self, path: str, name: str, driver: str | None, vendor: str | None, device: str | None) -> None:
        t = self.tree
        t.link(f"/bus/pci/devices/{name}", path)
        t.file(f"{path}/vendor", text(vendor or "0xffff"))
        t.file(f"{path}/device", text(device or "0xffff"))
        if driver:
            t.mkdirs(f"/bus/pci/drivers/{driver}")
            t.link(f"{path}/driver", f"/bus/pci/drivers/{driver}")

    def _build_mdev_parent(self, p: ParentSpec) -> None:
        t = self.tree
        t.link(f"/class/mdev_bus/{p.name}", p.path)
        t.mkdirs(f"/bus/mdev/drivers/{p.mdev_driver}")
        for ty in p.types:
            d = f"{p.path}/mdev_supported_types/{ty.id}"
            t.file(f"{d}/create", write=self._create_writer(p, ty), op="create", parent=p.name, type=ty.id)
            t.file(f"{d}/name", text(ty.name))
            if ty.description is not None:
                t.file(f"{d}/description", text(ty.description))
            t.file(f"{d}/device_api", text(ty.device_api))
            t.file(f"{d}/available_instances", self._available_reader(p, ty))
            t.mkdirs(f"{d}/devices")

    def _available_reader(self, p: ParentSpec, ty: TypeSpec) -> Reader:
        return lambda: f"{self.available(p.name, ty.id)}\n".encode()

    # ---- queries -----------------------------------------------------------------------------------------------

    def _live(self) -> dict[str, list[str]]:
        live: dict[str, list[str]] = defaultdict(list)
        for d in self.devices.values():
            live[d.parent.name].append(d.type.id)
        for vf, type_id in self.vgpus.items():
            live[vf].append(type_id)
        return live

    def available(self, parent: str, type_id: str) -> int:
        with self.lock:
            return profiles.available(self.host, self._live(), parent, type_id)

    # ---- the write path ----------------------------------------------------------------------------------------

    def write(self, path: str, node: File, data: bytes, pid: int) -> int:
        """One write() syscall: judged alone, journaled with its outcome."""
        if not data:
            return 0  # sysfs_kf_write() never calls store for 0 bytes
        rec: dict[str, Any] = {
            "t0": time.monotonic(),
            "t1": None,
            "pid": pid,
            "op": node.meta.get("op", "write"),
            "path": path.lstrip("/"),
            "parent": node.meta.get("parent"),
            "type": node.meta.get("type"),
            "uuid": node.meta.get("uuid"),
            "data": repr(data),
            "result": "ok",
            "actor": "user",
        }
        try:
            if not node.attached and not node.own_detach:
                raise err(errno.ENODEV)  # kernfs: the attribute was removed while the file was open
            assert node.write is not None
            node.write(data, rec)
        except OSError as e:
            rec["result"] = errno.errorcode.get(e.errno or 0, str(e.errno))
            raise
        finally:
            rec["t1"] = time.monotonic()
            self.journal.add(rec)
        return len(data)

    def _inject(self, op: str, parent: str) -> None:
        """Count this write against every matching fail rule; the first one due fails it."""
        due = None
        with self.lock:
            for r in self.rules.fails:
                if r.op == op and r.parent in (None, parent):
                    r.seen += 1
                    if due is None and r.seen >= r.nth and (r.count < 0 or r.fired < r.count):
                        r.fired += 1
                        due = r.code
        if due is not None:
            raise err(due)

    def _exhaust_errno(self, p: ParentSpec) -> int:
        ex = self.rules.exhaust
        return ex.get(p.name) or ex.get(None) or profiles.exhaust_errno(p)

    # ---- create ------------------------------------------------------------------------------------------------

    def _create_writer(self, p: ParentSpec, ty: TypeSpec) -> Writer:
        def write(data: bytes, rec: dict[str, Any]) -> None:
            try:
                rec["uuid"] = parse.create_uuid(data)
            except OSError:
                rec["uuid"] = None
            self._inject("create", p.name)  # counts every write, well-formed or not
            if rec["uuid"] is None:
                raise err(errno.EINVAL)
            self.create(p, ty, rec["uuid"], delay=True)

        return write

    def create(self, p: ParentSpec, ty: TypeSpec, uuid: str, actor: str = "user", delay: bool = False) -> None:
        """mdev_device_create(): duplicate check, capacity, then the device appears; the probe comes after."""
        with self.lock:
            if uuid in self.devices:
                raise err(errno.EEXIST)
            if profiles.available(self.host, self._live(), p.name, ty.id) < 1:
                raise err(self._exhaust_errno(p))
            if p.name not in self.registered or p.name in self.unregistering:
                raise err(errno.ENODEV)
            dev = self.devices[uuid] = Device(uuid, p, ty, actor)
            self._add_device(dev)
            pause = self.rules.delay("create", p.name) if delay else 0.0
        if pause:
            time.sleep(pause)  # the vendor probe: outside the lock, so creates overlap like on a real kernel
        with self.lock:
            self._activate(dev)

    def _add_device(self, dev: Device) -> None:
        """What device_add() shows before the probe: the dir with `remove`, the bus link, an IOMMU group."""
        t, p = self.tree, dev.parent
        dev.remove_node = t.file(
            f"{dev.path}/remove",
            write=self._remove_writer(dev),
            op="remove",
            parent=p.name,
            type=dev.type.id,
            uuid=dev.uuid,
        )
        dev.remove_node.own_detach = True
        t.file(f"{dev.path}/uevent", text(f"DRIVER={p.mdev_driver}"), self._uevent)
        t.mkdirs(f"{dev.path}/power")
        t.link(f"{dev.path}/subsystem", "/bus/mdev")
        t.link(f"{dev.path}/driver", f"/bus/mdev/drivers/{p.mdev_driver}")
        dev.group = min(set(range(len(self._groups) + 1)) - self._groups)  # like ida_alloc(): lowest free
        self._groups.add(dev.group)
        group = f"/kernel/iommu_groups/{dev.group}"
        t.mkdirs(f"{group}/devices")
        t.link(f"{group}/devices/{dev.uuid}", dev.path)
        t.link(f"{dev.path}/iommu_group", group)
        t.link(f"/bus/mdev/devices/{dev.uuid}", dev.path)

    def _activate(self, dev: Device) -> None:
        """After the probe: type links and vendor attributes exist, remove no longer answers EAGAIN."""
        t = self.tree
        t.link(f"{dev.path}/mdev_type", dev.type_dir)
        t.link(f"{dev.type_dir}/devices/{dev.uuid}", dev.path)
        t.mkdirs(f"{dev.path}/vfio-dev/vfio{dev.group}")  # numbered apart from the group on a real kernel
        self._vendor_files(dev)
        dev.state = "active"
        self.changed.notify_all()

    # ---- remove ------------------------------------------------------------------------------------------------

    def _remove_writer(self, dev: Device) -> Writer:
        def write(data: bytes, rec: dict[str, Any]) -> None:
            self._inject("remove", dev.parent.name)
            if parse.kstrtoul(data) == 0:
                rec["noop"] = True  # remove_store() ignores 0
                return
            with self.lock:
                assert dev.remove_node is not None
                if not dev.remove_node.attached:
                    if self.devices.get(dev.uuid) is not dev or dev.state != "removing":
                        raise err(errno.ENODEV)
                    # lost the kernfs_remove_self() race: wait for the winner, then succeed doing nothing
                    while self.devices.get(dev.uuid) is dev:
                        self.changed.wait()
                    rec["noop"] = True
                    return
                if self.rules.busy.get(dev.uuid) == "ebusy":
                    raise err(errno.EBUSY)
                self.tree.drop(f"{dev.path}/remove")  # the file goes first, even if what follows fails
                if dev.state == "creating":
                    raise err(errno.EAGAIN)
                if dev.parent.name in self.unregistering:
                    raise err(errno.ENODEV)
                self._begin_remove(dev)
                pause = self.rules.delay("remove", dev.parent.name)
            self._finish_remove(dev, pause, honour_busy=True)

        return write

    def _begin_remove(self, dev: Device) -> None:
        """mdev_remove_sysfs_files(): mdev_type and the type's devices/ link go before device_del()."""
        dev.state = "removing"
        self.tree.drop(f"{dev.path}/remove")
        self.tree.drop(f"{dev.path}/mdev_type")
        self.tree.drop(f"{dev.type_dir}/devices/{dev.uuid}")

    def _finish_remove(self, dev: Device, pause: float = 0.0, honour_busy: bool = False) -> None:
        if honour_busy:
            with self.lock:  # vfio_unregister_group_dev() waits for the VFIO user to close the device
                while self.rules.busy.get(dev.uuid) == "block":
                    self.changed.wait()
        if pause:
            time.sleep(pause)
        with self.lock:
            self.tree.drop(dev.path)
            self.tree.drop(f"/bus/mdev/devices/{dev.uuid}")
            self.tree.drop(f"/kernel/iommu_groups/{dev.group}")
            self._groups.discard(dev.group)
            del self.devices[dev.uuid]  # release: UUID and capacity are free again
            self.changed.notify_all()

    def remove_now(self, uuid: str, actor: str, pid: int = 0) -> None:
        """A removal nobody wrote `remove` for (external tool, vendor driver): journaled with its actor."""
        rec = self._record("remove", actor, pid, uuid=uuid)
        try:
            with self.lock:
                dev = self.devices.get(uuid)
                if dev is None:
                    raise err(errno.ENODEV)
                rec.update(parent=dev.parent.name, type=dev.type.id)
                if dev.state == "creating":
                    raise err(errno.EAGAIN)
                if dev.state == "removing":
                    while self.devices.get(uuid) is dev:
                        self.changed.wait()
                    rec["noop"] = True
                    return
                self._begin_remove(dev)
            self._finish_remove(dev)
        except OSError as e:
            rec["result"] = errno.errorcode.get(e.errno or 0, str(e.errno))
            raise
        finally:
            self._close(rec)

    def _record(self, op: str, actor: str, pid: int, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"t0": time.monotonic(), "t1": None, "pid": pid, "op": op, "path": None}
        rec.update({"parent": None, "type": None, "uuid": None, "data": None, "result": "ok", "actor": actor})
        rec.update(fields)
        return rec

    def _close(self, rec: dict[str, Any]) -> None:
        rec["t1"] = time.monotonic()
        self.journal.add(rec)

    def _vanish(self, uuid: str) -> None:
        with contextlib.suppress(OSError):  # already gone or still being created: nothing for the "driver" to do
            self.remove_now(uuid, "driver")

    # ---- parent unregistration ---------------------------------------------------------------------------------

    def unregister(self, name: str, pid: int) -> None:
        """mdev_unregister_parent(): new creates get ENODEV, children go, then types and the class link."""
        with self.lock:
            p = self.host.parents.get(name)
            if p is None or name not in self.registered:
                raise err(errno.ENODEV)
            self.unregistering.add(name)
            while any(d.parent is p and d.state != "active" for d in self.devices.values()):
                self.changed.wait()  # unreg_sem: wait for creates and removes in flight
            for dev in [d for d in self.devices.values() if d.parent is p]:
                rec = self._record("remove", "unregister", pid, parent=name, type=dev.type.id, uuid=dev.uuid)
                self._begin_remove(dev)
                self._finish_remove(dev)
                self._close(rec)
            self.vgpus.pop(name, None)
            self.tree.drop(f"/class/mdev_bus/{name}")
            if p.bus == "virtual":
                self.tree.drop(p.path)  # rmmod of a sample driver: the whole device goes
            else:
                self.tree.drop(f"{p.path}/mdev_supported_types")
                self.tree.drop(f"{p.path}/nvidia")
            self.registered.discard(name)
            self.unregistering.discard(name)
            self.changed.notify_all()
