# j. Host boot (issue 14 item 5): a domain marked autostart, with a managed mtty mdev, on a host whose mdev parent
# driver (mtty, standing for a vGPU manager or GVT) registers its parent a few seconds after libvirtd has started.
# The guest really reboots twice (guest/boot.sh):
#   phase 0: define + `virsh autostart` the domain; a unit After=libvirtd.service loads mtty some seconds after
#            libvirtd is up (nothing else loads it at boot); the config sets no parent_wait (the default); reboot.
#   phase 1: libvirtd autostarts the domain at boot, the hook waits for the parent (parent.waiting/.waited) and
#            creates the mdev: the domain runs with it. systemd has taken the libvirtd drop-in (After= only).
#            Then parent_wait = 0 in the config; reboot.
#   phase 2: the autostart fails with exactly the hook's one line in libvirtd's log (the same line the hook
#            prints when run by hand on the same domain, no traceback); no mdev, nothing in the ledger.
# Does not care how the hook was installed: `mdev-hooks` on PATH or the venv's, /etc/mdev-hooks/config.toml, and
# the log file that config names.
# e2e: reboot
# e2e: releases trixie
# shellcheck disable=SC2153  # U, DOMU, DROPIN, ... come from $ENVF, written by the phase before

ENVF=$BOOT_DIR/j-host-boot.env
LOADER=e2e-slow-mtty
FROM=/etc/$LOADER.from   # the hook log's line count before this boot: the loader looks at the lines after it
LVLOG=/var/log/libvirt/libvirtd.log
DELAY=4
DROPIN_REL=libvirtd.service.d/mdev-hooks.conf

