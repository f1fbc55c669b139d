# A migration that fails after B created the device: virsh migrate A -> B in the background; once B's device
# exists (B's prepare ran), `virsh domjobabort vm` on A. B must remove what it created (release end failed),
# A keeps running with its device. Then the same migration again must succeed: B's device is created fresh
# (mtty keeps a device's RESUMING state; a reused one would fail the next incoming migration, see
# docs/notes/migration-lab.md §3.3).
U=$(uuid)
on a "th_define vm mtty-2=$U && th_start vm"
marker abort
J=$(gx_bg a -t 400 'th_migrate vm; echo "MRC=$MRC"')
on b "wait_until 200 'B created $U (prepare of the incoming migration)' mdev_exists $U"
on a "virsh domjobabort vm || fail \"virsh domjobabort vm on A failed\"; ok 'domjobabort sent on A'"
OUTJ=$(gx_wait a "$J" 430) || true
printf '%s\n' "$OUTJ" | sed 's/^/    A| /'
case "$OUTJ" in
*"MRC=0"*) fail "the migration completed although it was aborted once B's device existed (abort too late)" ;;
*"MRC="*) ;;
*) fail "no result from the background migration on A" ;;
esac
printf '%s\n' "$OUTJ" | grep -q 'canceled by client\|aborted' || fail "virsh migrate failed, but not because of the abort: $(printf '%s\n' "$OUTJ" | grep 'stderr' | head -n1)"
ok "virsh migrate failed because of the abort"
on b "wait_until 120 'B removed $U' eval '! mdev_exists $U'; assert_log mdev.created $U; assert_log mdev.removed $U; assert_ledger_clean $U"
expect b vm dom=none mdevs= ledger=
expect a vm "dom=running/*" "mdevs=$U" "ledger=$(claims vm "$U")"
on a "P=\$(qemu_pid vm); tr '\\0' ' ' < /proc/\$P/cmdline | grep -qF /sys/bus/mdev/devices/$U || fail \"A's qemu does not use $U\"; ok \"A's qemu (pid \$P) still uses $U\""
events b abort
events a abort
note "the same migration again: B's device must be fresh"
on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"the migration after the abort failed: \$MERR\""
on a "wait_until 60 'A removed $U' eval '! mdev_exists $U'"
expect a vm dom=none mdevs= ledger=
expect b vm dom=running/migrated "mdevs=$U" "ledger=$(claims vm "$U")"
