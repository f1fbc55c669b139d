# shellcheck shell=bash
# Guest-side helpers for the e2e scenarios (sourced by guest/test.sh and by every scenario).
# Runs inside the TCG guest as root, with the real kernel, mtty.ko, libvirtd and the project's hook.
# How the project is installed (install_mdev_hooks): every release installs the project's .deb with apt (the
# distro's python3 and python3-lxml/-filelock/-structlog); scenario l-pip-venv puts its wheel into a venv with pip.

export LIBVIRT_DEFAULT_URI=qemu:///system
export LC_ALL=C.UTF-8
SHARE=${SHARE:-/mnt/share}
OUT=${OUT:-$SHARE/out}
VENV=/opt/mdev-hooks
HOOK=/etc/libvirt/hooks/qemu.d/50-mdev-hooks
TYPES=/sys/class/mdev_bus/mtty/mdev_supported_types
DEVICES=/sys/bus/mdev/devices
HOOK_LOG=/var/log/mdev-hooks.log
STATE_DIR=/run/mdev-hooks
CONFIG=/etc/mdev-hooks/config.toml
SCRATCH=${SCRATCH:-/tmp/e2e}
mkdir -p "$SCRATCH"

now_s() { date +%s.%3N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
_T0=${_T0:-$(now_s)}
note() { printf '  [%6ss] %s\n' "$(since "$_T0")" "$*"; }
fail() {
    printf '  [%6ss] FAIL: %s\n' "$(since "$_T0")" "$*"
    exit 1
}
ok() { note "ok: $*"; }

new_uuid() { cat /proc/sys/kernel/random/uuid; }

# --- what differs between the releases' kernels, libvirt and mdevctl ---
RELEASE=$(cat "$SHARE/release" 2>/dev/null || echo unknown)
KMAJ=$(uname -r | cut -d. -f1)
KMIN=$(uname -r | cut -d. -f2)
kernel_before() { [ "$KMAJ" -lt "$1" ] || { [ "$KMAJ" -eq "$1" ] && [ "$KMIN" -lt "$2" ]; }; }
# The 5.10 mdev core (bullseye): vfio binding in the separate vfio_mdev module; available_instances,
# name and description are the parent driver's own attributes, and mtty's create never refuses (no pool
# limit: its available_instances goes negative). From 6.1 on, the core counts and mtty says ENOSPC.
legacy_mdev() { kernel_before 6 1; }
LIBVIRT_VERSION=$(libvirtd --version 2>/dev/null | awk '{print $NF}')
MDEVCTL_VERSION=$(dpkg-query -W -f='${Version}' mdevctl 2>/dev/null)
# deb: the project's .deb, installed by apt with the distro's python3 and libraries (every release); venv: pip into
# $VENV (scenario l-pip-venv, as on RHEL/Rocky 9, and MDEV_HOOKS_INSTALL=venv).
case "${MDEV_HOOKS_INSTALL:-$RELEASE}" in
deb | bullseye | bookworm | trixie) INSTALL_KIND=deb HOOK_PY=/usr/bin/python3 ;;
*) INSTALL_KIND=venv HOOK_PY=$VENV/bin/python3 ;;
esac

