#!/bin/bash
# Guest-side driver, run once per boot by the image's e2e-runner from the 9p share:
# set up the kernel modules, the project and its hook (install_mdev_hooks: the .deb with apt on bookworm and
# trixie, the wheel into the /opt/mdev-hooks venv on bullseye) and libvirtd, then run
# every scenario in $SHARE/scenarios.list, each in its own bash with a timeout, and write
# $OUT/results.tsv (name, PASS/FAIL, seconds, reason; a PASS's reason is what the scenario noted it did not
# check on this release, from $OUT/NAME.notes). Exit 0 only if setup and every scenario passed.
set -u
SHARE=/mnt/share
OUT=$SHARE/out
SCENARIO_TIMEOUT=$(cat "$SHARE/scenario-timeout" 2>/dev/null || echo 300)
_T0=$(date +%s.%3N)
# shellcheck source=lib.sh
. "$SHARE/guest/lib.sh"
# e2e-boot: scenarios that reboot the guest (guest/boot.sh); a later boot resumes them below, after collect_logs
# shellcheck source=boot.sh
. "$SHARE/guest/boot.sh"
if boot_first; then : > "$OUT/results.tsv"; fi

result() { # NAME PASS|FAIL SECS REASON
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/results.tsv"
    echo "=== $2 $1 (${3}s)${4:+: $4}"
}

