# Parent pools across hosts (issue 21): the domain's metadata names pool="gpu", not a parent. Each host defines
# gpu in its own config, with members of its own (A lists one that is not registered there first), and neither
# has a [parents] entry. Without a gpu pool B refuses at migrate begin, naming the pool; with one, B's migrate
# begin places the device in B's gpu, B's prepare creates it on B's member (the ledger records member and pool),
# and A's release removes A's device from the member A's ledger recorded. Both ledgers are clean at the end.
U=$(uuid)
CONF_A='[pools]
gpu = ["0000:af:00.0", "mtty"]'
CONF_B='[pools]
gpu = ["mtty"]'
on a "write_config '$CONF_A' && th_define vm --pool gpu mtty-2=$U && th_start vm"
on a "assert_log pool.placed $U; assert_mdev $U mtty-2; grep -q '\"pool\": \"gpu\"' \"\$STATE_DIR/$U.json\" || fail 'A ledger: no pool gpu'; grep -q '\"parent\": \"mtty\"' \"\$STATE_DIR/$U.json\" || fail 'A ledger: member not mtty'; ok 'A placed $U on member mtty of pool gpu (0000:af:00.0 passed over: not registered)'"
expect a vm dom=running/booted "mdevs=$U" "ledger=$(claims vm "$U")"
marker pool
on a "th_migrate vm; [ \"\$MRC\" != 0 ] || fail 'B accepted a pool domain without a gpu pool'; printf '%s\n' \"\$MERR\" | grep -q 'mdev-hooks: mdev $U: pool gpu is not in \[pools\]' || fail \"unexpected error: \$MERR\"; ok 'without a gpu pool B refuses at migrate begin, naming the pool'"
expect b vm dom=none mdevs= ledger=
expect a vm "dom=running/*" "mdevs=$U" "ledger=$(claims vm "$U")"
on b "write_config '$CONF_B'; ok \"B's config: [pools] gpu = [mtty], no [parents]\""
on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"virsh migrate A->B into B's gpu pool failed: \$MERR\""
on a "wait_until 60 'A removed $U' eval '! mdev_exists $U'"
expect a vm dom=none mdevs= ledger=
expect b vm dom=running/migrated "mdevs=$U" "ledger=$(claims vm "$U")"
on b "assert_mdev $U mtty-2; assert_log pool.placed $U; assert_log mdev.created $U; grep -q '\"pool\": \"gpu\"' \"\$STATE_DIR/$U.json\" || fail 'B ledger: no pool gpu'; virsh dumpxml vm | grep -q 'pool=\"gpu\"' || fail 'B changed the metadata'; ok 'B placed $U in its own gpu pool; the domain still names pool gpu'"
on a "assert_log mdev.removed $U; assert_ledger_clean $U"
on b "th_destroy vm; wait_until 30 'B removed $U' eval '! mdev_exists $U'; assert_log mdev.removed $U; assert_ledger_clean $U"
expect b vm dom=shut_off/destroyed mdevs= ledger=
events b pool
events a pool
