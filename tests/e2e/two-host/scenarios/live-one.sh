# Live migration of a running domain holding one hook-managed mtty mdev, A -> B, then destroy on B.
# B checks at migrate begin and creates the device with the same UUID at prepare; qemu on B opens it and
# receives mtty's state; A's release removes A's device. Ledgers: A empty, B owns it.
U=$(uuid)
note "device $U (mtty-2)"
on a "th_define vm mtty-2=$U && th_start vm"
expect a vm dom=running/booted "mdevs=$U" "ledger=$(claims vm "$U")"
expect b vm dom=none mdevs= ledger=
marker live
HV0=$(val b "dmesg | grep -c 'header validated' || true")
on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"virsh migrate A->B failed: \$MERR\""
# A's release runs after the domain left: give it a moment to remove A's device
on a "wait_until 60 'A removed $U' eval '! mdev_exists $U'"
expect a vm dom=none mdevs= ledger=
expect b vm dom=running/migrated "mdevs=$U" "ledger=$(claims vm "$U")"
ok "after the migration: B has $U (owned by vm in B's ledger), A has no device and an empty ledger"
on b "assert_mdev $U mtty-2; P=\$(qemu_pid vm); tr '\\0' ' ' < /proc/\$P/cmdline | grep -qF /sys/bus/mdev/devices/$U || fail \"B's qemu does not use $U\"; ok \"B's qemu (pid \$P) uses $U\""
on b "n=\$(dmesg | grep -c 'header validated'); [ \$n = $((HV0 + 1)) ] || fail \"B's mtty validated \$((n - $HV0)) device state headers during the migration, expected 1\"; dmesg | grep resume_write | tail -n 3; ok \"B's mtty received the device state\""
on b "virsh dumpxml --inactive vm | grep -q 'mdev:device uuid=\"$U\"' || fail 'B persistent definition lost our metadata'; ok 'B persistent definition keeps mdev:device $U'"
on b "assert_log mdev.created $U"
on a "assert_log mdev.removed $U"
on a "virsh list --all --name | grep -qx vm && fail 'vm is still defined on A (--undefinesource)' || ok 'vm not defined on A any more'"
events b live
events a live
on b "th_destroy vm; wait_until 30 'B removed $U' eval '! mdev_exists $U'; assert_log mdev.removed $U; assert_ledger_clean $U"
expect b vm dom=shut_off/destroyed mdevs= ledger=