collect_logs() {
    journalctl -b --no-pager -o short-precise > "$OUT/journal.txt" 2>&1
    journalctl -b --no-pager -o short-precise -u libvirtd -u virtlogd > "$OUT/journal-libvirtd.txt" 2>&1
    dmesg > "$OUT/dmesg.txt" 2>&1
    cp /var/log/libvirt/libvirtd.log "$OUT/libvirtd.log" 2>/dev/null
    mkdir -p "$OUT/qemu"
    cp /var/log/libvirt/qemu/*.log "$OUT/qemu/" 2>/dev/null
    cp "$HOOK_LOG" "$OUT/mdev-hooks.log" 2>/dev/null
    { ls -laR "$STATE_DIR" /run/lock/mdev-hooks 2>/dev/null; grep -r . "$STATE_DIR"; } > "$OUT/state.txt" 2>&1
    true
}

# e2e-boot: a later boot of a reboot scenario: no setup (mtty must not be loaded by us), only its next phase
if boot_resuming; then boot_resume; exit $?; fi

# --- setup ---------------------------------------------------------------------------------------
setup() {
    local t
    echo "--- setup"
    versions | tee "$OUT/versions.txt"
    # libvirtd probes qemu's capabilities on its first use (tens of seconds under TCG): start that now,
    # in parallel with the installation below.
    (timeout 300 virsh -q version > "$SCRATCH/probe.out" 2>&1; echo $? > "$SCRATCH/probe.rc") &
    PROBE=$!
    t=$(now_s)
    modprobe -a vfio vfio_iommu_type1 mdev || fail "modprobe vfio vfio_iommu_type1 mdev failed"
    # 5.10: an mdev is bound to vfio by the separate vfio_mdev driver, which nothing loads by itself (no
    # alias); without it qemu cannot open the device. 6.1 and 6.12 have it in the core: no such module.
    if legacy_mdev; then
        modprobe vfio_mdev || fail "modprobe vfio_mdev failed (kernel $(uname -r) needs it)"
        note "kernel $(uname -r): vfio_mdev loaded (a separate module before 5.16)"
    else
        if modinfo vfio_mdev > /dev/null 2>&1; then fail "kernel $(uname -r) has a vfio_mdev module"; fi
        note "kernel $(uname -r): no vfio_mdev module (vfio binding is in the mdev core)"
    fi
    modprobe mtty 2>/dev/null || insmod "/lib/modules/$(uname -r)/extra/mtty.ko" || fail "loading mtty.ko failed"
    [ -d "$TYPES/mtty-2" ] || fail "$TYPES/mtty-2 missing after loading mtty"
    # the same on 5.10 (mtty's own attribute, (24 - used) / ports) and 6.1/6.12 (the core asks mtty)
    [ "$(avail mtty-1)" = 24 ] && [ "$(avail mtty-2)" = 12 ] \
        || fail "unexpected mtty pool: mtty-1 $(avail mtty-1), mtty-2 $(avail mtty-2) (expected 24, 12)"
    note "modules loaded in $(since "$t")s: $(lsmod | awk 'NR>1 && /^(mtty|mdev|vfio)/ {print $1}' | xargs)"

    # install_mdev_hooks (lib.sh) needs libvirtd up: the .deb's postinst must find it running and reload it
    t=$(now_s)
    wait "$PROBE"
    [ "$(cat "$SCRATCH/probe.rc")" = 0 ] || fail "libvirtd does not answer: $(cat "$SCRATCH/probe.out")"
    note "libvirtd answered after $(since "$_T0")s since the start ($(grep -i hypervisor "$SCRATCH/probe.out"))"
    install_mdev_hooks
    write_config
    note "hook $HOOK, first line: $(head -n1 "$HOOK"); mdev-hooks is $(command -v mdev-hooks)"
}

if ! (setup); then
    result setup FAIL "$(since "$_T0")" "setup failed (see above)"
    collect_logs
    exit 2
fi
result setup PASS "$(since "$_T0")" ""

# --- benchmark instead of the scenarios (tests/e2e/run --bench) ----------------------------------
if [ -f "$SHARE/bench" ]; then
    echo "--- bench"
    t=$(now_s)
    rc=0
    timeout -k 10 "$(cat "$SHARE/bench-timeout" 2>/dev/null || echo 1800)" env _T0="$t" bash -c "set -eEu -o pipefail
        trap 'echo \"  FAIL: unexpected failure of: \$BASH_COMMAND (line \$LINENO)\"' ERR
        . '$SHARE/guest/lib.sh'; . '$SHARE/guest/bench.sh'" 2>&1 | tee "$OUT/bench.log"
    rc=${PIPESTATUS[0]}
    if [ $rc = 0 ]; then result bench PASS "$(since "$t")" ""
    else result bench FAIL "$(since "$t")" "$(grep -h 'FAIL:' "$OUT/bench.log" | head -n1 | sed 's/.*FAIL: //')"; fi
    collect_logs
    exit $rc
fi

# --- scenarios -----------------------------------------------------------------------------------
cleanup_after() { # NAME: destroy and undefine every domain; report mdevs a scenario left behind
    local d left
    for d in $(virsh list --all --name); do
        if dom_active "$d"; then timeout 60 virsh destroy "$d" > /dev/null 2>&1; fi
        timeout 30 virsh undefine "$d" > /dev/null 2>&1
    done
    if pgrep -f qemu-system > /dev/null; then
        echo "  cleanup: qemu still running after destroy; killing it"
        pkill -9 -f qemu-system
        sleep 2
    fi
    left=$(all_mdevs | xargs)
    if [ -n "$left" ]; then
        echo "  cleanup: removing mdevs left by $1: $left"
        for d in $left; do timeout 20 sh -c "echo 1 > $DEVICES/$d/remove" || echo "  cleanup: cannot remove $d"; done
    fi
    write_config
    LEFT=$left
}

FAILED=0
while read -r name; do
    [ -n "$name" ] || continue
    if reboot_scenario "$name"; then continue; fi   # e2e-boot: run by boot_start below
    echo "--- scenario $name"
    t=$(now_s)
    rc=0
    # a scenario may ask for more time than the default in a "# e2e-timeout-factor: N" line (i-package: apt)
    factor=$(sed -n 's/^# e2e-timeout-factor: *\([0-9][0-9]*\)$/\1/p' "$SHARE/scenarios/$name.sh" | head -n1)
    limit=$((SCENARIO_TIMEOUT * ${factor:-1}))
    timeout -k 10 "$limit" env _T0="$t" bash -c "set -eEu -o pipefail
        trap 'echo \"  FAIL: unexpected failure of: \$BASH_COMMAND (line \$LINENO)\"' ERR
        . '$SHARE/guest/lib.sh'; . '$SHARE/scenarios/$name.sh'" 2>&1 | tee "$OUT/scenario-$name.log"
    rc=${PIPESTATUS[0]}
    secs=$(since "$t")
    cleanup_after "$name"
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        result "$name" FAIL "$secs" "timed out after ${limit}s"
    elif [ $rc != 0 ]; then
        result "$name" FAIL "$secs" "$(grep -h 'FAIL:' "$OUT/scenario-$name.log" 2>/dev/null | head -n1 | sed 's/.*FAIL: //')"
    elif [ -n "$LEFT" ]; then
        rc=1
        result "$name" FAIL "$secs" "left mdevs behind: $LEFT"
    else
        # a scenario may leave notes (what it did not check here, and why): shown with its PASS
        result "$name" PASS "$secs" "$(cat "$OUT/$name.notes" 2>/dev/null)"
    fi
    [ $rc = 0 ] || FAILED=$((FAILED + 1))
done < "$SHARE/scenarios.list"
# benchmark smoke (issue 23): guest/bench.sh on this already booted guest, when the host asks for it
# ($SHARE/bench-smoke, written by tests/e2e/run for one release, holds the pairs: 1 by default): passes when the figures are produced, whatever
# they are. Before the reboot scenarios, which end this script's first life.
if [ -f "$SHARE/bench-smoke" ]; then
    echo "--- scenario bench-smoke"
    t=$(now_s)
    timeout -k 10 $((400 + 150 * $(cat "$SHARE/bench-smoke"))) env _T0="$t" BENCH_PAIRS="$(cat "$SHARE/bench-smoke")" bash -c "set -eEu -o pipefail
        trap 'echo \"  FAIL: unexpected failure of: \$BASH_COMMAND (line \$LINENO)\"' ERR
        . '$SHARE/guest/lib.sh'; . '$SHARE/guest/bench.sh'" 2>&1 | tee "$OUT/bench-smoke.log"
    rc=${PIPESTATUS[0]}
    cleanup_after bench-smoke
    if [ $rc = 0 ] && grep -q '^  ratio hook / mdevctl: [0-9.]* ' "$OUT/bench.txt" \
        && grep -q '^    managed prepare begin:  [0-9.]* ' "$OUT/bench.txt"; then
        result bench-smoke PASS "$(since "$t")" "figures in bench.txt (not checked)"
    else
        result bench-smoke FAIL "$(since "$t")" "$(grep -h 'FAIL:' "$OUT/bench-smoke.log" | head -n1 | sed 's/.*FAIL: //')"
        FAILED=$((FAILED + 1))
    fi
fi
# e2e-boot: the reboot scenarios last (guest/boot.sh); returns only once no more reboot is needed
boot_start "$FAILED"
FAILED=$BOOT_FAILED

collect_logs
echo "--- $FAILED scenario(s) failed"
[ $FAILED = 0 ]
