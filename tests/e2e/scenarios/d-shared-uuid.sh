# d. Two domains name the same mdev UUID: the second start fails fast and never touches the first's device
# (a remove of a device qemu holds would block libvirt uninterruptibly).
U=$(new_uuid)
define_domain vm-d1 "mtty-2=$U"
define_domain vm-d2 "mtty-2=$U"
start_ok vm-d1
assert_mdev "$U" mtty-2
PID=$(qemu_pid vm-d1)
T=$(now_s)
VRC=0
timeout 60 virsh start --paused vm-d2 > /dev/null 2> "$SCRATCH/err" || VRC=$?
SECS=$(since "$T")
VERR=$(cat "$SCRATCH/err")
note "virsh start vm-d2: rc=$VRC in ${SECS}s: $(echo "$VERR" | grep -v '^$' | tail -n1)"
[ "$VRC" != 124 ] || fail "virsh start vm-d2 hung for 60 s (the release hook is probably blocked removing $U)"
[ "$VRC" != 0 ] || fail "vm-d2 started although vm-d1 uses $U"
awk -v s="$SECS" 'BEGIN { exit !(s < 20) }' || fail "virsh start vm-d2 took ${SECS}s (limit 20 s)"
mdev_exists "$U" || fail "vm-d1's mdev $U disappeared after the failed start of vm-d2"
dom_active vm-d1 || fail "vm-d1 is no longer running: $(dom_state vm-d1)"
kill -0 "$PID" || fail "vm-d1's qemu (pid $PID) is gone"
ok "vm-d2 refused in ${SECS}s; vm-d1 still '$(dom_state vm-d1)' with $U"
hook_reason
ok "the hook refused vm-d2 (the ledger gives $U to vm-d1)"
destroy_ok vm-d1
wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
assert_ledger_clean "$U"
