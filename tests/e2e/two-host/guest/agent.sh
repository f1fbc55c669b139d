#!/bin/bash
# Guest driver of the two-host tier. tests/e2e/two-host/tier puts it into each guest's 9p share as
# guest/test.sh, so the trixie image's own e2e-runner starts it at boot (no change to the image).
# It sets this guest up as one of two migration hosts (identity and link-local address from the share,
# kernel modules, the project's hook, libvirtd listening on TCP without auth), writes out/setup.rc, then runs
# the job scripts the host drops into queue/ (NAME.sh; each job in the background, so that a migration can run
# while the host looks at the other side): output to done/NAME.out, exit code to done/NAME.rc.
# share/stop ends the loop: logs are copied to out/ and the script exits (e2e-runner then powers off).
set -u
SHARE=/mnt/share
OUT=$SHARE/out
_T0=$(date +%s.%3N)
# shellcheck source=../../guest/lib.sh
. "$SHARE/guest/lib.sh"
# shellcheck source=th.sh
. "$SHARE/th/th.sh"
mkdir -p "$SHARE/queue" "$SHARE/done"

setup() {
    local t me
    echo "--- two-host setup"
    versions | tee "$OUT/versions.txt"
    me=$(cat "$SHARE/hostname")
    hostname "$me" && echo "$me" > /etc/hostname
    cat "$SHARE/hosts" >> /etc/hosts
    t=$(now_s)
    # net.ifnames=0 on the kernel command line: the socket netdev's virtio NIC is eth0
    wait_until 60 "eth0 appears" test -e /sys/class/net/eth0
    ip link set eth0 up || fail "ip link set eth0 up failed"
    ip addr add "$(cat "$SHARE/ip")" dev eth0 || fail "ip addr add $(cat "$SHARE/ip") dev eth0 failed"
    note "eth0: $(ip -br addr show eth0 | xargs) in $(since "$t")s"

    t=$(now_s)
    modprobe -a vfio vfio_iommu_type1 mdev || fail "modprobe vfio vfio_iommu_type1 mdev failed"
    modprobe mtty 2>/dev/null || insmod "/lib/modules/$(uname -r)/extra/mtty.ko" || fail "loading mtty.ko failed"
    [ "$(avail mtty-2)" = 12 ] || fail "unexpected mtty pool: mtty-2 has $(avail mtty-2) instances (expected 12)"
    # mtty's own debug lines of its migration states (kept in dmesg.txt)
    mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
    echo 'module mtty +p' > /sys/kernel/debug/dynamic_debug/control 2>/dev/null || note "no dynamic debug for mtty"
    note "modules loaded in $(since "$t")s"

    # libvirtd on TCP without auth (test only: link-local addresses, nothing routable), its debug log of
    # hooks and migration; under socket activation libvirtd-tcp.socket is what listens (listen_tcp is ignored)
    t=$(now_s)
    cat >> /etc/libvirt/libvirtd.conf <<'EOF'
auth_tcp = "none"
log_filters="1:hook 1:mdev 1:hostdev 1:qemu.qemu_migration 1:qemu.qemu_process 3:util 3:rpc 3:event 3:conf 3:security 3:cgroup"
log_outputs="1:file:/var/log/libvirt/libvirtd.log"
EOF
    # a socket unit does not start while its service runs ("already active, refusing"): stop libvirtd first
    systemctl stop libvirtd.service || fail "systemctl stop libvirtd.service failed"
    systemctl start libvirtd-tcp.socket || fail "systemctl start libvirtd-tcp.socket failed"
    systemctl start libvirtd.service || fail "systemctl start libvirtd.service failed"
    wait_until 300 "libvirtd answers" virsh -q version
    ss -Htln 'sport = :16509' | grep -q . || fail "nothing listens on TCP port 16509 after starting libvirtd-tcp.socket"
    note "libvirtd up, listening on TCP 16509, in $(since "$t")s"

    # The project and its hook, installed the way the one-host trixie guest installs it: the .deb with apt,
    # offline, its postinst reloading the running libvirtd (tests/e2e/guest/lib.sh): after libvirtd is up,
    # as on a real host
    install_mdev_hooks
    write_config
}

collect_logs() {
    journalctl -b --no-pager -o short-precise > "$OUT/journal.txt" 2>&1
    journalctl -b --no-pager -o short-precise -u libvirtd > "$OUT/journal-libvirtd.txt" 2>&1
    dmesg > "$OUT/dmesg.txt" 2>&1
    cp /var/log/libvirt/libvirtd.log "$OUT/libvirtd.log" 2>/dev/null
    mkdir -p "$OUT/qemu"
    cp /var/log/libvirt/qemu/*.log "$OUT/qemu/" 2>/dev/null
    cp "$HOOK_LOG" "$OUT/mdev-hooks.log" 2>/dev/null
    { ls -laR "$STATE_DIR"; grep -r . "$STATE_DIR"; } > "$OUT/state.txt" 2>&1
    true
}

# written whole, then renamed: the host polls this file through 9p and must never read it half-written
if (setup) 2>&1; then
    echo 0 > "$OUT/setup.rc.tmp" && mv "$OUT/setup.rc.tmp" "$OUT/setup.rc"
else
    echo 2 > "$OUT/setup.rc.tmp" && mv "$OUT/setup.rc.tmp" "$OUT/setup.rc"
    echo "=== FAIL setup"
    collect_logs
    exit 2
fi
# every job starts from this environment (lib.sh's and th.sh's functions and settings, sourced once here:
# lib.sh asks libvirtd and dpkg for versions when sourced, seconds per job in a loaded TCG guest)
{
    declare -p SHARE OUT VENV TYPES DEVICES HOOK HOOK_LOG STATE_DIR CONFIG SCRATCH RELEASE KMAJ KMIN \
        LIBVIRT_VERSION MDEVCTL_VERSION ME PEER_IP PEER_URI LIBVIRT_DEFAULT_URI LC_ALL | sed 's/^declare -[a-z]*x /export /; s/^declare -- //'
    declare -f
} > /run/th-env.sh
echo "=== setup done in $(since "$_T0")s; waiting for jobs"
date +%s.%3N > "$OUT/ready"

# the poll loop forks nothing while idle (a glob, not find | sort; read -t on a private pipe, not sleep): in a TCG
# guest every fork costs tens of ms of the host's two cores, five times a second, on both guests
exec {TICK}<> <(:)
while [ ! -e "$SHARE/stop" ]; do
    for p in "$SHARE/queue"/*.sh; do
        [ -e "$p" ] || continue
        f=${p##*/}
        n=${f%.sh}
        mv "$SHARE/queue/$f" "$SHARE/done/$f" || continue
        (
            cd /root || exit 1
            rc=0
            timeout -k 10 "$(cat "$SHARE/done/$n.timeout" 2>/dev/null || echo 600)" \
                bash "$SHARE/done/$f" > "$SHARE/done/$n.out" 2>&1 < /dev/null || rc=$?
            echo "$rc" > "$SHARE/done/$n.rc.tmp"
            mv "$SHARE/done/$n.rc.tmp" "$SHARE/done/$n.rc"
        ) &
    done
    read -r -t 0.2 -u "$TICK" _ || true
done
wait
collect_logs
echo "=== stop requested: logs copied"
exit 0
