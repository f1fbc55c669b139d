"""Domain XML with managed mdevs that carry <attr> values, as the attribute and SR-IOV tests write it.

Invariant: one builder for those tests; the hook's own parser reads it back unchanged.
"""

from __future__ import annotations

from support.common import AP_TYPE


def xml(name: str, dom: str, devices: list[tuple[str, str, str, list[tuple[str, str]]]], prefixed: bool = True,
        managed: bool = True) -> bytes:
    """A domain with managed mdev hostdevs; each device (uuid, parent, type, [(attr, value), ...])."""
    p = "mdev:" if prefixed else ""
    meta = "".join(
        f'<{p}device uuid="{u}" parent="{par}" type="{t}">'
        + "".join(f'<{p}attr name="{n}" value="{v}"/>' for n, v in attrs) + f"</{p}device>"
        for u, par, t, attrs in devices)
    model = "vfio-ap" if any(t == AP_TYPE for _, _, t, _ in devices) else "vfio-pci"
    hostdevs = "".join(
        f"<hostdev mode='subsystem' type='mdev' managed='{'yes' if managed else 'no'}' model='{model}'>"
        f"<source><address uuid='{u}'/></source></hostdev>" for u, _, _, _ in devices)
    return f"""<domain type='kvm'><name>{name}</name><uuid>{dom}</uuid>
  <metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1">{meta}</mdev:mdevs></metadata>
  <devices>{hostdevs}</devices></domain>""".encode()