versions() { # one line: what this guest runs
    local os py lv qv kv mv
    os=$(. /etc/os-release && echo "Debian $(cat /etc/debian_version) ($VERSION_CODENAME)")
    py=$("$HOOK_PY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?')
    lv=$LIBVIRT_VERSION
    qv=$(qemu-system-x86_64 --version | head -n1 | sed 's/^QEMU emulator version //')
    kv="$(uname -r) ($(dpkg-query -W -f='${Version}' "linux-image-$(uname -r)" 2>/dev/null))"
    mv=$MDEVCTL_VERSION
    echo "versions: $os; kernel $kv; python $py ($INSTALL_KIND); libvirt $lv; qemu $qv; mdevctl $mv"
}

# --- sysfs ---
mdev_exists() { [ -e "$DEVICES/$1" ]; }
mdev_type() { basename "$(readlink "$DEVICES/$1/mdev_type")"; }
mdev_parent() { basename "$(dirname "$(readlink -f "$DEVICES/$1")")"; }
avail() { cat "$TYPES/$1/available_instances"; }
all_mdevs() { ls "$DEVICES" 2>/dev/null || true; }
make_mdev() { echo "$1" > "$TYPES/$2/create"; }
# Remove an mdev by hand. Only call when no qemu holds it: a remove of an open device blocks forever.
remove_mdev() {
    if pgrep -f qemu-system >/dev/null; then
        fail "refusing to remove $1 by hand while a qemu process runs (it could block uninterruptibly)"
    fi
    echo 1 > "$DEVICES/$1/remove"
}

assert_mdev() { # UUID TYPE
    mdev_exists "$1" || fail "mdev $1 does not exist (mdevs: $(all_mdevs | xargs))"
    [ "$(mdev_type "$1")" = "$2" ] || fail "mdev $1 has type $(mdev_type "$1"), expected $2"
    [ "$(mdev_parent "$1")" = mtty ] || fail "mdev $1 has parent $(mdev_parent "$1"), expected mtty"
}
assert_no_mdev() { # UUID
    if mdev_exists "$1"; then fail "mdev $1 still exists"; fi
}
assert_no_mdevs_at_all() {
    local left
    left=$(all_mdevs | xargs)
    [ -z "$left" ] || fail "mdevs left behind: $left"
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s; fail after SECONDS.
wait_until() {
    local limit=$1 what=$2 t0
    shift 2
    t0=$(now_s)
    until "$@" > /dev/null 2>&1; do
        if awk -v a="$t0" -v b="$(now_s)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            fail "timed out after ${limit}s waiting for: $what"
        fi
        sleep 0.2
    done
    note "waited $(since "$t0")s for: $what"
}

# --- domains ---
# define_domain NAME [--memory MIB] [--parent P] [--migratable] SPEC...: define a disk-less SeaBIOS domain (the
# one domain XML of both real-kernel tiers) with one mtty hostdev per SPEC, aliased ua-mdevN. SPEC is TYPE=UUID
# (managed='yes' + our <mdev:device> on parent P, default mtty), unmanaged=UUID (managed='no', no metadata) or
# nometa=UUID (managed, no metadata: mdevctl). --migratable adds the qemu override qemu 10.0 needs to migrate
# an mtty device (enable-migration=on, x-device-dirty-page-tracking=off; docs/notes/migration-lab.md §3).
# Memory 96 MiB unless --memory. Sets DOMU to the domain's <uuid>; the XML stays in $SCRATCH/NAME.xml.
define_domain() {
    local name=$1 mem=96 parent=mtty pool="" where migratable=0 spec u t i=0 meta="" devs="" over="" managed
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        --memory) mem=$2; shift 2 ;;
        --parent) parent=$2; shift 2 ;;
        --pool) pool=$2; shift 2 ;;  # the metadata names this pool of [pools] instead of a parent
        --migratable) migratable=1; shift ;;
        *) break ;;
        esac
    done
    DOMU=$(new_uuid)
    where="parent=\"$parent\""
    [ -z "$pool" ] || where="pool=\"$pool\""
    for spec in "$@"; do
        t=${spec%%=*}
        u=${spec#*=}
        case $t in
        unmanaged) managed=no ;;
        nometa) managed=yes ;;
        *) managed=yes; meta+="      <mdev:device uuid=\"$u\" $where type=\"$t\"/>"$'\n' ;;
        esac
        devs+="    <hostdev mode='subsystem' type='mdev' managed='$managed' model='vfio-pci'>"
        devs+="<source><address uuid='$u'/></source><alias name='ua-mdev$i'/></hostdev>"$'\n'
        over+="    <qemu:device alias='ua-mdev$i'><qemu:frontend>"
        over+="<qemu:property name='enable-migration' type='string' value='on'/>"
        over+="<qemu:property name='x-device-dirty-page-tracking' type='string' value='off'/>"
        over+="</qemu:frontend></qemu:device>"$'\n'
        i=$((i + 1))
    done
    {
        echo "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        echo "  <name>$name</name>"
        echo "  <uuid>$DOMU</uuid>"
        echo "  <memory unit='MiB'>$mem</memory>"
        echo "  <vcpu>1</vcpu>"
        echo "  <os><type arch='x86_64' machine='pc'>hvm</type></os>"
        echo "  <features><acpi/></features>"
        if [ -n "$meta" ]; then
            echo "  <metadata>"
            echo "    <mdev:mdevs xmlns:mdev=\"urn:mdev-hooks:domain:1\">"
            printf '%s' "$meta"
            echo "    </mdev:mdevs>"
            echo "  </metadata>"
        fi
        echo "  <devices>"
        echo "    <emulator>/usr/bin/qemu-system-x86_64</emulator>"
        printf '%s' "$devs"
        echo "    <memballoon model='none'/>"
        echo "  </devices>"
        if [ "$migratable" = 1 ] && [ -n "$over" ]; then
            echo "  <qemu:override>"
            printf '%s' "$over"
            echo "  </qemu:override>"
        fi
        echo "</domain>"
    } > "$SCRATCH/$name.xml"
    virsh define "$SCRATCH/$name.xml" > /dev/null || fail "virsh define $name failed ($SCRATCH/$name.xml)"
}

