# i. The project as installed (the .deb: it removes and purges the package, then installs it again for j).
# Every release: `man mdev-hooks` renders, bash-completion's own loader finds the completion and it answers for
# commands, domains, parents and types, logrotate --force rotates the log and the next start writes the new file,
# and with log_file = "journal" journalctl -t mdev-hooks shows the hook's events as structured fields.
# the .deb (every release): while a domain with a managed mdev runs, apt remove names it and says how its device
# will be cleaned up, leaves it running with its device and takes only our files; apt purge leaves no file of ours
# but the ledger's claim of that running device (said on the terminal); after the VM stops the device outlives
# the hook, until a reinstall's `mdev-hooks gc` removes it; a purge without claims leaves nothing at all.
# MDEV_HOOKS_INSTALL=venv (pip + `mdev-hooks install`, whose extras are checked above): no package to remove.
# Four apt runs and three starts under TCG (about 9 min on a host loaded by other guests): 3 x the default.
# e2e-timeout-factor: 3

# --- man page ---
man -P cat mdev-hooks > "$SCRATCH/man.txt" 2> "$SCRATCH/man.err" || fail "man mdev-hooks failed: $(cat "$SCRATCH/man.err")"
for section in NAME SYNOPSIS DESCRIPTION COMMANDS CONFIGURATION FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -qx "$section" "$SCRATCH/man.txt" || fail "man mdev-hooks has no $section section ($(man -w mdev-hooks))"
done
grep -q '^ *mdev-hooks - ' "$SCRATCH/man.txt" || fail "man mdev-hooks has no 'mdev-hooks - ...' NAME line"
grep -qF "$HOOK" "$SCRATCH/man.txt" || grep -qF "qemu.d/50-mdev-hooks" "$SCRATCH/man.txt" \
    || fail "man mdev-hooks does not name the hook's file"
ok "man mdev-hooks renders from $(man -w mdev-hooks): $(wc -l < "$SCRATCH/man.txt") lines, NAME ... SEE ALSO"

