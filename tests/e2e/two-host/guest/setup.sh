# Guest setup (run through gx): modules, versions, libvirtd on TCP (socket activation), state of things.
set -u
echo "== $(hostname) $(date +%T.%N)"
for m in vfio vfio_iommu_type1 mdev mtty; do modprobe $m && echo "modprobe $m rc=0" || echo "modprobe $m rc=$?"; done
# mtty's dev_dbg lines (migration state changes), if dynamic debug is there
mount -t debugfs none /sys/kernel/debug 2>/dev/null
echo 'module mtty +p' > /sys/kernel/debug/dynamic_debug/control 2>/dev/null && echo "dyndbg mtty +p ok" || echo "no dyndbg"
uname -r; cat /proc/version
libvirtd --version; virsh --version; qemu-system-x86_64 --version | head -1; mdevctl --version 2>&1 | head -1
dpkg-query -W -f='${Package} ${Version}\n' linux-image-amd64 libvirt-daemon libvirt-daemon-system qemu-system-x86 mdevctl
ls /sys/class/mdev_bus/; ls /sys/class/mdev_bus/mtty/mdev_supported_types/
systemctl is-enabled libvirtd.service libvirtd.socket libvirtd-tcp.socket virtqemud.socket 2>&1 | paste -sd' '
systemctl start libvirtd-tcp.socket 2>&1
systemctl start libvirtd.service 2>&1
systemctl is-active libvirtd.service libvirtd-tcp.socket 2>&1 | paste -sd' '
ss -Htlnp | grep -E '1650|libvirt' || true
virsh -c qemu:///system uri
# the agent of an image built before the eth0 wait may have missed eth0: configure it here if needed
if ! ip -4 -o addr show eth0 2>/dev/null | grep -q 169.254; then
    for _ in $(seq 60); do [ -e /sys/class/net/eth0 ] && break; sleep 0.5; done
    ip link set eth0 up; ip addr add "$(cat /mnt/share/ip)" dev eth0 && echo "eth0 configured by setup.sh"
fi
ip -br addr show eth0
