# Live migration of a running domain holding one hook-managed mtty mdev, A -> B, then destroy on B.
# B checks at migrate begin and creates the device with the same UUID at prepare; qemu on B opens it and
# receives mtty's state; A's release removes A's device. Ledgers: A empty, B owns it.
U=$(uuid)
live_migration live "mtty-2=$U"
on b "virsh dumpxml --inactive vm | grep -q 'mdev:device uuid=\"$U\"' || fail 'B persistent definition lost our metadata'; ok 'B persistent definition keeps mdev:device $U'"
on a "virsh list --all --name | grep -qx vm && fail 'vm is still defined on A (--undefinesource)' || ok 'vm not defined on A any more'"
on b "th_destroy vm; wait_until 30 'B removed $U' eval '! mdev_exists $U'; assert_log mdev.removed $U; assert_ledger_clean $U"
expect b vm dom=shut_off/destroyed mdevs= ledger=
