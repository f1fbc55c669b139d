# Benchmark (issue 13 item 4; not a test: `tests/e2e/run --bench`), run by guest/test.sh after setup:
# `virsh start --paused` + `virsh destroy` of a domain with one mtty-1 mdev made by the hook (prepare) and
# removed by it (release), against the model users have today: the device defined with mdevctl, started with
# `mdevctl start` before `virsh start`, stopped with `mdevctl stop` after `virsh destroy`, with NO hook in
# libvirt's way (the hook is made non-executable for those runs: libvirt checks that at every call).
# Interleaved pairs (the order inside a pair alternates), median of each model, ratio hook / mdevctl.
# Writes $OUT/bench.txt and $OUT/bench.tsv.
PAIRS=${BENCH_PAIRS:-$(cat "$SHARE/bench" 2>/dev/null)}  # BENCH_PAIRS: test.sh's smoke run after the scenarios
[ -n "$PAIRS" ] && [ "$PAIRS" -ge 1 ] 2>/dev/null || PAIRS=10
# $HOOK: lib.sh's, where install_mdev_hooks put it (qemu.d/50-mdev-hooks; it was hooks/qemu before the package)
[ -x "$HOOK" ] || fail "no executable $HOOK"
UH=$(new_uuid)
UC=$(new_uuid)
define_domain bench-hook "mtty-1=$UH"
define_domain bench-mdevctl "unmanaged=$UC"
mdevctl define -u "$UC" -p mtty -t mtty-1 || fail "mdevctl define failed"
hook_calls() { grep -c "Calling hook $HOOK" /var/log/libvirt/libvirtd.log 2>/dev/null || true; }

run_hook() {
    chmod 0755 "$HOOK"
    local t0
    t0=$(now_s)
    virsh start --paused bench-hook > /dev/null || fail "virsh start bench-hook failed"
    virsh destroy bench-hook > /dev/null || fail "virsh destroy bench-hook failed"
    SECS=$(since "$t0")
    if mdev_exists "$UH"; then fail "the hook left $UH behind"; fi
}
run_mdevctl() {
    chmod 0644 "$HOOK"
    local t0 calls
    calls=$(hook_calls)
    t0=$(now_s)
    mdevctl start -u "$UC" > /dev/null || fail "mdevctl start -u $UC failed"
    virsh start --paused bench-mdevctl > /dev/null || fail "virsh start bench-mdevctl failed"
    virsh destroy bench-mdevctl > /dev/null || fail "virsh destroy bench-mdevctl failed"
    mdevctl stop -u "$UC" > /dev/null || fail "mdevctl stop -u $UC failed"
    SECS=$(since "$t0")
    chmod 0755 "$HOOK"
    [ "$(hook_calls)" = "$calls" ] || note "warning: libvirt called the hook although it was not executable"
}
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.3f", b - a }'; }

note "bench: warm-up (one of each, not counted)"
run_hook
run_mdevctl
: > "$OUT/bench.tsv"
for i in $(seq "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then order="hook mdevctl"; else order="mdevctl hook"; fi
    for m in $order; do
        "run_$m"
        printf '%s\t%s\t%s\n' "$i" "$m" "$SECS" >> "$OUT/bench.tsv"
        note "pair $i: $m ${SECS}s"
    done
done
chmod 0755 "$HOOK"
mdevctl undefine -u "$UC"
median() { awk -F'\t' -v m="$1" '$2 == m { print $3 }' "$OUT/bench.tsv" | sort -n \
    | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
MH=$(median hook)
MC=$(median mdevctl)
RATIO=$(awk -v a="$MH" -v b="$MC" 'BEGIN { printf "%.3f", a / b }')
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r <= 1.10 ? "within" : "OVER") }')
{
    echo "bench ($RELEASE, $(versions | sed 's/^versions: //')):"
    echo "  $PAIRS interleaved pairs of virsh start --paused + virsh destroy, one mtty-1 mdev"
    echo "  hook-managed (create in prepare, remove in release):   median ${MH}s"
    echo "  mdevctl start/stop around it, no hook:                 median ${MC}s"
    echo "  ratio hook / mdevctl: $RATIO ($VERDICT the 1.10 target)"
} | tee "$OUT/bench.txt"

