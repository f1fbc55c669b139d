# virsh save / virsh restore on one host (A): save removes the device (release end saved); restore runs the
# hook's restore begin check, re-creates the device at prepare, and qemu loads mtty's state from the file.
U=$(uuid)
on a "th_define vm mtty-2=$U && th_start vm"
marker save
on a "t=\$(now_s); timeout 200 virsh save vm /var/tmp/vm.save > /dev/null 2> /tmp/e2e/err || fail \"virsh save failed: \$(cat /tmp/e2e/err)\"; note \"virsh save in \$(since \$t)s\"; wait_until 60 'A removed $U' eval '! mdev_exists $U'"
expect a vm dom=shut_off/saved mdevs= ledger=
on a "assert_log mdev.removed $U"
on a "t=\$(now_s); timeout 300 virsh restore /var/tmp/vm.save > /dev/null 2> /tmp/e2e/err || fail \"virsh restore failed: \$(cat /tmp/e2e/err)\"; note \"virsh restore in \$(since \$t)s\""
expect a vm dom=running/restored "mdevs=$U" "ledger=$(claims vm "$U")"
on a "[ \$(grep -F '\"mdev.created\"' \$HOOK_LOG | grep -c $U) = 2 ] || fail 'expected two mdev.created events for $U (start, restore)'; ok 'the device was created again at restore'"
# (the events into a variable first: grep -q stopping at its first match broke th_events' pipe, a false FAIL)
on a "ev=\$(th_events save); printf '%s\n' \"\$ev\" | grep -q 'hook restore begin' || fail 'libvirt did not call the hook with restore begin'; printf '%s\n' \"\$ev\" | grep -A1 'hook restore begin' | grep -q 'hook prepare begin' || fail 'restore begin was not followed by prepare begin'; ok 'restore begin, then prepare begin'"
on a "dmesg | grep 'resume_write' | tail -n 2 | grep -q 'received' || fail 'mtty received no state at restore'; ok 'mtty loaded the saved state'"
events a save
on a "th_destroy vm; wait_until 30 'A removed $U' eval '! mdev_exists $U'; assert_ledger_clean $U"
