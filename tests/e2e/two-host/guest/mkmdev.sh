# create the lab's mdev by hand: mtty-2 with a fixed UUID (same on both hosts)
U=${U:-5ae5b2b4-6d4b-4a8e-9f1b-0c3e7a5d2a11}
T=${T:-mtty-2}
if [ -e /sys/bus/mdev/devices/$U ]; then echo "mdev $U exists"; else
  echo $U > /sys/class/mdev_bus/mtty/mdev_supported_types/$T/create && echo "created $U ($T)"; fi
ls -l /sys/bus/mdev/devices/
