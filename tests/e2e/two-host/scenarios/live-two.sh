# Live migration of a running domain holding two hook-managed mtty devices (mtty-2 and mtty-1), A -> B:
# both created on B with the same UUIDs, both removed from A; destroy on B removes both.
U1=$(uuid)
U2=$(uuid)
note "devices $U1 (mtty-2), $U2 (mtty-1)"
on a "th_define vm mtty-2=$U1 mtty-1=$U2 && th_start vm"
expect a vm dom=running/booted "mdevs=$(sorted "$U1" "$U2")" "ledger=$(claims vm "$U1" "$U2")"
expect b vm dom=none mdevs= ledger=
marker live2
HV0=$(val b "dmesg | grep -c 'header validated' || true")
on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"virsh migrate A->B failed: \$MERR\""
on a "wait_until 60 'A removed both devices' eval '[ -z \"\$(all_mdevs)\" ]'"
expect a vm dom=none mdevs= ledger=
expect b vm dom=running/migrated "mdevs=$(sorted "$U1" "$U2")" "ledger=$(claims vm "$U1" "$U2")"
on b "assert_mdev $U1 mtty-2; assert_mdev $U2 mtty-1; assert_logs mdev.created $U1 $U2"
on b "n=\$(dmesg | grep -c 'header validated'); [ \$n = $((HV0 + 2)) ] || fail \"B's mtty validated \$((n - $HV0)) device state headers during the migration, expected 2\"; ok 'B received the state of both devices'"
on a "assert_logs mdev.removed $U1 $U2"
events b live2
events a live2
on b "th_destroy vm; wait_until 30 'B removed both' eval '[ -z \"\$(all_mdevs)\" ]'; assert_logs mdev.removed $U1 $U2; assert_ledger_clean $U1 $U2"
expect b vm dom=shut_off/destroyed mdevs= ledger=
