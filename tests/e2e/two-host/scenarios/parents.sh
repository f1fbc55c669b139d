# [parents] renaming on B. mtty's parent is always named "mtty", so the domain names a logical parent,
# "gpu-slot-0", that neither host has under /sys/class/mdev_bus; A's config maps it to its mtty. Without a
# mapping on B, B's migrate begin refuses (parent not found); with B's [parents] "gpu-slot-0" = "mtty" the
# migration goes through and B creates the device on its own parent.
U=$(uuid)
CONF='[parents]
"gpu-slot-0" = "mtty"'
on a "write_config '$CONF' && th_define vm --parent gpu-slot-0 mtty-2=$U && th_start vm"
on a "assert_log mdev.parent_mapped $U; assert_mdev $U mtty-2"
expect a vm dom=running/booted "mdevs=$U" "ledger=$(claims vm "$U")"
marker parents
on a "th_migrate vm; [ \"\$MRC\" != 0 ] || fail 'B accepted a domain naming gpu-slot-0 without a [parents] mapping'; printf '%s\n' \"\$MERR\" | grep -q 'mdev-hooks: .*gpu-slot-0.*not found' || fail \"unexpected error: \$MERR\"; ok 'without a mapping B refuses at migrate begin: parent gpu-slot-0 not found'"
expect b vm dom=none mdevs= ledger=
expect a vm "dom=running/*" "mdevs=$U" "ledger=$(claims vm "$U")"
on b "write_config '$CONF'; ok \"B's config: [parents] gpu-slot-0 = mtty\""
on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"virsh migrate A->B with B's [parents] mapping failed: \$MERR\""
on a "wait_until 60 'A removed $U' eval '! mdev_exists $U'"
expect a vm dom=none mdevs= ledger=
expect b vm dom=running/migrated "mdevs=$U" "ledger=$(claims vm "$U")"
on b "assert_mdev $U mtty-2; assert_log mdev.parent_mapped $U; assert_log mdev.created $U; virsh dumpxml vm | grep -q 'parent=\"gpu-slot-0\"' || fail 'B changed the metadata parent'; ok 'the domain still names gpu-slot-0; B mapped it to mtty'"
events b parents
