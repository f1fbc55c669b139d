#!/bin/bash
# Guest side of `bash scripts/demo --real` (scripts/demo-real puts it into the 9p share as guest/test.sh, so the
# trixie image's own e2e-runner starts it at boot and powers the guest off when it returns). In a real kernel with
# the mtty sample: install the project's .deb with apt, define a domain with one managed mtty mdev, `virsh start` it,
# show that it runs and that qemu holds the device, `mdev-hooks status`, `virsh destroy` it, show the device gone.
# Every step says what it does ("==> ..."), its name goes to out/step; a failure prints "FAIL: ..." and exits 1.
# out/demo.env: the facts the host's timeline needs (scripts/demo_timeline.py); out/: libvirtd's and the hook's logs.
set -u
SHARE=/mnt/share
OUT=$SHARE/out
_T0=$(date +%s.%3N)
# shellcheck source=lib.sh
. "$SHARE/guest/lib.sh"

NAME=demo-mtty
TYPE=mtty-2
U=$(new_uuid)
ENV_FILE=$OUT/demo.env
: > "$ENV_FILE"
fact() { printf '%s=%s\n' "$1" "$2" >> "$ENV_FILE"; }
step() { # NAME: the step now running (the host names it if the demo fails)
    echo "$1" > "$OUT/step"
    printf '\033[1m==> %s\033[0m\n' "$1"
}
show() { sed 's/^/    /'; }
# timed_virsh OP BEFORE AFTER: `virsh OP $NAME` within 300 s, its output shown; notes the times BEFORE and AFTER it
# and OP_rc; fails unless it succeeded
timed_virsh() {
    local op=$1 rc=0
    fact "$2" "$(now_s)"
    timeout 300 virsh "$op" "$NAME" > "$SCRATCH/$op.out" 2>&1 || rc=$?
    fact "$3" "$(now_s)"
    fact "${op}_rc" "$rc"
    show < "$SCRATCH/$op.out"
    [ "$rc" = 0 ] || fail "virsh $op $NAME failed (rc $rc; see libvirtd.log, mdev-hooks.log)"
}

collect_logs() {
    cp /var/log/libvirt/libvirtd.log "$OUT/libvirtd.log" 2>/dev/null
    cp "$HOOK_LOG" "$OUT/mdev-hooks.log" 2>/dev/null
    mkdir -p "$OUT/qemu"
    cp /var/log/libvirt/qemu/*.log "$OUT/qemu/" 2>/dev/null
    journalctl -b --no-pager -o short-precise > "$OUT/journal.txt" 2>&1
    true
}
HOLDER=""
finish() {
    local rc=$?
    [ -z "$HOLDER" ] || kill "$HOLDER" 2>/dev/null
    # a domain left running (a failed step) is destroyed before the guest powers off: its device goes with it
    if virsh dominfo "$NAME" > /dev/null 2>&1; then
        timeout 120 virsh destroy "$NAME" > /dev/null 2>&1
        timeout 30 virsh undefine "$NAME" > /dev/null 2>&1
    fi
    collect_logs
    exit "$rc"
}
trap finish EXIT

step "load vfio, mdev and the mtty sample driver (kernel $(uname -r))"
versions | show
# libvirtd probes qemu's capabilities on its first use (tens of seconds under TCG): start that now
(timeout 300 virsh -q version > "$SCRATCH/probe.out" 2>&1; echo $? > "$SCRATCH/probe.rc") &
PROBE=$!
modprobe -a vfio vfio_iommu_type1 mdev || fail "modprobe vfio vfio_iommu_type1 mdev failed"
modprobe mtty 2>/dev/null || insmod "/lib/modules/$(uname -r)/extra/mtty.ko" || fail "loading mtty.ko failed"
[ -d "$TYPES/$TYPE" ] || fail "no $TYPES/$TYPE after loading mtty"
echo "parent mtty: $(for t in "$TYPES"/*; do printf '%s (%s free) ' "${t##*/}" "$(cat "$t/available_instances")"; done)" | show

step "wait for libvirtd (its first answer probes qemu: slow under TCG)"
wait "$PROBE"
[ "$(cat "$SCRATCH/probe.rc")" = 0 ] || fail "libvirtd does not answer: $(cat "$SCRATCH/probe.out")"
grep -i -E 'hypervisor|library' "$SCRATCH/probe.out" | show
# a client connection keeps libvirtd's idle --timeout from stopping it between the steps
virsh event --all --loop > /dev/null 2>&1 &
HOLDER=$!

