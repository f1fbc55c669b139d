# c. Exhaustion. (1) 13 x mtty-2 (mtty has 12): the hook's validation refuses before creating anything.
# (2) 7 x mtty-2 + 11 x mtty-1 = 25 ports of mtty's shared pool of 24: each type alone passes validation.
# 6.1/6.12: the kernel refuses the last create (ENOSPC), and the hook must roll back the 17 it created.
# 5.10: mtty never refuses (its available_instances goes negative): all 18 are created, qemu starts, and
# destroy must remove all 18.
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

note "(2) 7 x mtty-2 + 11 x mtty-1: per-type validation passes, the shared pool of 24 is one port short"
UUIDS=()
SPECS=()
for i in $(seq 7); do u=$(new_uuid); UUIDS+=("$u"); SPECS+=("mtty-2=$u"); done
U1=()
for i in $(seq 11); do u=$(new_uuid); UUIDS+=("$u"); U1+=("$u"); SPECS+=("mtty-1=$u"); done
define_domain vm-c2 "${SPECS[@]}"
vstart vm-c2 --paused
if legacy_mdev; then
    # 5.10: available_instances is mtty's own (24 - ports used) / ports, and mtty's create never refuses:
    # all 18 creates succeed, the pool is oversubscribed (mtty-1 says -1, mtty-2 (24-25)/2 = 0), and qemu
    # opens all 18 devices. What must hold: the hook made exactly these, and destroy removes every one.
    [ "$VRC" = 0 ] || fail "on $(uname -r) (no pool limit in mtty) vm-c2 should start; got: $VERR"
    [ "$(dom_state vm-c2)" = paused ] || fail "vm-c2 is '$(dom_state vm-c2)', expected paused"
    for u in "${UUIDS[@]:0:7}"; do assert_mdev "$u" mtty-2; done
    for u in "${U1[@]}"; do assert_mdev "$u" mtty-1; done
    [ "$(all_mdevs | wc -l)" = 18 ] || fail "$(all_mdevs | wc -l) mdevs exist, expected 18"
    [ "$(avail mtty-1)" = -1 ] && [ "$(avail mtty-2)" = 0 ] \
        || fail "oversubscribed: mtty-1 $(avail mtty-1), mtty-2 $(avail mtty-2) available, expected -1, 0"
    ok "kernel $(uname -r): all 18 created and started; available_instances mtty-1 -1, mtty-2 0 (25 of 24 ports)"
    PID=$(qemu_pid vm-c2)
    tr '\0' ' ' < "/proc/$PID/cmdline" > "$SCRATCH/cmdline"
    for u in "${UUIDS[@]}"; do
        grep -qF "/sys/bus/mdev/devices/$u" "$SCRATCH/cmdline" || fail "qemu does not use $u"
    done
    ok "qemu's command line has all 18 sysfsdev paths"
    assert_logs mdev.created "${UUIDS[@]}"
    destroy_ok vm-c2
    wait_until 30 "all 18 mdevs removed" eval '[ -z "$(all_mdevs)" ]'
    assert_logs mdev.removed "${UUIDS[@]}"
else
    # 6.1+: the core counts instances and mtty refuses the create past 24 ports with ENOSPC: the hook
    # reports the kernel's refusal and rolls back the 17 it created.
    [ "$VRC" != 0 ] || fail "vm-c2 asking for 25 ports of 24 started"
    hook_reason
    case "$REASON" in
    *"No space left on device"* | *ENOSPC*) ;;
    *) fail "the reason does not name the kernel's ENOSPC/'No space left on device'" ;;
    esac
    ok "start refused in ${VSECS}s: the kernel said ENOSPC"
    [ "$(dom_state vm-c2)" = "shut off" ] || fail "vm-c2 is '$(dom_state vm-c2)'"
    hook_log_has mdev.created "${UUIDS[0]}" \
        || fail "the hook did not create ${UUIDS[0]} (the first device) before the kernel refused"
    ok "the hook created devices, hit the kernel's limit and rolled back"
fi
assert_no_mdevs_at_all
[ "$(avail mtty-1)" = 24 ] && [ "$(avail mtty-2)" = 12 ] || fail "afterwards: mtty-1 $(avail mtty-1), mtty-2 $(avail mtty-2) available, expected 24, 12"
assert_ledger_clean "${UUIDS[@]}" "$DOMU"
