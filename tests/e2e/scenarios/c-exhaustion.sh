# c. Exhaustion. (1) 13 x mtty-2 (mtty has 12): the hook's validation refuses before creating anything.
# (2) 7 x mtty-2 + 11 x mtty-1 = 25 ports of mtty's shared pool of 24: each type alone passes validation,
# the kernel refuses the last create (ENOSPC), and the hook must roll back the 17 it created.
UUIDS=()
SPECS=()
for i in $(seq 13); do u=$(new_uuid); UUIDS+=("$u"); SPECS+=("mtty-2=$u"); done
define_domain vm-c "${SPECS[@]}"
vstart vm-c --paused
[ "$VRC" != 0 ] || fail "vm-c with 13 x mtty-2 started"
hook_reason
case "$REASON" in *available_instances*) ;; *) fail "the reason does not mention available_instances" ;; esac
ok "start refused by the hook in ${VSECS}s, reason mentions available_instances"
[ "$(dom_state vm-c)" = "shut off" ] || fail "vm-c is '$(dom_state vm-c)'"
assert_no_mdevs_at_all
[ "$(avail mtty-2)" = 12 ] || fail "mtty-2 available_instances is $(avail mtty-2), expected 12"
assert_no_log mdev.created "${UUIDS[@]}"
assert_ledger_clean "${UUIDS[@]}" "$DOMU"
virsh undefine vm-c > /dev/null

note "(2) 7 x mtty-2 + 11 x mtty-1: per-type validation passes, the shared pool runs out"
UUIDS=()
SPECS=()
for i in $(seq 7); do u=$(new_uuid); UUIDS+=("$u"); SPECS+=("mtty-2=$u"); done
for i in $(seq 11); do u=$(new_uuid); UUIDS+=("$u"); SPECS+=("mtty-1=$u"); done
define_domain vm-c2 "${SPECS[@]}"
vstart vm-c2 --paused
[ "$VRC" != 0 ] || fail "vm-c2 asking for 25 ports of 24 started"
hook_reason
case "$REASON" in
*"No space left on device"* | *ENOSPC* | *available_instances*) ;;
*) fail "the reason names neither ENOSPC/'No space left on device' nor available_instances" ;;
esac
ok "start refused in ${VSECS}s"
assert_no_mdevs_at_all
[ "$(avail mtty-1)" = 24 ] && [ "$(avail mtty-2)" = 12 ] || fail "after rollback: mtty-1 $(avail mtty-1), mtty-2 $(avail mtty-2) available, expected 24, 12"
if grep -qF '"mdev.created"' "$HOOK_LOG" && grep -F '"mdev.created"' "$HOOK_LOG" | grep -qiF "${UUIDS[0]}"; then
    ok "the hook created devices, hit the kernel's limit and rolled back"
fi
assert_ledger_clean "${UUIDS[@]}" "$DOMU"
