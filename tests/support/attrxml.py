"""Domain XML with managed mdevs that carry <attr> values, as the attribute and SR-IOV tests write it.

Invariant: a wrapper of support.domxml's builder (no XML of its own); the hook's own parser reads it back unchanged.
"""

from __future__ import annotations

from support.domxml import Mdev, domain_xml
from support.ids import AP_PASSTHROUGH


def xml(name: str, dom: str, devices: list[tuple[str, str, str, list[tuple[str, str]]]], prefixed: bool = True,
        managed: bool = True) -> bytes:
    """A domain (support.domxml's builder) with mdev hostdevs, managed or not, each with its metadata entry:
    (uuid, parent, type, [(attr, value), ...]), values as XML text (a test may write `&#10;`); vfio-ap's model if
    any is an AP device."""
    model = "vfio-ap" if any(t == AP_PASSTHROUGH for _, _, t, _ in devices) else "vfio-pci"
    items = [Mdev(u, p, t, tuple(attrs), hostdev="yes" if managed else "no", model=model,
                   raw=True)
             for u, p, t, attrs in devices]
    return domain_xml(name, dom, items, prefixed=prefixed, metadata=True)
