# shellcheck shell=bash
# Host-side helpers of the two-host tier: sourced by tests/e2e/two-host/tier and by each scenario (which runs in
# its own bash on the host and drives guests a and b through their agents, tests/e2e/two-host/guest/agent.sh).
# Needs TH_WORK (the tier's work dir: TH_WORK/a/share, TH_WORK/b/share).

now_s() { date +%s.%3N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
_T0=${_T0:-$(now_s)}
note() { printf '  [%6ss] %s\n' "$(since "$_T0")" "$*"; }
ok() { note "ok: $*"; }
fail() {
    printf '  [%6ss] FAIL: %s\n' "$(since "$_T0")" "$*"
    exit 1
}
host_of() { case $1 in a) echo A ;; b) echo B ;; *) echo "$1" ;; esac; }

# The preamble of every job: the one-host tier's guest helpers and the two-host ones (/run/th-env.sh, which
# agent.sh writes from tests/e2e/guest/lib.sh and guest/th.sh); strict mode, and a FAIL line for an
# unexpected failure.
_JOB_HEAD='set -eEu -o pipefail
_T0=$(date +%s.%3N)
. /run/th-env.sh
trap '\''echo "  FAIL: unexpected failure on $ME of: $BASH_COMMAND (line $LINENO)"'\'' ERR
'
_JOB_N=0
# gx_bg G [-t SECS] SCRIPT: queue SCRIPT in guest G (a|b); prints the job's name. SECS: the guest kills it then.
gx_bg() {
    local g=$1 t=600 s n
    shift
    if [ "$1" = -t ]; then t=$2; shift 2; fi
    s=$TH_WORK/$g/share
    _JOB_N=$((_JOB_N + 1))
    n=$(date +%H%M%S%N)-$BASHPID-$_JOB_N
    echo "$t" > "$s/done/$n.timeout"
    printf '%s\n%s\n' "$_JOB_HEAD" "$*" > "$s/queue/.$n.tmp"
    mv "$s/queue/.$n.tmp" "$s/queue/$n.sh"
    echo "$n"
}
# guest_alive G: G's qemu, as the tier started it (qemu removes its own pidfile when it exits), still runs
guest_alive() {
    local p
    p=$(cat "$TH_WORK/$1/qemu.started" 2>/dev/null) || return 0  # not started yet
    kill -0 "$p" 2>/dev/null
}
# guest_last_words G: the console's first panic/oops line, else its last line
guest_last_words() {
    local c=$TH_WORK/$1/console.log l
    l=$(grep -m1 -E 'Kernel panic|Oops|BUG:' "$c" 2>/dev/null) || l=$(tail -n 1 "$c" 2>/dev/null) || true
    printf '%s' "$l" | tr -d '\r'
}
# gx_wait G NAME [SECS]: wait for the job, print its output, return its exit code (124: no result in time)
gx_wait() {
    local g=$1 n=$2 t=${3:-700} s t0
    s=$TH_WORK/$g/share
    t0=$(now_s)
    while [ ! -e "$s/done/$n.rc" ]; do
        if awk -v a="$t0" -v b="$(now_s)" -v l="$t" 'BEGIN { exit !(b - a > l) }'; then
            echo "  FAIL: job $n on $(host_of "$g") gave no result within ${t}s"
            return 124
        fi
        # a guest that died (kernel panic, emulator crash) answers nothing: say so now, with its last words
        if ! guest_alive "$g"; then
            echo "  FAIL: guest $(host_of "$g") is gone (its qemu exited) while running job $n; console: $(guest_last_words "$g")"
            return 125
        fi
        sleep 0.3
    done
    cat "$s/done/$n.out"
    return "$(cat "$s/done/$n.rc")"
}
# gx G [-t SECS] SCRIPT: run SCRIPT in guest G and wait for it
gx() {
    local g=$1 t=600 n
    shift
    if [ "$1" = -t ]; then t=$2; shift 2; fi
    n=$(gx_bg "$g" -t "$t" "$@")
    gx_wait "$g" "$n" $((t + 30))
}
# on G SCRIPT: run SCRIPT in G, show its output indented with the host's name; a failure there fails here,
# with the job's own FAIL line.
on() {
    local g=$1 rc=0 out why
    shift
    out=$(gx "$g" "$@") || rc=$?
    [ -z "$out" ] || printf '%s\n' "$out" | sed "s/^/    $(host_of "$g")| /"
    if [ $rc != 0 ]; then
        why=$(printf '%s\n' "$out" | grep -m1 'FAIL: ' | sed 's/.*FAIL: //')
        fail "on $(host_of "$g"): ${why:-job failed with rc $rc: $(printf '%s\n' "$out" | tail -n 1)}"
    fi
}
# val G SCRIPT: run SCRIPT in G, print only its output (for values); fails like `on`
val() {
    local g=$1 rc=0 out
    shift
    out=$(gx "$g" "$@") || rc=$?
    if [ $rc != 0 ]; then
        printf '%s\n' "$out" | sed "s/^/    $(host_of "$g")| /" >&2
        fail "on $(host_of "$g"): $(printf '%s\n' "$out" | grep -m1 'FAIL: ' | sed 's/.*FAIL: //')"
    fi
    printf '%s\n' "$out"
}

