"""The kernel behind the fake mount: mdev core, vendor drivers, and the control file's fault injection.

Independent of FUSE: fs.py hands every write() to Kernel.write() and every read to a node's reader. One re-entrant
lock (the analogue of the core's mdev_list_lock) guards the tree and the state; injected delays sleep outside it, so
concurrent creates really overlap, as on a real kernel.
"""

from __future__ import annotations

import contextlib
import errno
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fakesysfs import parse, profiles
from fakesysfs.journal import Journal
from fakesysfs.profiles import Host, ParentSpec, TypeSpec
from fakesysfs.tree import File, Reader, Tree, Writer, text

CONTROL = "/.fake-control"
AP_MAX_ID = 255  # ap_max_adapter_id / ap_max_domain_id on current machines
UEVENT_ACTIONS = {b"add", b"remove", b"change", b"move", b"online", b"offline", b"bind", b"unbind"}


def err(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode[code]} (fake sysfs)")


def errno_of(value: object) -> int:
    """An errno given by name ("EIO") or number."""
    code = getattr(errno, value, None) if isinstance(value, str) else value
    if not isinstance(code, int) or code not in errno.errorcode:
        raise ValueError(f"unknown errno {value!r}")
    return code


@dataclass(eq=False)
class Device:
    uuid: str
    parent: ParentSpec
    type: TypeSpec
    actor: str
    state: str = "creating"  # creating -> active -> removing -> gone; capacity and UUID are held throughout
    group: int = -1
    remove_node: File | None = None
    params: bytes = b""
    adapters: set[int] = field(default_factory=set)
    domains: set[int] = field(default_factory=set)
    control_domains: set[int] = field(default_factory=set)

    @property
    def path(self) -> str:
        return f"{self.parent.path}/{self.uuid}"

    @property
    def type_dir(self) -> str:
        return f"{self.parent.path}/mdev_supported_types/{self.type.id}"


@dataclass
class FailRule:
    op: str
    code: int
    nth: int = 1
    count: int = 1  # -1: every matching write from the nth on
    parent: str | None = None
    seen: int = 0
    fired: int = 0


@dataclass
class Rules:
    fails: list[FailRule] = field(default_factory=list)
    delays: dict[tuple[str, str | None], float] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)  # uuid -> "block" | "ebusy"
    exhaust: dict[str | None, int] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)

    def delay(self, op: str, parent: str) -> float:
        return self.delays.get((op, parent), self.delays.get((op, None), 0.0))


class Kernel:
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

    # ---- vendor attributes -------------------------------------------------------------------------------------

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

    # ---- control file ------------------------------------------------------------------------------------------

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


def _ap_matrix(dev: Device) -> bytes:
    """vfio_ap matrix_show(): aa.dddd per APQN, or aa. / .dddd while one side is still empty."""
    adapters, domains = sorted(dev.adapters), sorted(dev.domains)
    if adapters and domains:
        lines = [f"{a:02x}.{d:04x}" for a in adapters for d in domains]
    else:
        lines = [f"{a:02x}." for a in adapters] + [f".{d:04x}" for d in domains]
    return "".join(line + "\n" for line in lines).encode()
