# Benchmark (issue 13 item 4; not a test: `tests/e2e/run --bench`), run by guest/test.sh after setup:
# `virsh start --paused` + `virsh destroy` of a domain with one mtty-1 mdev made by the hook (prepare) and
# removed by it (release), against the model users have today: the device defined with mdevctl, started with
# `mdevctl start` before `virsh start`, stopped with `mdevctl stop` after `virsh destroy`, with NO hook in
# libvirt's way (the hook is made non-executable for those runs: libvirt checks that at every call).
# Interleaved pairs (the order inside a pair alternates), median of each model, ratio hook / mdevctl.
# Writes $OUT/bench.txt and $OUT/bench.tsv.
PAIRS=$(cat "$SHARE/bench" 2>/dev/null)
[ -n "$PAIRS" ] && [ "$PAIRS" -ge 1 ] 2>/dev/null || PAIRS=10
HOOK=/etc/libvirt/hooks/qemu
[ -x "$HOOK" ] || fail "no executable $HOOK"
UH=$(new_uuid)
UC=$(new_uuid)
define_domain bench-hook "mtty-1=$UH"
define_domain bench-mdevctl "unmanaged=$UC"
mdevctl define -u "$UC" -p mtty -t mtty-1 || fail "mdevctl define failed"
hook_calls() { grep -c 'Calling hook /etc/libvirt/hooks/qemu' /var/log/libvirt/libvirtd.log 2>/dev/null || true; }

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
