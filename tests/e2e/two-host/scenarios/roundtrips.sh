# Back and forth: E2E_TWO_HOST_ROUNDTRIPS (default 10) round trips A -> B -> A of one running domain with one
# hook-managed device; after every hop exactly one device, on the host where the VM runs, owned by it in that
# host's ledger, none on the other; 0 leaked at the end. Prints every hop's time.
N=${E2E_TWO_HOST_ROUNDTRIPS:-10}
U=$(uuid)
on a "th_define vm mtty-2=$U && th_start vm"
src=a dst=b
HOPS=()
for i in $(seq $((2 * N))); do
    t=$(now_s)
    out=$(val "$src" "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"hop $i failed: \$MERR\"; wait_until 60 'source removed $U' eval '! mdev_exists $U' > /dev/null; th_state vm") \
        || fail "hop $i $(host_of $src)->$(host_of $dst): $(printf '%s\n' "$out" | grep -m1 FAIL)"
    secs=$(since "$t")
    msecs=$(printf '%s\n' "$out" | sed -n 's/.*rc=0 secs=//p')
    sline=$(printf '%s\n' "$out" | grep '^STATE ')
    dline=$(val "$dst" "th_state vm" | grep '^STATE ')
    [ "$sline" = "STATE host=$(hostname_of "$src") dom=none mdevs= ledger=" ] || fail "hop $i: source: $sline"
    case "$dline" in
    *" dom=running/migrated mdevs=$U ledger=$U:vm:created") ;;
    *) fail "hop $i: destination: $dline" ;;
    esac
    HOPS+=("$secs")
    note "hop $i $(host_of $src)->$(host_of $dst): virsh migrate ${msecs}s, hop with checks ${secs}s; $(host_of $dst): 1 device $U, owned; $(host_of $src): none"
    tmp=$src src=$dst dst=$tmp
done
[ "$src" = a ] || fail "after $((2 * N)) hops the VM is on $(host_of $src), expected A"
on a "th_destroy vm; wait_until 30 'A removed $U' eval '! mdev_exists $U'"
LEAK=0
for g in a b; do
    n=$(val "$g" 'echo $(( $(all_mdevs | wc -l) + $(ls $STATE_DIR 2>/dev/null | grep -c "\.json$" || true) ))')
    LEAK=$((LEAK + n))
done
note "hop times (s, incl. the checks): ${HOPS[*]}"
note "median hop $(printf '%s\n' "${HOPS[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')s over ${#HOPS[@]} hops ($N round trips)"
note "leaked at the end (mdevs + ledger claims on A and B): $LEAK"
[ "$LEAK" = 0 ] || fail "$LEAK devices/claims leaked after $N round trips"
ok "$N round trips, $((2 * N)) hops, 0 leaked"
