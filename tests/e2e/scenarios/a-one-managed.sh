# a. One managed mtty-2: created before qemu starts, held by qemu while it runs, removed by destroy.
U=$(new_uuid)
define_domain vm-a "mtty-2=$U"
assert_no_mdev "$U"
start_ok vm-a
[ "$(dom_state vm-a)" = paused ] || fail "vm-a is '$(dom_state vm-a)', expected paused"
assert_mdev "$U" mtty-2
ok "mdev $U exists with parent mtty, type mtty-2"
[ "$(avail mtty-2)" = 11 ] || fail "mtty-2 available_instances is $(avail mtty-2), expected 11"
PID=$(qemu_pid vm-a)
GROUP=$(basename "$(readlink "$DEVICES/$U/iommu_group")")
ls -l "/proc/$PID/fd" | grep -q " /dev/vfio/$GROUP\$" \
    || fail "qemu (pid $PID) does not hold /dev/vfio/$GROUP: $(ls -l /proc/$PID/fd | grep vfio | xargs)"
ok "qemu pid $PID holds /dev/vfio/$GROUP"
tr '\0' ' ' < "/proc/$PID/cmdline" | grep -qF "/sys/bus/mdev/devices/$U" \
    || fail "qemu's command line does not name sysfsdev /sys/bus/mdev/devices/$U"
ok "qemu's command line has sysfsdev .../$U"
ledger_mentions "$U" || fail "the ledger ($STATE_DIR) does not mention $U while vm-a runs"
ok "the ledger records $U"
assert_log mdev.created "$U"
destroy_ok vm-a
wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
[ "$(avail mtty-2)" = 12 ] || fail "mtty-2 available_instances is $(avail mtty-2) after destroy, expected 12"
assert_log mdev.removed "$U"
assert_ledger_clean "$U" "$DOMU"
