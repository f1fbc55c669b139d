# Destination full: B's mtty-2 pool (12) is taken: one device by another running domain (hog, hook-managed)
# and 11 made by hand (a qemu holding all 12 took minutes to start in a loaded nested TCG guest). virsh migrate
# A -> B fails with exactly the one line B's hook prints at migrate begin (the same line the hook prints when
# run by hand on B with the domain's XML); the VM keeps running on A with its device; nothing is left on B.
U=$(uuid)
H=$(uuid)
HAND=()
for _ in $(seq 11); do HAND+=("$(uuid)"); done
on b "th_define hog mtty-2=$H && th_start hog --paused && for u in ${HAND[*]}; do make_mdev \$u mtty-2; done; [ \"\$(avail mtty-2)\" = 0 ] || fail \"mtty-2 available_instances is \$(avail mtty-2), expected 0\"; ok 'B: mtty-2 pool taken (hog holds 1, 11 made by hand)'"
on a "th_define vm mtty-2=$U && th_start vm"
expect a vm dom=running/booted "mdevs=$U" "ledger=$(claims vm "$U")"
marker full
on a "th_migrate vm; [ \"\$MRC\" != 0 ] || fail 'virsh migrate A->B succeeded although B has no mtty-2 instance left'; printf '%s\n' \"\$MERR\" > /tmp/e2e/full.err"
# the hook's reason: what libvirt appends after "unexpected exit status N: ", alone on its line
REASON=$(val a "sed -n 's/.*unexpected exit status [0-9]*: //p' /tmp/e2e/full.err")
[ -n "$REASON" ] || fail "virsh migrate's error is not a hook failure: $(val a 'cat /tmp/e2e/full.err')"
note "virsh migrate's error: $(val a 'head -n1 /tmp/e2e/full.err')"
note "the hook's line from B: $REASON"
case "$REASON" in "mdev-hooks: "*) ;; *) fail "B's line does not start with 'mdev-hooks: ': $REASON" ;; esac
case "$REASON" in *"$U"*) ;; *) fail "B's line does not name the device $U: $REASON" ;; esac
case "$REASON" in *"migrate begin"*) ;; *) fail "B's line does not say it was checked at migrate begin: $REASON" ;; esac
REST=$(val a "sed -n '/unexpected exit status [0-9]*: /,\$p' /tmp/e2e/full.err | tail -n +2 | grep -v '^[[:space:]]*\$' || true")
[ -z "$REST" ] || fail "B's message is more than one line; after the first: $REST"
# the same check by hand on B, with the XML libvirt gives the destination's migrate begin (A's live XML)
XMLA=$(val a "virsh dumpxml --migratable vm")
printf '%s\n' "$XMLA" > "$TH_WORK/b/share/full-vm.xml"
BYHAND=$(val b "rc=0; \"\$HOOK\" vm migrate begin - < /mnt/share/full-vm.xml > /tmp/e2e/hand.out 2> /tmp/e2e/hand.err || rc=\$?; [ \$rc != 0 ] || fail 'the hook run by hand on B accepted the migration'; [ ! -s /tmp/e2e/hand.out ] || fail 'the hook wrote to stdout at migrate begin'; cat /tmp/e2e/hand.err")
[ "$BYHAND" = "$REASON" ] || fail "virsh's line differs from the hook's own stderr on B: '$BYHAND'"
ok "virsh migrate failed with exactly the hook's one line from B"
expect a vm "dom=running/*" "mdevs=$U" "ledger=$(claims vm "$U")"
expect b vm dom=none "mdevs=$(sorted "$H" "${HAND[@]}")" "ledger=$(claims hog "$H")"
on b "assert_no_mdev $U; assert_no_log mdev.created $U; assert_ledger_clean $U; virsh list --all --name | grep -qx vm && fail 'vm is defined on B' || ok 'nothing of vm on B'"
events b full
events a full
on b "th_destroy hog; wait_until 60 'hog device removed' eval '! mdev_exists $H'; for u in ${HAND[*]}; do remove_mdev \$u; done"