# expect G DOMAIN FIELD=VALUE...: G's state line (th_state DOMAIN) must have each FIELD=VALUE exactly
# (fields: dom, mdevs, ledger; lists comma-separated and sorted; empty value: none at all; VALUE may be a
# glob, e.g. dom=running/* after a failed migration, whose reason libvirt may change)
expect() {
    local g=$1 d=$2 line f want got
    shift 2
    line=$(val "$g" "th_state $d" | grep '^STATE ') || fail "on $(host_of "$g"): no state line"
    printf '    %s| %s\n' "$(host_of "$g")" "$line"
    for f in "$@"; do
        want=${f#*=}
        got=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^${f%%=*}=//p")
        # shellcheck disable=SC2254  # the expected value may be a glob (dom=running/*)
        case "$got" in
        $want) ;;
        *) fail "on $(host_of "$g"): ${f%%=*} is '$got', expected '$want'" ;;
        esac
    done
}
sorted() { printf '%s\n' "$@" | sort | paste -sd, -; }
claims() { # DOMAIN UUID...: the ledger field for DOMAIN owning these devices
    local d=$1 u
    shift
    for u in "$@"; do echo "$u:$d:created"; done | sort | paste -sd, -
}
# events G MARK: print G's hook calls (libvirtd's log) and the hook's JSON events since `th_marker MARK` there
events() {
    echo "    --- $(host_of "$1"): libvirt hook calls and mdev-hooks events since '$2'"
    val "$1" "th_events $2" | sed "s/^/    $(host_of "$1")| /"
}
marker() { gx a "th_marker $1" > /dev/null && gx b "th_marker $1" > /dev/null; }
uuid() { cat /proc/sys/kernel/random/uuid; }
hostname_of() { case $1 in a) echo migr-a ;; b) echo migr-b ;; esac; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# live_migration MARK TYPE=UUID...: the live scenarios' common path: define and start "vm" on A with these
# hook-managed devices, `virsh migrate --live` to B, then check both sides: A removed every device and has an
# empty ledger, B made each with its UUID and type and owns it, B's qemu uses each, B's mtty validated one state
# header per device, both hook logs say so; prints both hosts' events. Leaves vm running on B.
live_migration() {
    local mark=$1 spec n hv0
    local -a us=()
    shift
    for spec in "$@"; do us+=("${spec#*=}"); done
    n=${#us[@]}
    note "devices: $*"
    on a "th_define vm $* && th_start vm"
    expect a vm dom=running/booted "mdevs=$(sorted "${us[@]}")" "ledger=$(claims vm "${us[@]}")"
    expect b vm dom=none mdevs= ledger=
    marker "$mark"
    hv0=$(val b "dmesg | grep -c 'header validated' || true")
    on a "th_migrate vm; [ \"\$MRC\" = 0 ] || fail \"virsh migrate A->B failed: \$MERR\""
    # A's release runs after the domain left: give it a moment to remove A's devices
    on a "wait_until 60 'A removed the devices' eval '[ -z \"\$(all_mdevs)\" ]'"
    expect a vm dom=none mdevs= ledger=
    expect b vm dom=running/migrated "mdevs=$(sorted "${us[@]}")" "ledger=$(claims vm "${us[@]}")"
    ok "after the migration: B has $(sorted "${us[@]}") (owned by vm in B's ledger), A has no device and an empty ledger"
    for spec in "$@"; do
        on b "assert_mdev ${spec#*=} ${spec%%=*}; P=\$(qemu_pid vm); tr '\\0' ' ' < /proc/\$P/cmdline | grep -qF /sys/bus/mdev/devices/${spec#*=} || fail \"B's qemu does not use ${spec#*=}\"; ok \"B's qemu (pid \$P) uses ${spec#*=}\""
    done
    on b "n=\$(dmesg | grep -c 'header validated'); [ \$n = $((hv0 + n)) ] || fail \"B's mtty validated \$((n - $hv0)) device state headers during the migration, expected $n\"; dmesg | grep resume_write | tail -n 3; ok \"B's mtty received the state of $n device(s)\""
    on b "assert_logs mdev.created ${us[*]}"
    on a "assert_logs mdev.removed ${us[*]}"
    events b "$mark"
    events a "$mark"
}
