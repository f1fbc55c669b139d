# print the lab domain XML. usage: bash domxml.sh VARIANT...   (words, any order)
#   override  : qemu namespace override enable-migration=on on alias ua-mdev0
#   meta      : <metadata> with our mdev:mdevs element
#   managed   : managed='yes' on the hostdev (default managed='no')
#   trace     : qemu:commandline -trace 'vfio_*' (qemu trace events to the domain log)
#   noalias   : no <alias> on the hostdev
#   nodirty   : override x-device-dirty-page-tracking=off (needed with qemu 10.0, see docs/notes/migration-lab.md)
U=${U:-5ae5b2b4-6d4b-4a8e-9f1b-0c3e7a5d2a11}
NAME=${NAME:-vm}
V=" $* "
on() { case "$V" in *" $1 "*) return 0;; esac; return 1; }
MANAGED=no; on managed && MANAGED=yes
echo "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
echo "  <name>$NAME</name>"
if on meta; then
cat <<X
  <metadata>
    <mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1">
      <mdev:device uuid="$U" parent="mtty" type="mtty-2"/>
    </mdev:mdevs>
  </metadata>
X
fi
cat <<X
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='mdev' managed='$MANAGED' model='vfio-pci'>
      <source><address uuid='$U'/></source>
X
on noalias || echo "      <alias name='ua-mdev0'/>"
cat <<X
    </hostdev>
    <memballoon model='none'/>
  </devices>
X
if on trace; then
cat <<X
  <qemu:commandline>
    <qemu:arg value='-trace'/>
    <qemu:arg value='vfio_*migrat*'/>
    <qemu:arg value='-trace'/>
    <qemu:arg value='vfio_save_*'/>
    <qemu:arg value='-trace'/>
    <qemu:arg value='vfio_load_*'/>
  </qemu:commandline>
X
fi
if on override || on nodirty; then
echo "  <qemu:override>"
echo "    <qemu:device alias='ua-mdev0'>"
echo "      <qemu:frontend>"
on override && echo "        <qemu:property name='enable-migration' type='string' value='on'/>"
on nodirty && echo "        <qemu:property name='x-device-dirty-page-tracking' type='string' value='off'/>"
echo "      </qemu:frontend>"
echo "    </qemu:device>"
echo "  </qemu:override>"
fi
echo "</domain>"
