# Benchmark (not a test; tests/e2e/run --two-host-bench): the hook's share of a live migration. Two running
# domains of the same shape (one mtty-2 device, 32 MiB, the same qemu override): "vmh" with a hook-managed
# device (managed='yes' + our metadata: B creates it at prepare, A removes it at release) and "vmp" with a
# device pre-created by hand on both hosts with the same UUID (managed='no', no metadata: the hook does
# nothing). They hop between A and B interleaved (the order alternates per pair), E2E_TWO_HOST_BENCH_PAIRS
# (default 5) hops each; the time of `virsh migrate` is measured in the source guest.
P=${E2E_TWO_HOST_BENCH_PAIRS:-5}
UH=$(uuid)
UP=$(uuid)
on b "make_mdev $UP mtty-2 && assert_mdev $UP mtty-2"
on a "make_mdev $UP mtty-2 && th_define vmp --unmanaged mtty-2=$UP && th_start vmp && th_define vmh mtty-2=$UH && th_start vmh"
src=a dst=b
HOOK=() PRE=()
hop() { # DOMAIN: migrate it src -> dst, print the seconds of virsh migrate
    local out
    out=$(val "$src" "th_migrate $1; [ \"\$MRC\" = 0 ] || fail \"migrating $1 failed: \$MERR\"") || fail "bench: $1 $(host_of $src)->$(host_of $dst): $out"
    printf '%s\n' "$out" | sed -n 's/.*rc=0 secs=//p'
}
for i in $(seq "$P"); do
    if [ $((i % 2)) = 1 ]; then
        h=$(hop vmh); p=$(hop vmp)
    else
        p=$(hop vmp); h=$(hop vmh)
    fi
    HOOK+=("$h") PRE+=("$p")
    note "pair $i $(host_of $src)->$(host_of $dst): hook-managed ${h}s, pre-created ${p}s"
    tmp=$src src=$dst dst=$tmp
done
expect "$src" vmh dom=running/migrated "mdevs=$(sorted "$UH" "$UP")" "ledger=$(claims vmh "$UH")"
expect "$dst" vmh dom=none "mdevs=$UP" ledger=
MH=$(median "${HOOK[@]}")
MP=$(median "${PRE[@]}")
echo "BENCH two-host live migration, virsh migrate wall time in the source guest, $P interleaved pairs"
echo "BENCH hook-managed device (created on the destination at prepare, removed on the source at release): ${HOOK[*]} s; median ${MH}s"
echo "BENCH pre-created on both hosts (managed='no', no hook work):                                  ${PRE[*]} s; median ${MP}s"
echo "BENCH ratio of the medians hook/pre-created: $(awk -v a="$MH" -v b="$MP" 'BEGIN { printf "%.2f", a / b }'); difference $(awk -v a="$MH" -v b="$MP" 'BEGIN { printf "%.2f", a - b }')s"
on "$src" "th_destroy vmh; th_destroy vmp; wait_until 30 'hook removed $UH' eval '! mdev_exists $UH'; remove_mdev $UP"
on "$dst" "remove_mdev $UP"
