# Live migration of a running domain holding two hook-managed mtty devices (mtty-2 and mtty-1), A -> B:
# both created on B with the same UUIDs, both removed from A; destroy on B removes both.
U1=$(uuid)
U2=$(uuid)
live_migration live2 "mtty-2=$U1" "mtty-1=$U2"
on b "th_destroy vm; wait_until 30 'B removed both' eval '[ -z \"\$(all_mdevs)\" ]'; assert_logs mdev.removed $U1 $U2; assert_ledger_clean $U1 $U2"
expect b vm dom=shut_off/destroyed mdevs= ledger=