# vstart NAME [virsh start options]: start with a 120 s bound; sets VRC, VERR (stderr), VSECS.
vstart() {
    local name=$1 t0
    shift
    t0=$(now_s)
    VRC=0
    timeout 120 virsh start "$@" "$name" > "$SCRATCH/out" 2> "$SCRATCH/err" || VRC=$?
    VSECS=$(since "$t0")
    VERR=$(cat "$SCRATCH/err")
    note "virsh start $* $name: rc=$VRC in ${VSECS}s"
    [ "$VRC" != 124 ] || fail "virsh start $name hung (killed by timeout after 120 s)"
}
start_ok() { # NAME: start paused, must succeed
    vstart "$1" --paused
    [ "$VRC" = 0 ] || fail "virsh start --paused $1 failed: $VERR"
}
destroy_ok() { # NAME
    local t0 rc=0
    t0=$(now_s)
    timeout 60 virsh destroy "$1" > /dev/null 2> "$SCRATCH/err" || rc=$?
    note "virsh destroy $1: rc=$rc in $(since "$t0")s"
    [ "$rc" = 0 ] || fail "virsh destroy $1 failed (rc $rc): $(cat "$SCRATCH/err")"
}
dom_state() { virsh domstate "$1" 2>/dev/null | head -n1; }
dom_active() {
    local s
    s=$(dom_state "$1")
    [ -n "$s" ] && [ "$s" != "shut off" ]
}
dom_inactive() { ! dom_active "$1"; }
dom_uuid() { virsh domuuid "$1" | head -n1; }
qemu_pid() { cat "/run/libvirt/qemu/$1.pid"; }

# The hook's one-line reason from a failed start (sets REASON): the text libvirt appends after
# "unexpected exit status N: ". Fails unless it starts with "mdev-hooks: " and is the only non-empty line.
hook_reason() {
    local reason rest
    reason=$(printf '%s\n' "$VERR" | sed -n 's/.*unexpected exit status [0-9]*: //p' | head -n1)
    [ -n "$reason" ] || fail "virsh's error is not a hook failure: $VERR"
    case "$reason" in
    "mdev-hooks: "*) ;;
    *) fail "the hook's message does not start with 'mdev-hooks: ': $reason" ;;
    esac
    rest=$(printf '%s\n' "$VERR" | sed -n '/unexpected exit status [0-9]*: /,$p' | tail -n +2 | grep -v '^[[:space:]]*$' || true)
    [ -z "$rest" ] || fail "the hook's message is more than one line; after the first: $rest"
    REASON=$reason
    note "hook's reason: $REASON"
}

