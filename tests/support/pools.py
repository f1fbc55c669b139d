"""A host with three Tesla T4s (one vGPU type per GPU at a time) for the parent-pool tests, and the domain XML whose
metadata names a pool.

Invariant: the three T4s are the fake's own T4 profile at three PCI addresses (a profiles file of the test's own);
every other profile is the fake's, unchanged.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from fakesysfs.profiles import load_raw

T4S = ["0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"]  # address order
ABSENT = "0000:af:00.0"  # a member that is not registered on this host
T4_16Q, T4_2Q, T4_1B = "nvidia-234", "nvidia-231", "nvidia-222"  # 1, 8 and 16 instances per GPU
A40_558 = "nvidia-558"  # A40-2Q: one per VF
T4X3 = "pool-tesla-t4-x3"


def profiles_file(dest: Path) -> Path:
    """The fake's profiles plus T4X3: its Tesla T4 at each address of T4S."""
    raw = load_raw()
    t4 = raw["nvidia-tesla-t4"]
    three = copy.deepcopy(t4)
    three["name"] = T4X3
    three["parents"] = []
    for addr in T4S:
        p = copy.deepcopy(t4["parents"][0])
        p["name"] = addr
        p["sysfs_path"] = f"/sys/devices/pci0000:{addr[5:7]}/0000:{addr[5:7]}:00.0/{addr}"
        three["parents"].append(p)
    dest.write_text(json.dumps([*raw.values(), three]))
    return dest


def pool_xml(name: str, dom: str, devices: list[tuple[str, str, str]]) -> bytes:
    """A domain whose managed mdevs' metadata entries each name (uuid, WHAT, type): WHAT is `pool="P"`,
    `parent="P"`, both, or "" (neither), written into the <device> element as is."""
    meta = "".join(f'<mdev:device uuid="{u}" {what} type="{t}"/>' for u, what, t in devices)
    hostdevs = "".join(f"<hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>"
                       f"<source><address uuid='{u}'/></source></hostdev>" for u, _, _ in devices)
    return f"""<domain type='kvm'><name>{name}</name><uuid>{dom}</uuid>
  <metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1">{meta}</mdev:mdevs></metadata>
  <devices>{hostdevs}</devices></domain>""".encode()


def pooled(name: str, dom: str, uuids: list[str], type_: str, pool: str = "gpu") -> bytes:
    """A domain whose every device asks for `type_` from `pool`."""
    return pool_xml(name, dom, [(u, f'pool="{pool}"', type_) for u in uuids])


def pools_toml(**pools: list[str]) -> str:
    """A [pools] table (last in the config: a TOML table takes every key after it)."""
    return "[pools]\n" + "".join(f"{k} = [{', '.join(json.dumps(m) for m in v)}]\n" for k, v in pools.items())