# --- where the hook's time goes, per run (issue 23): the installed file called directly, as libvirt calls it ---
# medians of BREAK_REPS runs (bash's EPOCHREALTIME, no fork in the timed window): the sh front answering an
# operation outside the active set; the interpreter with the front's flags; + lxml/structlog/filelock (the floor);
# + the hook's own modules; a managed prepare and a release of bench-hook's device (its XML from virsh dumpxml).
BREAK_REPS=$((PAIRS < 3 ? 3 : PAIRS))
PY=$(sed -n 's/^python=//p' "$HOOK")
FLAGS=$(sed -n 's/^exec "$python" \(.*\) "$0" "$@"$/\1/p' "$HOOK")
PATHS=$(sed -n 's/^PATHS = //p' "$HOOK")
[ -x "$PY" ] && [ -n "$FLAGS" ] && [ -n "$PATHS" ] || fail "cannot read python=, its flags or PATHS from $HOOK"
LIBS="import lxml.etree, structlog, filelock"
OURS="import mdev_hooks.hook, mdev_hooks.config, mdev_hooks.log, mdev_hooks.domain, mdev_hooks.mdevctl"
OURS+=", mdev_hooks.core.plan, mdev_hooks.core.prepare, mdev_hooks.core.release"
virsh dumpxml bench-hook > "$SCRATCH/bench-hook.xml"
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }
med() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
time_of() { # CMD...: median wall ms of BREAK_REPS runs, stdin the domain's XML
    local i t0 t1
    for i in $(seq "$BREAK_REPS"); do
        t0=$EPOCHREALTIME
        "$@" < "$SCRATCH/bench-hook.xml" > /dev/null 2>&1 || true
        t1=$EPOCHREALTIME
        ms "$t0" "$t1"
    done | med
}
# shellcheck disable=SC2086  # FLAGS: the front's interpreter flags, one word each
{
    T_FRONT=$(time_of "$HOOK" bench-hook started begin -)
    T_START=$(time_of "$PY" $FLAGS -c pass)
    T_LIBS=$(time_of "$PY" $FLAGS -c "import sys; sys.path += $PATHS; $LIBS")
    T_OURS=$(time_of "$PY" $FLAGS -c "import sys; sys.path += $PATHS; $LIBS; $OURS")
    : > "$SCRATCH/direct.tsv"
    for i in $(seq "$BREAK_REPS"); do
        for op in "prepare begin" "release end"; do
            t0=$EPOCHREALTIME
            # shellcheck disable=SC2086  # op: two words, the operation and its sub-operation
            "$HOOK" bench-hook $op - < "$SCRATCH/bench-hook.xml" || fail "the hook's $op of bench-hook failed"
            t1=$EPOCHREALTIME
            printf '%s\t%s\n' "${op%% *}" "$(ms "$t0" "$t1")" >> "$SCRATCH/direct.tsv"
        done
    done
    if mdev_exists "$UH"; then fail "the direct release left $UH behind"; fi
    T_PREP=$(awk -F'\t' '$1 == "prepare" { print $2 }' "$SCRATCH/direct.tsv" | med)
    T_REL=$(awk -F'\t' '$1 == "release" { print $2 }' "$SCRATCH/direct.tsv" | med)
    sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
    echo "  per hook run, called directly (median of $BREAK_REPS, ms): $HOOK, python $PY $FLAGS"
    echo "    sh front, operation outside the active set (started begin):  $T_FRONT"
    echo "    interpreter start ($PY $FLAGS -c pass):  $T_START"
    echo "    + lxml.etree, structlog, filelock (the import floor):  $T_LIBS (imports $(sub "$T_LIBS" "$T_START"))"
    echo "    + mdev_hooks' own modules:  $T_OURS (imports $(sub "$T_OURS" "$T_LIBS"))"
    echo "    managed prepare begin:  $T_PREP (work beyond all imports $(sub "$T_PREP" "$T_OURS"))"
    echo "    release end:  $T_REL (work beyond all imports $(sub "$T_REL" "$T_OURS"))"
    echo "  the biggest imports (-X importtime, one run, cumulative us, >= 2 ms):"
    "$PY" $FLAGS -X importtime -c "import sys; sys.path += $PATHS; $LIBS; $OURS" 2>&1 \
        | awk -F'|' '$3 ~ /^ [^ ]/ && $2 + 0 >= 2000 { gsub(/ /, "", $3); printf "    %-28s %8d\n", $3, $2 }'
} | tee -a "$OUT/bench.txt"
