"""The small domain documents the launcher tests feed the hook file (test_launcher, test_sh_front): one asking for
managed devices by metadata, one by a managed mdev hostdev (both attribute orders), one unmanaged, one plain."""

NS = "urn:mdev-hooks:domain:1"
U = "4b20d080-1b54-4048-85b3-a6a62d165c01"

PLAIN = b"<domain type='kvm'><name>web</name><uuid>5909df77-0544-4c25-b292-6027c2468ce1</uuid></domain>"
METADATA = (f"<domain><name>g</name><metadata><mdev:mdevs xmlns:mdev='{NS}'><mdev:device uuid='{U}' parent='mtty' "
            f"type='mtty-1'/></mdev:mdevs></metadata></domain>").encode()
MANAGED = (f"<domain><name>g</name><devices><hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>"
           f"<source><address uuid='{U}'/></source></hostdev></devices></domain>").encode()
MANAGED_FIRST = MANAGED.replace(b"type='mdev' managed='yes'", b"managed=\"yes\" type=\"mdev\"")
UNMANAGED = MANAGED.replace(b"managed='yes'", b"managed='no'")
