# g. dry_run = true: the hook validates and logs would_create but creates nothing, so libvirt itself
# refuses the start because the mdev does not exist. The wording is the same in libvirt 7.0 (bullseye), 9.0
# (bookworm) and 11.3 (trixie): "device not found: mediated device '<uuid>' not found".
write_config "dry_run = true"
U=$(new_uuid)
define_domain vm-g "mtty-2=$U"
vstart vm-g --paused
[ "$VRC" != 0 ] || fail "vm-g started in dry-run mode"
printf '%s\n' "$VERR" | grep -qF "mediated device '$U' not found" \
    || fail "expected libvirt's \"mediated device '$U' not found\", got: $VERR"
ok "libvirt refused: mediated device '$U' not found"
assert_no_mdevs_at_all
assert_log mdev.would_create "$U"
assert_no_log mdev.created "$U"
assert_ledger_clean "$U" "$DOMU"
write_config