# --- the hook's own files ---
# hook_log_has EVENT STRING: a line of the JSON log names EVENT and STRING (a UUID).
# Never `| grep -q` on the log: scenarios run with pipefail, and once the log outgrows a pipe buffer the first
# grep dies of SIGPIPE when grep -q stops reading early, which failed a check whose line was there (c on 5.10).
hook_log_has() { grep -F "\"$1\"" "$HOOK_LOG" 2>/dev/null | grep -iF "$2" > /dev/null; }
assert_log() {
    hook_log_has "$1" "$2" || fail "no $1 event for $2 in $HOOK_LOG"
    ok "$HOOK_LOG has $1 for $2"
}
assert_logs() { # EVENT UUID...: every UUID has an EVENT line (one pass over the log)
    local ev=$1 u missing=()
    shift
    grep -F "\"$ev\"" "$HOOK_LOG" 2>/dev/null > "$SCRATCH/events" || true
    for u in "$@"; do grep -qiF "$u" "$SCRATCH/events" || missing+=("$u"); done
    [ ${#missing[@]} -eq 0 ] || fail "no $ev event in $HOOK_LOG for: ${missing[*]}"
    ok "$HOOK_LOG has $ev for all $# devices"
}
assert_no_log() { # EVENT UUID...: no line of the log names EVENT and any of the UUIDs
    local ev=$1
    shift
    printf '%s\n' "$@" > "$SCRATCH/patterns"
    if grep -F "\"$ev\"" "$HOOK_LOG" 2>/dev/null | grep -iF -f "$SCRATCH/patterns" > /dev/null; then
        fail "unexpected $ev event in $HOOK_LOG: $(grep -F "\"$ev\"" "$HOOK_LOG" | grep -iF -f "$SCRATCH/patterns" | head -n1)"
    fi
}
# ledger_mentions STRING: some file under the state dir contains (or is named after) STRING.
ledger_mentions() {
    [ -d "$STATE_DIR" ] || return 1
    grep -rqiF -- "$1" "$STATE_DIR" 2>/dev/null && return 0
    find "$STATE_DIR" -iname "*$1*" | grep -q .
}
assert_ledger_clean() { # STRING...: nothing in the ledger mentions (or is named after) any of them
    printf '%s\n' "$@" > "$SCRATCH/patterns"
    if [ -d "$STATE_DIR" ]; then
        if grep -rqiF -f "$SCRATCH/patterns" "$STATE_DIR" 2>/dev/null \
            || find "$STATE_DIR" | grep -qiF -f "$SCRATCH/patterns"; then
            fail "the ledger still mentions one of $*: $(grep -rliF -f "$SCRATCH/patterns" "$STATE_DIR" | xargs)" \
                "$(find "$STATE_DIR" | grep -iF -f "$SCRATCH/patterns" | xargs)"
        fi
    fi
    ok "ledger has no entry for $*"
}

write_config() { # extra TOML lines
    mkdir -p /etc/mdev-hooks
    {
        echo "# mdev-hooks e2e: defaults (sysfs_root=/sys, state_dir=/run/mdev-hooks,"
        echo "# lock_dir=/run/mdev-hooks/locks, log_file=/var/log/mdev-hooks.log)"
        printf '%s\n' "$@"
    } > "$CONFIG"
}

# libvirt_daemon: the unit of the libvirt daemon that runs qemu domains here (virtqemud if the modular daemons run).
libvirt_daemon() {
    if systemctl is-active --quiet virtqemud.service; then echo virtqemud; else echo libvirtd; fi
}

# assert_libvirt_calls_hook: the running libvirt daemon calls our hook. A domain whose metadata names one
# device twice is refused by the hook at prepare, before any qemu starts, with its one line.
assert_libvirt_calls_hook() {
    local u
    u=$(new_uuid)
    cat > "$SCRATCH/hookcheck.xml" <<XML
<domain type='qemu'>
  <name>hookcheck</name>
  <memory unit='MiB'>96</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <metadata>
    <mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1">
      <mdev:device uuid="$u" parent="mtty" type="mtty-1"/>
      <mdev:device uuid="$u" parent="mtty" type="mtty-2"/>
    </mdev:mdevs>
  </metadata>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'><source><address uuid='$u'/></source></hostdev>
    <memballoon model='none'/>
  </devices>
</domain>
XML
    virsh define "$SCRATCH/hookcheck.xml" > /dev/null || fail "virsh define hookcheck failed"
    vstart hookcheck --paused
    virsh undefine hookcheck > /dev/null 2>&1 || true
    [ "$VRC" != 0 ] || fail "a domain the hook must refuse started: $(libvirt_daemon) does not call $HOOK"
    hook_reason
    assert_no_mdev "$u"
    ok "$(libvirt_daemon) calls the hook (it refused a domain with a doubled device)"
}

# install_mdev_hooks: install the project the way this release's users would, so that afterwards `mdev-hooks` is
# on PATH, the hook is $HOOK, the config $CONFIG, and the running libvirt daemon calls the hook. Call it once
# libvirtd answers (its postinst, or the reload here, must find it running).
#   deb  (every release): apt-get install ./mdev-hooks_*.deb from $SHARE/deb: apt resolves the
#        distro's python3-lxml/-filelock/-structlog from the image's lists and cache (no network, no pip); the
#        package's postinst reloads libvirtd itself and says so; its pid shows it was reloaded, not restarted.
#   venv (scenario l-pip-venv, MDEV_HOOKS_INSTALL=venv): pip install $SHARE/wheel/*.whl into $VENV (offline, /opt/wheelhouse), `mdev-hooks install
#        --qemu-d` (hook, config, man page, completion, logrotate snippet), /usr/local/bin/mdev-hooks, reload.
# hook_runs PYTHON: $HOOK is the sh front (issue 23) that starts PYTHON for the operations that concern it
hook_runs() {
    [ "$(head -n1 "$HOOK")" = "#!/bin/sh" ] && grep -qxF "python=$1" "$HOOK" \
        || fail "$HOOK is not the front for $1: $(head -n1 "$HOOK"), $(grep '^python=' "$HOOK" || echo 'no python= line')"
}
install_mdev_hooks() {
    local t deb wheel pid_before pid_after holder line daemon p
    t=$(now_s)
    daemon=$(libvirt_daemon)
    if [ "$INSTALL_KIND" = deb ]; then
        deb=$(ls "$SHARE"/deb/mdev-hooks_*_all.deb 2>/dev/null | head -n1)
        [ -n "$deb" ] || fail "no mdev-hooks_*_all.deb in $SHARE/deb (tests/e2e/run builds it with scripts/build-deb)"
        for p in mdev-hooks python3-lxml python3-filelock python3-structlog; do
            if dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed; then
                fail "$p is installed before apt installs the .deb"
            fi
        done
        systemctl is-active --quiet "$daemon" || fail "$daemon is not running: the postinst path under test needs it"
        # a client connection keeps libvirtd's idle --timeout from restarting it while apt runs
        virsh event --all --loop > /dev/null 2>&1 &
        holder=$!
        pid_before=$(systemctl show -p MainPID --value "$daemon")
        cp "$deb" /tmp/
        # no --no-download: apt then fails on a local .deb ("Pathname to install is not absolute"); the guest
        # has no network interface at all, so whatever apt would have to fetch fails the install
        DEBIAN_FRONTEND=noninteractive apt-get install -y "/tmp/$(basename "$deb")" \
            > "$OUT/apt-install.log" 2>&1 \
            || { sed 's/^/    apt| /' "$OUT/apt-install.log"; kill "$holder"; fail "apt-get install $(basename "$deb") failed"; }
        sed 's/^/    apt| /' "$OUT/apt-install.log"
        for p in python3-lxml python3-filelock python3-structlog mdev-hooks; do
            grep -Eq "^Setting up $p(:[a-z0-9]+)? " "$OUT/apt-install.log" || { kill "$holder"; fail "apt did not set up $p"; }
        done
        ok "apt resolved and installed the distro's python3-lxml, python3-filelock, python3-structlog offline" \
            "($(dpkg-query -W -f='${Version} ' python3-lxml python3-filelock python3-structlog))"
        line=$(grep '^mdev-hooks: installed the libvirt hook ' "$OUT/apt-install.log" || true)
        [ -n "$line" ] || { kill "$holder"; fail "postinst said nothing about the libvirt hook"; }
        note "postinst: $line"
        case "$line" in
        *" and reloaded $daemon "*) ;;
        *) kill "$holder"; fail "postinst did not reload the running $daemon (no hook existed before): $line" ;;
        esac
        pid_after=$(systemctl show -p MainPID --value "$daemon")
        [ "$pid_after" = "$pid_before" ] \
            || { kill "$holder"; fail "$daemon was restarted (pid $pid_before -> $pid_after), not reloaded"; }
        wait_until 60 "$daemon answers after the postinst's reload" virsh -q version
        kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
        [ "$(command -v mdev-hooks)" = /usr/bin/mdev-hooks ] || fail "mdev-hooks on PATH is $(command -v mdev-hooks)"
        hook_runs /usr/bin/python3
        python3 -c 'import mdev_hooks, sys; sys.exit(not mdev_hooks.__file__.startswith("/usr/lib/python3/dist-packages/"))' \
            || fail "python3 imports mdev_hooks from elsewhere than /usr/lib/python3/dist-packages"
        [ -f "$CONFIG" ] || fail "the package installed no $CONFIG"
        note "installed $(basename "$deb") with apt in $(since "$t")s: $(mdev-hooks --version)"
    else
        wheel=$(ls "$SHARE"/wheel/*.whl 2>/dev/null | head -n1)
        [ -n "$wheel" ] || fail "no project wheel in $SHARE/wheel"
        "$VENV/bin/python3" -m pip install --disable-pip-version-check -q --no-index \
            --find-links /opt/wheelhouse "$wheel" || fail "pip install $(basename "$wheel") into $VENV failed"
        "$VENV/bin/mdev-hooks" install --qemu-d | sed 's/^/    install| /'
        [ "${PIPESTATUS[0]}" = 0 ] || fail "'mdev-hooks install --qemu-d' failed"
        ln -sf "$VENV/bin/mdev-hooks" /usr/local/bin/mdev-hooks
        hook_runs "$VENV/bin/python3"
        note "installed $(basename "$wheel") into $VENV with pip in $(since "$t")s; $VENV has:" \
            "$(cd "$VENV"/lib/python3*/site-packages && ls -d -- *.dist-info | sed 's/\.dist-info$//' | xargs)"
        # libvirtd finds a hook that appeared after it started only on reload (SIGHUP) or restart
        systemctl reload "$daemon" || fail "systemctl reload $daemon failed"
        wait_until 60 "$daemon answers after reload" virsh -q version
    fi
    [ -x "$HOOK" ] || fail "no executable $HOOK"
    # as libvirt runs it (scrubbed environment): a domain without mdevs must pass silently
    env -i LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$HOOK" smoke prepare begin - \
        < <(echo "<domain type='qemu'><name>smoke</name><uuid>$(new_uuid)</uuid></domain>") \
        > "$SCRATCH/smoke.out" 2> "$SCRATCH/smoke.err" \
        || fail "the installed hook fails on a domain without mdevs (rc $?): $(head -c 2000 "$SCRATCH/smoke.err")"
    [ ! -s "$SCRATCH/smoke.out" ] || fail "the hook wrote to stdout: $(head -c 300 "$SCRATCH/smoke.out")"
    assert_libvirt_calls_hook
}
