# shellcheck shell=bash
# Guest-side helpers of the two-host tier (sourced after tests/e2e/guest/lib.sh by the agent and by every job
# the host runs in a guest). Domains here are tiny (32 MiB, no disk, SeaBIOS only) and carry the qemu
# override qemu 10.0 needs to migrate an mtty device (docs/notes/migration-lab.md §3).

ME=$(cat "$SHARE/hostname" 2>/dev/null || hostname)
PEER_IP=$(cat "$SHARE/peer-ip" 2>/dev/null || true)
PEER_URI=qemu+tcp://$PEER_IP/system

# th_define NAME [--unmanaged] [--parent P | --pool P] TYPE=UUID...: lib.sh's define_domain, tiny (32 MiB) and
# --migratable. Managed (default): managed='yes' and our <mdev:device> metadata (parent P, default mtty);
# --unmanaged: managed='no', no metadata (the device must exist already). Sets DOMU.
th_define() {
    local name=$1 parent=mtty unmanaged=0 spec
    local -a specs=() where=()
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        --unmanaged) unmanaged=1; shift ;;
        --parent) parent=$2; shift 2 ;;
        --pool) where=(--pool "$2"); shift 2 ;;
        *) break ;;
        esac
    done
    for spec in "$@"; do
        if [ $unmanaged = 1 ]; then specs+=("unmanaged=${spec#*=}"); else specs+=("$spec"); fi
    done
    define_domain "$name" --memory 32 --migratable --parent "$parent" "${where[@]}" "${specs[@]}"
    echo "$DOMU" > "$SCRATCH/$name.domu"
}

# th_start NAME [--paused]: must succeed within 300 s
th_start() {
    local t0 rc=0
    t0=$(now_s)
    timeout 300 virsh start "$@" > "$SCRATCH/out" 2> "$SCRATCH/err" || rc=$?
    [ "$rc" = 0 ] || fail "virsh start $* on $ME failed (rc $rc): $(tr '\n' ' ' < "$SCRATCH/err")"
    note "virsh start $* on $ME in $(since "$t0")s"
}

# th_migrate NAME [virsh options]: live-migrate NAME to the peer; sets MRC, MERR (stderr), MSECS; never fails
th_migrate() {
    local name=$1 t0
    shift
    t0=$(now_s)
    MRC=0
    timeout 400 virsh migrate --live --persistent --undefinesource "$@" "$name" "$PEER_URI" \
        --migrateuri "tcp://$PEER_IP" > "$SCRATCH/mout" 2> "$SCRATCH/merr" || MRC=$?
    MSECS=$(since "$t0")
    MERR=$(cat "$SCRATCH/merr")
    echo "migrate $name $ME->peer rc=$MRC secs=$MSECS"
    [ -z "$MERR" ] || printf 'migrate stderr: %s\n' "$MERR"
}

# th_state [NAME]: one line of facts about this host: the domain's state, all mdevs, the ledger's claims
# (file -> domain name, state); the host side parses it.
th_state() {
    local name=${1:-vm} st claims
    st=$(virsh domstate --reason "$name" 2>/dev/null | head -n1 | sed 's/ (\(.*\))$/\/\1/; s/ /_/g' || true)
    # (sed, not python: a python start costs seconds in a loaded TCG guest)
    claims=$(for f in "$STATE_DIR"/*.json; do
        [ -f "$f" ] || continue
        sed -E 's/.*"key": *"([^"]*)".*/\1/' "$f" | tr -d '\n'
        sed -E 's/.*"domain_name": *"([^"]*)".*/:\1/' "$f" | tr -d '\n'
        sed -E 's/.*"state": *"([^"]*)".*/:\1/' "$f"
    done | sort | paste -sd, -)
    echo "STATE host=$ME dom=${st:-none} mdevs=$(all_mdevs | sort | paste -sd, -) ledger=${claims}"
}

# th_marker NAME: remember where the hook's JSON log and libvirtd's log end now (for th_events NAME)
th_marker() {
    wc -l < "$HOOK_LOG" > "$SCRATCH/mark-$1.hook" 2>/dev/null || echo 0 > "$SCRATCH/mark-$1.hook"
    [ -s "$SCRATCH/mark-$1.hook" ] || echo 0 > "$SCRATCH/mark-$1.hook"
    wc -l < /var/log/libvirt/libvirtd.log > "$SCRATCH/mark-$1.lv" 2>/dev/null || echo 0 > "$SCRATCH/mark-$1.lv"
}
# th_events NAME: libvirtd's hook calls and the hook's own JSON events since th_marker NAME, in order
th_events() {
    local h l
    h=$(cat "$SCRATCH/mark-$1.hook" 2>/dev/null || echo 0)
    l=$(cat "$SCRATCH/mark-$1.lv" 2>/dev/null || echo 0)
    { tail -n +"$((l + 1))" /var/log/libvirt/libvirtd.log | grep -F 'Calling hook' \
        | sed -E 's/^[0-9-]+ ([0-9:.]+)\+0000: .*op=([a-z]+) subop=([a-z]+) extra=(.*)$/  libvirt \1 hook \2 \3 \4/'; } || true
    tail -n +"$((h + 1))" "$HOOK_LOG" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    ev = e.pop("event", "?")
    ts = str(e.pop("timestamp", ""))[11:23]
    e.pop("level", None)
    keep = {k: v for k, v in e.items() if k in ("op", "mdev", "mdevs", "type", "parent", "domain_parent", "host_parent", "reason", "error")}
    print("  hook    " + ts + " " + ev + " " + " ".join(f"{k}={v}" for k, v in keep.items()))
'
}

# th_destroy NAME: virsh destroy within 300 s. (lib.sh's destroy_ok allows 60 s, too little here: a destroy
# runs the hook twice, stopped and release, and one hook run took up to 25 s in a loaded nested TCG guest.)
th_destroy() {
    local t0 rc=0
    t0=$(now_s)
    timeout 300 virsh destroy "$1" > /dev/null 2> "$SCRATCH/err" || rc=$?
    note "virsh destroy $1 on $ME: rc=$rc in $(since "$t0")s"
    [ "$rc" = 0 ] || fail "virsh destroy $1 on $ME failed (rc $rc): $(cat "$SCRATCH/err")"
}
