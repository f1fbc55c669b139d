# run on the source: live-migrate domain $NAME (default vm) to the other guest and time it.
# env: DEST (default: the other of 169.254.0.1/2), P2P=1 (--p2p), EXTRA (more virsh migrate options),
#      MIGURI=0 (omit --migrateuri)
NAME=${NAME:-vm}
me=$(ip -4 -o addr show eth0 | grep -o '169\.254\.0\.[0-9]*' | head -1)
if [ "$me" = 169.254.0.1 ]; then DEST=${DEST:-169.254.0.2}; else DEST=${DEST:-169.254.0.1}; fi
args=(migrate --live --persistent --undefinesource --verbose)
[ "${P2P:-0}" = 1 ] && args+=(--p2p)
args+=("$NAME" "qemu+tcp://$DEST/system")
[ "${MIGURI:-1}" = 1 ] && args+=(--migrateuri "tcp://$DEST")
# shellcheck disable=SC2206
args+=(${EXTRA:-})
echo "== $(hostname) $(date +%T.%N): virsh ${args[*]}"
t0=$(date +%s.%N)
virsh "${args[@]}"; rc=$?
t1=$(date +%s.%N)
echo "== rc=$rc time=$(awk -v a=$t0 -v b=$t1 "BEGIN{printf \"%.2f\", b-a}")s at $(date +%T.%N)"
echo "-- local (source) list:"; virsh list --all
echo "-- destination list:"; virsh -c "qemu+tcp://$DEST/system" list --all
virsh -c "qemu+tcp://$DEST/system" domstate --reason "$NAME" 2>&1
exit $rc
