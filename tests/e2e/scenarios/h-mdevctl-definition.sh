# h. A host that already uses mdevctl: a device defined with the real `mdevctl define` (persistent, start
# manual, not started) and a domain whose managed hostdev has no mdev-hooks metadata. The hook creates the device
# from the definition before qemu starts and removes it at destroy; the definition stays; `mdevctl list` sees
# the device while it runs. mdevctl 0.81 (bullseye, bash + jq), 1.2.0 (bookworm) and 1.4.0 (trixie) write the
# same definition file ({"mdev_type", "start", "attrs"}) and all list a running device by its UUID.
U=$(new_uuid)
mdevctl define -u "$U" -p mtty -t mtty-2 || fail "mdevctl define failed"
[ -f "/etc/mdevctl.d/mtty/$U" ] || fail "mdevctl wrote no /etc/mdevctl.d/mtty/$U"
ok "mdevctl defined $U: $(tr -d '\n ' < "/etc/mdevctl.d/mtty/$U")"
assert_no_mdev "$U"
define_domain vm-h "nometa=$U"
start_ok vm-h
assert_mdev "$U" mtty-2
ok "mdev $U created from the mdevctl definition"
mdevctl list | grep -qF "$U" || fail "mdevctl list does not show $U while vm-h runs: $(mdevctl list | xargs)"
ok "mdevctl list shows it: $(mdevctl list | grep -F "$U" | xargs)"
assert_log mdev.from_mdevctl "$U"
assert_log mdev.created "$U"
destroy_ok vm-h
wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
assert_log mdev.removed "$U"
mdevctl list --defined | grep -qF "$U" || fail "the definition of $U is gone: $(mdevctl list --defined | xargs)"
ok "the definition stays: $(mdevctl list --defined | grep -F "$U" | xargs)"
assert_ledger_clean "$U" "$DOMU"
mdevctl undefine -u "$U" || fail "mdevctl undefine failed"