MH=$(command -v mdev-hooks || echo "$VENV/bin/mdev-hooks")
[ -x "$MH" ] || fail "no mdev-hooks command (PATH or $VENV/bin)"
MH_PY=$(head -n1 "$MH" | sed 's/^#! *//; s/ .*//')
# what the installed hook reads from the config (the same code the hook runs)
cfg_value() { "$MH_PY" -c "from mdev_hooks import config; print(config.load().$1)"; }
LOGF=$(cfg_value log_file)
case "$LOGF" in
/*) ;;
*) fail "this scenario reads the hook's JSON log file; the config says log_file = $LOGF" ;;
esac

# set_parent_wait [SECONDS]: the config as it is, without parent_wait, plus parent_wait = SECONDS if given (first:
# a top-level key must come before any table)
set_parent_wait() {
    mkdir -p "$(dirname "$CONFIG")"
    touch "$CONFIG"
    { [ $# -eq 0 ] || echo "parent_wait = $1"; grep -v '^[[:space:]]*parent_wait[[:space:]]*=' "$CONFIG"; } \
        > "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
}
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
# new_lines FILE FROM: the lines of FILE after line FROM
new_lines() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null || true; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# mono_s UNIT PROPERTY: a unit's monotonic timestamp, in seconds since boot
mono_s() { systemctl show "$1" -p "$2" --value | awk '{ printf "%.1f", $1 / 1e6 }'; }
# hook_events FROM: the hook log's events after line FROM about vm-boot, one per line: EVENT op k=v...
hook_events() {
    new_lines "$LOGF" "$1" | "$MH_PY" -c '
import json, sys
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("domain") != "vm-boot":
        continue
    rest = " ".join(f"{k}={json.dumps(v)}" for k, v in e.items() if k not in ("event", "domain", "op", "level"))
    print(e.get("event"), e.get("op"), rest)'
}

case "$BOOT_PHASE" in
0)
    rm -f "$ENVF.new"
    set_parent_wait
    PW=$(cfg_value parent_wait)
    awk -v p="$PW" 'BEGIN { exit !(p > 0) }' || fail "the default parent_wait is $PW, expected > 0"
    ok "config $CONFIG sets no parent_wait: the hook's default is ${PW}s; hook log $LOGF"
    U=$(new_uuid)
    define_domain vm-boot "mtty-2=$U"
    virsh autostart vm-boot > /dev/null || fail "virsh autostart vm-boot failed"
    [ "$(virsh dominfo vm-boot | awk '/^Autostart:/ { print $2 }')" = enable ] || fail "vm-boot is not autostart"
    ok "vm-boot (mtty-2 $U) defined, autostart enabled"

    # The platform's modules at boot, as a host has them; mtty (the "vendor driver") is not one of them.
    mods=(vfio vfio_iommu_type1 mdev)
    if legacy_mdev; then mods+=(vfio_mdev); fi
    printf '%s\n' "${mods[@]}" > /etc/modules-load.d/e2e-vfio.conf
    if grep -rsw mtty /etc/modules-load.d /etc/modules /usr/lib/modules-load.d /etc/modprobe.d; then
        fail "something loads mtty at boot (above)"
    fi
    # The loader: a driver that registers its parent late. Under TCG on a loaded host, libvirtd runs the autostart
    # hook 10-50 s after it is up (seen: 33 s, then 17 s of Python start-up before the hook's first event), so a
    # fixed delay after libvirtd misses the hook's parent_wait window either way. This one times its ${DELAY} s from
    # the hook's first event for vm-boot (hook.invoked, logged just before the parent check), or from 180 s after
    # libvirtd is up without one: the hook must still find the parent missing, wait, and see it appear.
    cat > "/usr/local/sbin/$LOADER" <<EOF
#!/bin/sh
# e2e: a slow mdev parent driver (tests/e2e/scenarios/j-host-boot.sh)
echo "$LOADER: libvirtd is up (uptime \$(cut -d' ' -f1 /proc/uptime)); waiting for the hook to start vm-boot"
from=\$(cat $FROM)
i=0
while [ \$i -lt 900 ]; do
    if tail -n +\$((from + 1)) $LOGF 2>/dev/null | grep '"event": "hook.invoked"' | grep -q '"domain": "vm-boot"'; then
        break
    fi
    sleep 0.2
    i=\$((i + 1))
done
echo "$LOADER: the hook runs for vm-boot (uptime \$(cut -d' ' -f1 /proc/uptime)); loading mtty in ${DELAY} s"
cut -d' ' -f1 /proc/uptime > /run/$LOADER.hook-seen
sleep $DELAY
modprobe mtty 2>/dev/null || insmod "/lib/modules/\$(uname -r)/extra/mtty.ko" || exit 1
cut -d' ' -f1 /proc/uptime > /run/$LOADER.loaded
echo "$LOADER: mtty loaded (uptime \$(cat /run/$LOADER.loaded))"
EOF
    chmod 0755 "/usr/local/sbin/$LOADER"
    cat > "/etc/systemd/system/$LOADER.service" <<EOF
[Unit]
Description=e2e: a slow mdev parent driver (mtty, ${DELAY} s after the autostart hook began)
After=libvirtd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/$LOADER

[Install]
WantedBy=multi-user.target
EOF
    systemctl enable -q "$LOADER.service" || fail "systemctl enable $LOADER failed"
    systemctl is-enabled -q libvirtd.service || fail "libvirtd.service is not enabled: nothing would autostart"
    ok "$LOADER.service enabled (After=libvirtd.service; the hook's first event, ${DELAY} s, modprobe mtty)"

    # The systemd drop-in that orders libvirtd after the vGPU manager services: shipped by the .deb; a hook
    # installed without it (pip + `mdev-hooks install`) gets it here, where the package puts it.
    dropin=""
    for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
        if [ -f "$d/$DROPIN_REL" ]; then dropin=$d/$DROPIN_REL; break; fi
    done
    if [ -n "$dropin" ]; then
        note "the installation shipped the drop-in $dropin"
        echo "DROPIN_BY_TEST=" >> "$ENVF.new"
    else
        src=$("$MH_PY" -c 'import importlib.resources as r; print(r.files("mdev_hooks") / "share/libvirtd-after.conf")')
        [ -f "$src" ] || fail "the installed mdev_hooks has no share/libvirtd-after.conf ($src)"
        for unit in libvirtd virtqemud; do
            install -D -m 0644 "$src" "/lib/systemd/system/$unit.service.d/mdev-hooks.conf"
        done
        dropin=/lib/systemd/system/$DROPIN_REL
        note "the installation shipped no drop-in (pip + mdev-hooks install): installed $src as $dropin" \
            "(and virtqemud's), as the .deb does"
        echo "DROPIN_BY_TEST=1" >> "$ENVF.new"
    fi
    systemctl daemon-reload
    {
        echo "U=$U"
        echo "DOMU=$DOMU"
        echo "DROPIN=$dropin"
        echo "HOOK_LINES=$(lines "$LOGF")"
        echo "LV_LINES=$(lines "$LVLOG")"
        echo "PW=$PW"
    } >> "$ENVF.new"
    lines "$LOGF" > "$FROM"
    mv "$ENVF.new" "$ENVF"
    assert_no_mdevs_at_all
    reboot_after_phase
    ;;

1)
    # shellcheck disable=SC1090
    . "$ENVF"   # U DOMU DROPIN DROPIN_BY_TEST HOOK_LINES LV_LINES PW
    note "booted (up $(uptime_s)s); libvirtd active since $(mono_s libvirtd ActiveEnterTimestampMonotonic)s"
    # the autostart: running, or failed (then libvirtd's journal or log file says why at once)
    t0=$(now_s)
    until [ "$(dom_state vm-boot)" = running ]; do
        err=$({ journalctl -b -q -o cat -u libvirtd; new_lines "$LVLOG" "$LV_LINES"; } 2>/dev/null \
            | grep -m1 -F "autostart VM 'vm-boot'" || true)
        [ -z "$err" ] || fail "libvirtd did not autostart vm-boot: $err"
        if awk -v a="$t0" -v b="$(now_s)" 'BEGIN { exit !(b - a > 180) }'; then
            fail "vm-boot is '$(dom_state vm-boot)' 180 s after test.sh started"
        fi
        sleep 1
    done
    RUNNING_AT=$(uptime_s)
    ok "vm-boot is running (seen at uptime ${RUNNING_AT}s)"
    assert_mdev "$U" mtty-2
    PID=$(qemu_pid vm-boot)
    GROUP=$(basename "$(readlink "$DEVICES/$U/iommu_group")")
    held=""
    for fd in "/proc/$PID/fd/"*; do
        if [ "$(readlink "$fd")" = "/dev/vfio/$GROUP" ]; then held=$fd; fi
    done
    [ -n "$held" ] || fail "qemu (pid $PID) does not hold /dev/vfio/$GROUP"
    ok "mdev $U (mtty-2 on mtty) exists and qemu pid $PID holds /dev/vfio/$GROUP"

    # the order of events at boot: libvirtd up, the hook waiting, mtty loaded, the mdev created
    LV_UP=$(mono_s libvirtd ActiveEnterTimestampMonotonic)
    LOADER_START=$(mono_s "$LOADER" ExecMainStartTimestampMonotonic)
    MTTY_AT=$(cat "/run/$LOADER.loaded" 2>/dev/null) || fail "$LOADER did not load mtty ($(systemctl is-active "$LOADER"))"
    hook_events "$HOOK_LINES" > "$SCRATCH/events"
    sed 's/^/    hook| /' "$SCRATCH/events"
    grep -q '^parent.waiting prepare .*"mtty"' "$SCRATCH/events" \
        || fail "the hook did not wait for the parent (no parent.waiting event for vm-boot): mtty was there already?"
    W=$(grep -m1 '^parent.waited prepare ' "$SCRATCH/events" || true)
    [ -n "$W" ] || fail "no parent.waited event"
    case "$W" in *"appeared=true"*) ;; *) fail "the hook gave up waiting: $W" ;; esac
    WAITED_MS=$(echo "$W" | sed -n 's/.*duration_ms=\([0-9.]*\).*/\1/p')
    WAIT_PW=$(grep '^parent.waiting prepare ' "$SCRATCH/events" | sed -n 's/.*parent_wait=\([0-9.]*\).*/\1/p')
    awk -v w="$WAITED_MS" -v p="$PW" -v lp="$WAIT_PW" 'BEGIN { exit !(w > 0 && w < p * 1000 && lp == p) }' \
        || fail "waited ${WAITED_MS} ms with parent_wait ${WAIT_PW} (expected 0 < wait < ${PW} s, the default)"
    grep -q "^mdev.created prepare .*$U" "$SCRATCH/events" || fail "no mdev.created event for $U at boot"
    if grep -q '^hook.failed' "$SCRATCH/events"; then fail "hook.failed at boot: $(grep '^hook.failed' "$SCRATCH/events")"; fi
    # wall clock of the hook's first event -> uptime, to put it on the same axis as systemd's
    WAIT_START=$("$MH_PY" - "$LOGF" "$HOOK_LINES" <<'PY'
import datetime, json, sys, time
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
boot = time.time() - float(open("/proc/uptime").read().split()[0])
for line in lines:
    e = json.loads(line)
    if e.get("event") == "parent.waiting" and e.get("domain") == "vm-boot":
        t = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        print(f"{t - boot:.1f}")
        break
PY
)
    note "at boot (seconds since boot): libvirtd active ${LV_UP}; $LOADER started ${LOADER_START}; hook's first event" \
        "seen $(cat "/run/$LOADER.hook-seen" 2>/dev/null); hook waiting from ${WAIT_START}; mtty loaded ${MTTY_AT};" \
        "the hook waited ${WAITED_MS} ms of parent_wait ${PW} s"
    awk -v a="$LV_UP" -v b="$LOADER_START" 'BEGIN { exit !(b >= a) }' \
        || fail "$LOADER started (${LOADER_START}s) before libvirtd was active (${LV_UP}s)"
    awk -v w="$WAIT_START" -v m="$MTTY_AT" 'BEGIN { exit !(w < m) }' \
        || fail "the hook started waiting (${WAIT_START}s) after mtty was loaded (${MTTY_AT}s)"
    ok "the hook waited ${WAITED_MS} ms at boot for mtty (loaded ${DELAY} s after its first event), then created $U"
    echo "$WAITED_MS" > "$OUT/boot-waited-ms"

    # systemd took the drop-in: libvirtd is ordered after the vGPU manager services, and pulls none of them in
    systemctl show libvirtd -p DropInPaths --value | tr ' ' '\n' | xargs -r readlink -f \
        | grep -qxF "$(readlink -f "$DROPIN")" || fail "systemd did not load $DROPIN for libvirtd: DropInPaths=$(systemctl show libvirtd -p DropInPaths --value)"
    AFTER=$(systemctl show libvirtd -p After --value)
    read -r -a ordered <<< "$(sed -n 's/^After=//p' "$DROPIN" | xargs)"
    for u in "${ordered[@]}"; do
        echo " $AFTER " | grep -qF " $u " || fail "libvirtd's After= lacks $u: $AFTER"
        for p in Requires Wants BindsTo Requisite; do
            if systemctl show libvirtd -p "$p" --value | tr ' ' '\n' | grep -qxF "$u"; then
                fail "libvirtd $p= $u (the drop-in must only order)"
            fi
        done
        [ "$(systemctl show "$u" -p LoadState --value)" = not-found ] \
            || note "$u exists here ($(systemctl show "$u" -p LoadState --value))"
    done
    if journalctl -b -q -o cat | grep -F 'mdev-hooks.conf'; then fail "systemd complained about the drop-in (above)"; fi
    ok "systemd loaded $DROPIN: libvirtd After= has $(sed -n 's/^After=//p' "$DROPIN"), no Requires/Wants/BindsTo/Requisite"

    destroy_ok vm-boot
    wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
    assert_ledger_clean "$U" "$DOMU"
    set_parent_wait 0
    awk -v p="$(cfg_value parent_wait)" 'BEGIN { exit !(p == 0) }' || fail "parent_wait is $(cfg_value parent_wait) after setting it to 0"
    ok "config: parent_wait = 0"
    {
        echo "HOOK_LINES=$(lines "$LOGF")"
        echo "LV_LINES=$(lines "$LVLOG")"
    } >> "$ENVF"
    lines "$LOGF" > "$FROM"
    reboot_after_phase
    ;;