DEB=$(ls "$SHARE"/deb/mdev-hooks_*_all.deb 2>/dev/null | head -n1)
[ -n "$DEB" ] || fail "no mdev-hooks_*_all.deb in the share"
cp "$DEB" /tmp/
step "apt-get install ./$(basename "$DEB") (offline: apt resolves python3-lxml/-filelock/-structlog from the image)"
t=$(now_s)
DEBIAN_FRONTEND=noninteractive apt-get install -y "/tmp/$(basename "$DEB")" > "$OUT/apt-install.log" 2>&1 \
    || { tail -n 20 "$OUT/apt-install.log" | show; fail "apt-get install $(basename "$DEB") failed (log: apt-install.log)"; }
grep -E '^(Setting up |mdev-hooks: )' "$OUT/apt-install.log" | show
command -v mdev-hooks > /dev/null || fail "no mdev-hooks on PATH after apt-get install"
echo "$(mdev-hooks --version) installed in $(since "$t")s" | show
wait_until 60 "libvirtd answers after the package's reload" virsh -q version > /dev/null

step "virsh define $NAME: one managed mtty mdev, $U (type $TYPE on parent mtty)"
define_domain "$NAME" "$TYPE=$U"
grep -E 'mdev:device|<hostdev' "$SCRATCH/$NAME.xml" | sed 's/<alias[^>]*>//' | show
fact name "$NAME"
fact uuid "$U"
fact parent mtty
fact type "$TYPE"
BEFORE=$(avail "$TYPE")
fact avail_before "$BEFORE"
assert_no_mdev "$U"
echo "before the start: no mdev $U; $TYPE has $BEFORE instances free" | show

step "virsh start $NAME"
timed_virsh start t_start t_started

step "the domain runs and qemu holds the device"
STATE=$(dom_state "$NAME")
echo "virsh domstate $NAME: $STATE" | show
fact domstate "$STATE"
[ "$STATE" = running ] || fail "$NAME is '$STATE' after virsh start, expected running"
PID=$(qemu_pid "$NAME")
fact qemu_pid "$PID"
ARG=$(tr '\0' '\n' < "/proc/$PID/cmdline" | grep -F "/sys/bus/mdev/devices/$U" | head -n1)
[ -n "$ARG" ] || fail "qemu (pid $PID)'s command line does not name /sys/bus/mdev/devices/$U"
echo "qemu pid $PID: -device $ARG" | show
SYSFSDEV=$(printf '%s' "$ARG" | grep -o -E 'sysfsdev[=":]+/sys/bus/mdev/devices/[0-9a-f-]+' | tr -d '":' | sed 's/^sysfsdev=*/sysfsdev=/')
fact sysfsdev "$SYSFSDEV"
echo "$SYSFSDEV" | show
assert_mdev "$U" "$TYPE"
DURING=$(avail "$TYPE")
fact avail_during "$DURING"
echo "mdev $U: type $(mdev_type "$U") on parent $(mdev_parent "$U"), iommu group" \
    "$(basename "$(readlink "$DEVICES/$U/iommu_group")"); $TYPE has $DURING instances free" | show
fact t_checked "$(now_s)"

step "mdev-hooks status"
mdev-hooks status > "$SCRATCH/status.out" 2>&1 || fail "mdev-hooks status failed: $(cat "$SCRATCH/status.out")"
show < "$SCRATCH/status.out"
OWNER=$(grep -iF "$U" "$SCRATCH/status.out" | head -n1)
grep -iF "$U" "$SCRATCH/status.out" | grep -qF "$NAME" \
    || fail "mdev-hooks status does not show $U owned by $NAME"
fact status_line "$(printf '%s' "$OWNER" | tr -s ' ' | sed 's/^ //')"

step "virsh destroy $NAME"
timed_virsh destroy t_destroy t_destroyed

step "the device is gone"
echo "virsh domstate $NAME: $(dom_state "$NAME")" | show
# the release hook runs as libvirtd finishes the destroy; allow it a moment under TCG
wait_until 60 "mdev $U removed" eval '! mdev_exists '"$U"
AFTER=$(avail "$TYPE")
fact avail_after "$AFTER"
fact gone "$(mdev_exists "$U" && echo no || echo yes)"
echo "ls $DEVICES: $(all_mdevs | xargs)"  | sed 's/: $/: (empty)/' | show
echo "$TYPE has $AFTER instances free again (before the start: $BEFORE)" | show
[ "$AFTER" = "$BEFORE" ] || fail "$TYPE has $AFTER instances free after the destroy, $BEFORE before the start"
virsh undefine "$NAME" > /dev/null || fail "virsh undefine $NAME failed"

step "power off the guest"
exit 0
