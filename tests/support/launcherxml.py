"""The small domain documents the launcher tests feed the hook file (test_launcher, test_sh_front): one asking for
managed devices by metadata, one by a managed mdev hostdev (both attribute orders), one unmanaged, one without
devices."""

from support.domxml import NS
from support.ids import DOM_A, U1

NO_DEVICES = f"<domain type='kvm'><name>web</name><uuid>{DOM_A}</uuid></domain>".encode()
METADATA = (f"<domain><name>g</name><metadata><mdev:mdevs xmlns:mdev='{NS}'><mdev:device uuid='{U1}' parent='mtty' "
            f"type='mtty-1'/></mdev:mdevs></metadata></domain>").encode()
MANAGED = (f"<domain><name>g</name><devices><hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>"
           f"<source><address uuid='{U1}'/></source></hostdev></devices></domain>").encode()
MANAGED_FIRST = MANAGED.replace(b"type='mdev' managed='yes'", b"managed=\"yes\" type=\"mdev\"")
UNMANAGED = MANAGED.replace(b"managed='yes'", b"managed='no'")
