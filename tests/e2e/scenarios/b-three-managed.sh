# b. Three managed mdevs in one domain (mtty-1 x2, mtty-2): all created, all removed.
U1=$(new_uuid); U2=$(new_uuid); U3=$(new_uuid)
define_domain vm-b "mtty-1=$U1" "mtty-1=$U2" "mtty-2=$U3"
start_ok vm-b
assert_mdev "$U1" mtty-1
assert_mdev "$U2" mtty-1
assert_mdev "$U3" mtty-2
ok "all three mdevs exist with the right types"
[ "$(avail mtty-1)" = 20 ] || fail "mtty-1 available_instances is $(avail mtty-1), expected 20 (24 - 1 - 1 - 2)"
PID=$(qemu_pid vm-b)
for u in "$U1" "$U2" "$U3"; do
    tr '\0' ' ' < "/proc/$PID/cmdline" | grep -qF "/sys/bus/mdev/devices/$u" || fail "qemu does not use $u"
    assert_log mdev.created "$u"
done
destroy_ok vm-b
wait_until 15 "all three mdevs removed" eval "! mdev_exists $U1 && ! mdev_exists $U2 && ! mdev_exists $U3"
for u in "$U1" "$U2" "$U3"; do assert_log mdev.removed "$u"; done
assert_no_mdevs_at_all
assert_ledger_clean "$U1" "$U2" "$U3" "$DOMU"