# --- bash completion, found by bash-completion's own loader (complete -D), as an interactive shell does ---
# complete LINE: the candidates bash would offer for LINE (the cursor at its end), one per line
complete_line() {
    bash -c '. /usr/share/bash-completion/bash_completion
        loader=$(complete -p -D 2>/dev/null | sed -n "s/.*-F \([^ ]*\).*/\1/p")
        [ -n "$loader" ] || { echo "no default completion loader (complete -D)" >&2; exit 2; }
        "$loader" mdev-hooks "" "" || true
        fn=$(complete -p mdev-hooks 2>/dev/null | sed -n "s/.*-F \([^ ]*\).*/\1/p")
        [ -n "$fn" ] || { echo "bash-completion found no completion for mdev-hooks" >&2; exit 3; }
        COMP_LINE=$1 COMP_POINT=${#1}
        read -ra COMP_WORDS <<< "$1"
        [[ $1 == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        "$fn" mdev-hooks "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$1" 2> "$SCRATCH/comp.err" \
        || fail "completing '$1' failed: $(cat "$SCRATCH/comp.err")"
}
assert_completes() { # LINE EXPECTED... : the candidates for LINE are exactly EXPECTED (sorted)
    local line=$1 got want
    shift
    got=$(complete_line "$line" | sort | xargs)
    want=$(printf '%s\n' "$@" | sort | xargs)
    [ "$got" = "$want" ] || fail "completing '$line<Tab>' offers '$got', expected '$want'"
    ok "'$line<Tab>' -> $got"
}
U=$(new_uuid)
define_domain vm-i "mtty-2=$U"
DOM_I=$DOMU
assert_completes "mdev-hooks pl" plan
assert_completes "mdev-hooks add vm-" vm-i
assert_completes "mdev-hooks add --parent " mtty
assert_completes "mdev-hooks add --parent mtty --type " mtty-1 mtty-2
note "completion: $(complete_line 'mdev-hooks ' | xargs)"

# --- logrotate: a rename, no signal; the hook opens its file anew at every run ---
ROT=/etc/logrotate.d/mdev-hooks
[ -f "$ROT" ] || fail "no logrotate snippet $ROT"
if [ ! -s "$HOOK_LOG" ]; then start_ok vm-i; destroy_ok vm-i; fi
[ -s "$HOOK_LOG" ] || fail "$HOOK_LOG is empty: nothing to rotate"
BEFORE=$(wc -l < "$HOOK_LOG")
rm -f "$HOOK_LOG".[0-9]*
logrotate --force "$ROT" || fail "logrotate --force $ROT failed (rc $?)"
[ -f "$HOOK_LOG.1" ] || fail "logrotate --force did not rotate $HOOK_LOG to $HOOK_LOG.1: $(ls /var/log | tr "\n" " ")"
[ "$(wc -l < "$HOOK_LOG.1")" = "$BEFORE" ] || fail "$HOOK_LOG.1 has $(wc -l < "$HOOK_LOG.1") lines, expected $BEFORE"
if [ -s "$HOOK_LOG" ]; then fail "$HOOK_LOG is not empty right after the rotation"; fi
ok "logrotate --force: $BEFORE lines moved to $HOOK_LOG.1, $(stat -c '%a %U' "$HOOK_LOG" 2>/dev/null || echo no) new $HOOK_LOG"
start_ok vm-i
assert_log mdev.created "$U"
if grep -qiF "$U" "$HOOK_LOG.1"; then fail "the start after the rotation wrote to the rotated $HOOK_LOG.1"; fi
ok "the next start wrote its events to the new $HOOK_LOG, none to $HOOK_LOG.1"

# --- log_file = "journal": the events in the journal, with the event and its fields as journal fields ---
write_config 'log_file = "journal"'
JSINCE=$(date '+%Y-%m-%d %H:%M:%S')
LINES_BEFORE=$(wc -l < "$HOOK_LOG")
destroy_ok vm-i
wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
start_ok vm-i
assert_mdev "$U" mtty-2
[ "$(wc -l < "$HOOK_LOG")" = "$LINES_BEFORE" ] || fail "with log_file = \"journal\" the hook still wrote $HOOK_LOG"
journalctl --sync 2>/dev/null || true
journalctl -t mdev-hooks --since "$JSINCE" --no-pager > "$SCRATCH/journal.txt"
for ev in mdev.removed mdev.created; do
    grep -F " $ev " "$SCRATCH/journal.txt" | grep -qiF "$U" \
        || fail "journalctl -t mdev-hooks shows no $ev for $U: $(tail -n 5 "$SCRATCH/journal.txt")"
done
ok "journalctl -t mdev-hooks: $(grep -F " mdev.created " "$SCRATCH/journal.txt" | grep -iF "$U" | head -n1 | cut -c1-160)"
journalctl -t mdev-hooks --since "$JSINCE" -o json --no-pager > "$SCRATCH/journal.json"
python3 - "$SCRATCH/journal.json" "$U" <<'PY' || fail "journalctl -o json lacks the events as structured fields (above)"
import json, sys
path, uuid = sys.argv[1], sys.argv[2].lower()
events = {}
for line in open(path, encoding="utf-8"):
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") != "mdev-hooks":
        continue
    if any(isinstance(v, str) and v.lower() == uuid for k, v in e.items() if k != "MESSAGE"):
        events.setdefault(e.get("EVENT"), e)
for ev in ("mdev.created", "mdev.removed"):
    if ev not in events:
        print(f"  no entry with EVENT={ev} and a field equal to {uuid} (EVENTs seen: {sorted(map(str, events))})")
        sys.exit(1)
e = events["mdev.created"]
print("  ok: journal fields of mdev.created: "
      + ", ".join(f"{k}={e[k]}" for k in sorted(e) if not k.startswith("_") and k not in ("MESSAGE", "__CURSOR")))
PY

if [ "$INSTALL_KIND" != deb ]; then
    echo "apt remove/purge: not applicable on $RELEASE (installed with pip + mdev-hooks install, not the .deb)" \
        > "$OUT/i-package.notes"
    note "$(cat "$OUT/i-package.notes")"
    destroy_ok vm-i
    wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
    return 0
fi

# --- apt remove while vm-i runs with its managed mdev ---
PID=$(qemu_pid vm-i)
dpkg -L mdev-hooks > "$SCRATCH/files"
dpkg-query -W -f='${Conffiles}\n' mdev-hooks | awk 'NF { print $1 }' > "$SCRATCH/conffiles"
[ -s "$SCRATCH/conffiles" ] || fail "the package has no conffile"
LEDGER=$(ls "$STATE_DIR"/*.json)
note "ledger before apt remove: $LEDGER"
DEBIAN_FRONTEND=noninteractive apt-get remove -y mdev-hooks > "$OUT/apt-remove.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/apt-remove.log"; fail "apt-get remove mdev-hooks failed"; }
sed 's/^/    apt| /' "$OUT/apt-remove.log"
grep -qF "vm-i ($DOM_I): mdev $U (type mtty-2 on mtty)" "$OUT/apt-remove.log" \
    || fail "apt remove's output does not name the running vm-i ($DOM_I) and its mdev $U"
grep -qF 'reinstall mdev-hooks and run `mdev-hooks gc`' "$OUT/apt-remove.log" \
    || fail "apt remove's output does not say that a reinstall's mdev-hooks gc cleans the device up"
grep -qF "echo 1 > /sys/bus/mdev/devices/$U/remove" "$OUT/apt-remove.log" \
    || fail "apt remove's output does not give the command that removes $U by hand"
ok "apt remove named vm-i and its device, and how the device will be cleaned up"
[ "$(dom_state vm-i)" = paused ] || fail "vm-i is '$(dom_state vm-i)' after apt remove"
[ "$(qemu_pid vm-i)" = "$PID" ] && kill -0 "$PID" || fail "vm-i's qemu (pid $PID) is gone after apt remove"
assert_mdev "$U" mtty-2
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' mdev-hooks)" = "rc " ] \
    || fail "mdev-hooks is '$(dpkg-query -W -f='${db:Status-Abbrev}' mdev-hooks)' after apt remove, expected rc"
left=()
while read -r f; do
    if grep -qxF "$f" "$SCRATCH/conffiles"; then
        [ -f "$f" ] || fail "apt remove took the conffile $f"
    elif [ ! -d "$f" ] && [ -e "$f" ]; then
        left+=("$f")
    fi
done < "$SCRATCH/files"
[ ${#left[@]} -eq 0 ] || fail "apt remove left files of the package: ${left[*]}"
[ ! -e "$HOOK" ] || fail "apt remove left $HOOK"
! command -v mdev-hooks > /dev/null || fail "mdev-hooks is still on PATH: $(command -v mdev-hooks)"
if [ -d /usr/lib/python3/dist-packages/mdev_hooks ]; then fail "apt remove left /usr/lib/python3/dist-packages/mdev_hooks"; fi
[ -f "$LEDGER" ] || fail "apt remove took the ledger's claim $LEDGER"
ok "after apt remove: vm-i runs (qemu $PID), $U exists, $(wc -l < "$SCRATCH/files") paths of the package gone but" \
    "the conffiles $(xargs < "$SCRATCH/conffiles") and the ledger $LEDGER"

# --- apt purge while vm-i still runs ---
DEBIAN_FRONTEND=noninteractive apt-get purge -y mdev-hooks > "$OUT/apt-purge.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/apt-purge.log"; fail "apt-get purge mdev-hooks failed"; }
sed 's/^/    apt| /' "$OUT/apt-purge.log"
# no_file_of_ours_left ALLOWED...: nothing the package installed or the hook wrote exists, except ALLOWED
no_file_of_ours_left() {
    local f left=() dirs=() real=()
    if dpkg-query -W mdev-hooks > /dev/null 2>&1; then fail "dpkg still knows mdev-hooks: $(dpkg -l mdev-hooks | tail -n1)"; fi
    while read -r f; do
        [ "$f" != /. ] && [ -e "$f" ] || continue  # dpkg -L starts with "/."
        if [ -d "$f" ]; then dirs+=("$f"); else left+=("$f"); fi
    done < "$SCRATCH/files"
    # a directory stays only if another package owns it too, by its own path or (merged /usr: /lib/systemd/system
    # is /usr/lib/systemd/system) by its real path; one dpkg -S for all: "pkg, pkg: /path" lines
    if [ ${#dirs[@]} -gt 0 ]; then
        mapfile -t real < <(readlink -f -- "${dirs[@]}")
        dpkg -S -- "${dirs[@]}" "${real[@]}" 2> /dev/null | sed 's/.*: //' | sort -u > "$SCRATCH/owned" || true
        for f in "${dirs[@]}"; do
            grep -qxF -- "$f" "$SCRATCH/owned" || grep -qxF -- "$(readlink -f -- "$f")" "$SCRATCH/owned" \
                || left+=("$f/")
        done
    fi
    for f in /etc/mdev-hooks "$HOOK" "$HOOK_LOG" "$HOOK_LOG".[0-9]* /usr/lib/python3/dist-packages/mdev_hooks \
        /usr/share/man/man8/mdev-hooks.8.gz /usr/share/bash-completion/completions/mdev-hooks \
        /etc/logrotate.d/mdev-hooks /lib/systemd/system/libvirtd.service.d/mdev-hooks.conf \
        /lib/systemd/system/virtqemud.service.d/mdev-hooks.conf /usr/libexec/mdev-hooks /run/mdev-hooks.dpkg \
        "$STATE_DIR" /run/lock/mdev-hooks /var/lib/mdev-hooks; do
        [ -e "$f" ] || continue
        printf '%s\n' "$@" | grep -qxF "$f" || left+=("$f")
    done
    [ ${#left[@]} -eq 0 ] || fail "files of ours left after apt purge: ${left[*]}"
}
grep -qF "kept $STATE_DIR: the ledger still names 1 device(s)" "$OUT/apt-purge.log" \
    || fail "apt purge did not say that it kept the ledger of the running vm-i's device"
no_file_of_ours_left "$STATE_DIR"
[ "$(find "$STATE_DIR" -mindepth 1)" = "$LEDGER" ] \
    || fail "apt purge kept more than the claim of the running device in $STATE_DIR: $(find "$STATE_DIR" -mindepth 1 -printf "%p ")"
[ "$(qemu_pid vm-i)" = "$PID" ] && kill -0 "$PID" || fail "vm-i's qemu (pid $PID) is gone after apt purge"
assert_mdev "$U" mtty-2
ok "after apt purge: vm-i runs, $U exists, no file of ours is left but the ledger's claim of $U (said on the terminal)"

# --- the VM stops: without the hook its device stays, until a reinstall's mdev-hooks gc ---
destroy_ok vm-i
sleep 2
mdev_exists "$U" || fail "$U was removed when vm-i stopped, with no hook installed"
ok "$U outlived the hook: it still exists after vm-i stopped"
DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/mdev-hooks_*_all.deb > "$OUT/apt-reinstall.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/apt-reinstall.log"; fail "reinstalling the .deb failed"; }
grep '^mdev-hooks: ' "$OUT/apt-reinstall.log" | sed 's/^/    apt| /'
mdev-hooks gc > "$SCRATCH/gc.out" 2>&1 || fail "mdev-hooks gc failed (rc $?): $(cat "$SCRATCH/gc.out")"
sed 's/^/    gc| /' "$SCRATCH/gc.out"
assert_no_mdev "$U"
ok "the reinstalled mdev-hooks' gc removed $U"

# --- a purge with no device claimed leaves nothing at all ---
DEBIAN_FRONTEND=noninteractive apt-get purge -y mdev-hooks > "$OUT/apt-purge2.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/apt-purge2.log"; fail "the second apt-get purge failed"; }
grep '^mdev-hooks: ' "$OUT/apt-purge2.log" | sed 's/^/    apt| /' || true
no_file_of_ours_left
ok "apt purge without claims: no file of ours left ($(wc -l < "$SCRATCH/files") package paths, config, logs, ledger, locks)"

# --- leave the host as the scenarios after this one expect it: the package installed again ---
DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/mdev-hooks_*_all.deb > "$OUT/apt-reinstall2.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/apt-reinstall2.log"; fail "reinstalling the .deb after the purge failed"; }
[ -x "$HOOK" ] || fail "the reinstalled package has no hook $HOOK"
ok "the .deb installed again for the scenarios after this one (the host boot)"
