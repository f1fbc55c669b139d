# shellcheck shell=bash
# Scenarios that reboot the guest (sourced by guest/test.sh after lib.sh, and by each phase of such a scenario).
#
# A scenario whose file has a line "# e2e: reboot" is not run in test.sh's loop: after the other scenarios, it
# runs in phases, phase N in the N-th boot after the first one (BOOT_PHASE=0 before any reboot). A phase that
# calls `reboot_after_phase` has the guest reboot once it returns 0 (systemctl reboot: a real, clean reboot; the
# host runs qemu without -no-reboot then, so its -snapshot overlay, i.e. the guest's disk, outlives the reboot);
# the image's e2e-runner starts test.sh again at the next boot, which sees $BOOT_DIR/phase and calls
# boot_resume instead of the setup and the other scenarios. The scenario's result line (results.tsv) counts the
# seconds from its first phase to the end of its last one, reboots included.
BOOT_DIR=/var/lib/e2e   # on the guest's disk: survives the reboots

boot_resuming() { [ -f "$BOOT_DIR/phase" ]; }
reboot_scenario() { grep -q '^# e2e: reboot' "$SHARE/scenarios/$1.sh" 2>/dev/null; }
# called by a phase: reboot once this phase has passed, then run the next phase
reboot_after_phase() { touch "$BOOT_DIR/again"; }
# the host's clock seconds (the guest's RTC comes from qemu: the same clock across reboots)
_boot_secs() { awk -v a="$(cat "$BOOT_DIR/t0")" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# _boot_phase NAME PHASE: run one phase in its own bash, with the scenario timeout; returns its exit code
_boot_phase() {
    local name=$1 phase=$2 rc
    rm -f "$BOOT_DIR/again"
    echo "--- scenario $name, phase $phase (boot $((phase + 1)) of the scenario)"
    timeout -k 10 "$SCENARIO_TIMEOUT" env _T0="$(cat "$BOOT_DIR/t0")" BOOT_PHASE="$phase" bash -c "set -eEu -o pipefail
        trap 'echo \"  FAIL: unexpected failure of: \$BASH_COMMAND (line \$LINENO)\"' ERR
        . '$SHARE/guest/lib.sh'; . '$SHARE/guest/boot.sh'; . '$SHARE/scenarios/$name.sh'" 2>&1 \
        | tee -a "$OUT/scenario-$name.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "  FAIL: phase $phase timed out after ${SCENARIO_TIMEOUT}s" | tee -a "$OUT/scenario-$name.log"
    fi
    return "$rc"
}

# _boot_run: run the pending reboot scenarios ($BOOT_DIR/pending, first line first) from the phase in
# $BOOT_DIR/phase ("NAME N"); reboots (and never returns) when a phase asks for it. Returns when all are done,
# with BOOT_FAILED: how many scenarios failed, those before the reboot scenarios ($BOOT_DIR/failed) included.
_boot_run() {
    local name phase rc secs left failed
    failed=$(cat "$BOOT_DIR/failed")
    while [ -s "$BOOT_DIR/pending" ]; do
        name=$(head -n1 "$BOOT_DIR/pending")
        phase=0
        if [ -f "$BOOT_DIR/phase" ]; then read -r _ phase < "$BOOT_DIR/phase"; fi
        [ "$phase" != 0 ] || now_s > "$BOOT_DIR/t0"
        rc=0
        _boot_phase "$name" "$phase" || rc=$?
        if [ "$rc" = 0 ] && [ -f "$BOOT_DIR/again" ]; then
            echo "$name $((phase + 1))" > "$BOOT_DIR/phase"
            # -b: this boot only (the journal need not be persistent)
            journalctl -b --no-pager -o short-precise > "$OUT/journal-$name-boot$phase.txt" 2>&1
            echo "--- $name: rebooting the guest for phase $((phase + 1)) ($(_boot_secs)s into the scenario)"
            sync
            systemctl reboot || { echo "  FAIL: systemctl reboot failed"; rc=1; }
            # systemd stops this unit (and test.sh with it) on the way down; the host's stall and timeout
            # limits bound a reboot that never comes
            [ "$rc" != 0 ] || sleep infinity
        fi
        secs=$(_boot_secs)
        left=$(all_mdevs | xargs)
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            result "$name" FAIL "$secs" "phase $phase timed out after ${SCENARIO_TIMEOUT}s"
        elif [ "$rc" != 0 ]; then
            result "$name" FAIL "$secs" "phase $phase: $(grep -h 'FAIL:' "$OUT/scenario-$name.log" | head -n1 | sed 's/.*FAIL: //')"
        elif [ -n "$left" ]; then
            rc=1
            result "$name" FAIL "$secs" "left mdevs behind: $left"
        else
            result "$name" PASS "$secs" ""
        fi
        [ "$rc" = 0 ] || failed=$((failed + 1))
        echo "$failed" > "$BOOT_DIR/failed"
        sed -i 1d "$BOOT_DIR/pending"
        rm -f "$BOOT_DIR/phase"
    done
    BOOT_FAILED=$failed
}

# boot_start FAILED: in the first boot, after the other scenarios (FAILED of them failed): run the selected
# reboot scenarios. Returns only when no reboot is left, with BOOT_FAILED (all scenarios included).
boot_start() {
    local name pending=()
    BOOT_FAILED=$1
    while read -r name; do
        if [ -n "$name" ] && reboot_scenario "$name"; then pending+=("$name"); fi
    done < "$SHARE/scenarios.list"
    [ ${#pending[@]} -gt 0 ] || return 0
    echo "$1" > "$BOOT_DIR/failed"
    printf '%s\n' "${pending[@]}" > "$BOOT_DIR/pending"
    _boot_run
}

# boot_resume: a later boot: the rest of the reboot scenarios, then the logs; returns 0 if all scenarios passed.
boot_resume() {
    rm -f "$OUT/rc"
    echo "--- a later boot (up $(cut -d' ' -f1 /proc/uptime)s): resuming $(cat "$BOOT_DIR/phase")"
    _boot_run
    collect_logs
    echo "--- $BOOT_FAILED scenario(s) failed"
    [ "$BOOT_FAILED" = 0 ]
}

# boot_first: called once per boot by test.sh before anything else. Returns 0 in the guest's first boot, 1 in a
# boot that resumes a reboot scenario, and exits 125 in a boot nobody asked for: the guest rebooted by itself
# (a kernel panic reboots the guest when qemu runs without -no-reboot); the scenarios never start again then.
boot_first() {
    boot_resuming && return 1
    if [ -f "$BOOT_DIR/booted-once" ]; then
        echo "--- FAIL: the guest rebooted by itself (no reboot scenario asked for it; a kernel panic?)"
        exit 125
    fi
    mkdir -p "$BOOT_DIR"
    touch "$BOOT_DIR/booted-once"
}
