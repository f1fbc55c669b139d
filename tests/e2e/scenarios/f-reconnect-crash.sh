# f. libvirtd restarts while a domain runs (reconnect hook): nothing changes. Then qemu is killed -9:
# libvirt runs stopped + release, and the hook removes the device.
U=$(new_uuid)
define_domain vm-f "mtty-2=$U"
start_ok vm-f
PID=$(qemu_pid vm-f)
T=$(now_s)
systemctl restart libvirtd
wait_until 60 "libvirtd answers after restart" virsh -q version
note "libvirtd restarted in $(since "$T")s"
wait_until 30 "vm-f reconnected" dom_active vm-f
[ "$(dom_state vm-f)" = paused ] || fail "vm-f is '$(dom_state vm-f)' after the restart, expected paused"
[ "$(qemu_pid vm-f)" = "$PID" ] || fail "vm-f's qemu pid changed"
kill -0 "$PID" || fail "vm-f's qemu died"
assert_mdev "$U" mtty-2
ok "vm-f still paused with pid $PID and $U after the daemon restart"
ledger_mentions "$U" || fail "the ledger lost $U over the daemon restart"
kill -9 "$PID"
note "killed qemu pid $PID"
wait_until 30 "vm-f shut off" dom_inactive vm-f
note "vm-f: $(virsh domstate --reason vm-f | head -n1)"
wait_until 30 "mdev $U removed after the crash" eval '! mdev_exists '"$U"
assert_log mdev.removed "$U"
assert_ledger_clean "$U" "$DOMU"
