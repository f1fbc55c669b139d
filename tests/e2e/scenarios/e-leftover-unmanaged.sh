# e. (1) A leftover mdev (made by hand, owned by no domain) is adopted: used, never removed.
# (2) An unmanaged mdev hostdev (managed='no', made by hand) next to a managed one: only the managed one
# is created and removed.
U=$(new_uuid)
make_mdev "$U" mtty-1
define_domain vm-e "mtty-1=$U"
start_ok vm-e
assert_mdev "$U" mtty-1
assert_log mdev.adopted "$U"
assert_no_log mdev.created "$U"
destroy_ok vm-e
sleep 2
mdev_exists "$U" || fail "the adopted leftover $U was removed by the hook"
ok "adopted leftover $U still exists after destroy"
assert_no_log mdev.removed "$U"
assert_ledger_clean "$U" "$DOMU"
remove_mdev "$U"
virsh undefine vm-e > /dev/null

note "(2) unmanaged + managed in one domain"
UN=$(new_uuid)
UM=$(new_uuid)
make_mdev "$UN" mtty-2
define_domain vm-e2 "unmanaged=$UN" "mtty-1=$UM"
start_ok vm-e2
assert_mdev "$UN" mtty-2
assert_mdev "$UM" mtty-1
assert_log mdev.created "$UM"
PID=$(qemu_pid vm-e2)
for u in "$UN" "$UM"; do
    tr '\0' ' ' < "/proc/$PID/cmdline" | grep -qF "/sys/bus/mdev/devices/$u" || fail "qemu does not use $u"
done
destroy_ok vm-e2
wait_until 15 "managed mdev $UM removed" eval '! mdev_exists '"$UM"
mdev_exists "$UN" || fail "the unmanaged mdev $UN was removed"
ok "unmanaged $UN untouched, managed $UM removed"
for ev in mdev.created mdev.removed mdev.adopted; do assert_no_log "$ev" "$UN"; done
if ledger_mentions "$UN"; then fail "the ledger mentions the unmanaged $UN"; fi
remove_mdev "$UN"