2)
    # shellcheck disable=SC1090
    . "$ENVF"
    note "booted with parent_wait = 0; libvirtd active since $(mono_s libvirtd ActiveEnterTimestampMonotonic)s"
    # libvirtd's error for the autostart: in its journal or (log_outputs) in its log file
    wait_until 180 "libvirtd's autostart error for vm-boot" \
        sh -c "journalctl -b -q -o cat -u libvirtd | grep -qF \"autostart VM 'vm-boot'\" || tail -n +$((LV_LINES + 1)) $LVLOG | grep -qF \"autostart VM 'vm-boot'\""
    # the whole message, exactly: journald's MESSAGE field, or the log file's record up to the next record
    MSG=$(journalctl -b -u libvirtd -o json | "$MH_PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line).get("MESSAGE")
    if isinstance(m, list):
        m = bytes(m).decode("utf-8", "replace")
    if m and "autostart VM '"'"'vm-boot'"'"'" in m:
        print(m.rstrip("\n"))
        break')
    SRC="libvirtd's journal"
    if [ -z "$MSG" ]; then
        SRC=$LVLOG
        MSG=$(new_lines "$LVLOG" "$LV_LINES" | awk '
            found && /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { exit }
            found { print; next }
            index($0, "autostart VM '"'"'vm-boot'"'"'") { found = 1; print }')
    fi
    note "$SRC: $MSG"
    [ "$(printf '%s\n' "$MSG" | wc -l)" = 1 ] || fail "libvirtd's autostart error is more than one line"
    LINE=$(printf '%s\n' "$MSG" | sed -n 's/.*unexpected exit status [0-9]*: //p')
    [ -n "$LINE" ] || fail "libvirtd's autostart error is not the hook's failure: $MSG"
    if new_lines "$LVLOG" "$LV_LINES" | grep -F Traceback || journalctl -b -q -u libvirtd | grep -F Traceback; then
        fail "a traceback in libvirtd's log (above)"
    fi
    for _ in $(seq 60); do systemctl is-active -q "$LOADER" && break; sleep 1; done
    systemctl is-active -q "$LOADER" || fail "$LOADER did not finish ($(systemctl is-active "$LOADER"))"
    [ "$(dom_state vm-boot)" = "shut off" ] || fail "vm-boot is '$(dom_state vm-boot)', expected shut off"
    assert_no_mdevs_at_all
    [ "$(avail mtty-2)" = 12 ] || fail "mtty-2 available_instances is $(avail mtty-2), expected 12"
    assert_ledger_clean "$U" "$DOMU"
    hook_events "$HOOK_LINES" > "$SCRATCH/events"
    sed 's/^/    hook| /' "$SCRATCH/events"
    if grep -q '^parent.wait' "$SCRATCH/events"; then fail "the hook waited with parent_wait = 0"; fi
    if grep -q '^mdev.created' "$SCRATCH/events"; then fail "the hook created an mdev with parent_wait = 0"; fi
    grep -q '^hook.failed prepare ' "$SCRATCH/events" || fail "no hook.failed event for the autostart"
    ok "vm-boot is shut off, no mdev, nothing in the ledger, the hook did not wait"

    # What the hook prints for this domain when its parent is missing, run by hand as libvirt runs it: the hook
    # libvirt called (named in its message), the domain's XML, a scrubbed environment, mtty unloaded again.
    HOOK=$(printf '%s\n' "$MSG" | sed -n 's/.*Child process (\(.*\) vm-boot prepare begin -).*/\1/p' | awk '{ print $NF }')
    [ -x "$HOOK" ] || fail "cannot tell which hook libvirt ran from its message ('$HOOK')"
    virsh dumpxml vm-boot > "$SCRATCH/vm-boot.xml"
    if pgrep -f qemu-system > /dev/null; then fail "a qemu runs: not unloading mtty"; fi
    rmmod mtty || fail "rmmod mtty failed"
    rc=0
    env -i LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$HOOK" vm-boot prepare begin - \
        < "$SCRATCH/vm-boot.xml" > "$SCRATCH/hook.out" 2> "$SCRATCH/hook.err" || rc=$?
    modprobe mtty 2>/dev/null || insmod "/lib/modules/$(uname -r)/extra/mtty.ko" || fail "reloading mtty failed"
    [ "$rc" != 0 ] || fail "the hook run by hand succeeded without mtty"
    [ "$(wc -l < "$SCRATCH/hook.err")" = 1 ] || fail "the hook printed $(wc -l < "$SCRATCH/hook.err") lines: $(cat "$SCRATCH/hook.err")"
    [ ! -s "$SCRATCH/hook.out" ] || fail "the hook wrote to stdout: $(cat "$SCRATCH/hook.out")"
    EXPECTED=$(cat "$SCRATCH/hook.err")
    case "$EXPECTED" in
    "mdev-hooks: cannot create "*": parent mtty not found under /sys/class/mdev_bus "*) ;;
    *) fail "the hook's line is not 'parent not found': $EXPECTED" ;;
    esac
    [ "$LINE" = "$EXPECTED" ] || fail "libvirtd's line differs from the hook's: '$LINE' vs '$EXPECTED'"
    ok "libvirtd's autostart error ends with exactly the hook's line (rc $rc by hand): $LINE"
    printf '%s\n' "$LINE" > "$OUT/boot-error-line"

    # leave the guest as it was
    virsh autostart --disable vm-boot > /dev/null
    virsh undefine vm-boot > /dev/null
    systemctl disable -q "$LOADER.service"
    rm -f "/etc/systemd/system/$LOADER.service" "/usr/local/sbin/$LOADER" "$FROM" /etc/modules-load.d/e2e-vfio.conf
    if [ -n "$DROPIN_BY_TEST" ]; then rm -f /lib/systemd/system/{libvirtd,virtqemud}.service.d/mdev-hooks.conf; fi
    systemctl daemon-reload
    write_config
    ;;
*) fail "no phase $BOOT_PHASE" ;;
esac
