# k. Upgrade and downgrade of the package while a VM runs, with apt: the released 0.2.0 .deb (docs/releases.md,
# rebuilt by scripts/build-release-deb) and this checkout's. 0.2.0 -> this one with a VM running: the VM keeps
# running, its format-1 claim is read, `virsh destroy` removes its device. This one -> 0.2.0 with a VM running:
# apt's hook (/etc/apt/apt.conf.d/20mdev-hooks) rewrites the claims in format 1, then 0.2.0's hook removes the
# device at destroy; where the rewrite cannot be made (here: a claim with a later format's field) the downgrade is
# refused with the reason, and the package, the VM and its device are untouched. Leaves this checkout's .deb installed.
# e2e: releases trixie
# e2e: release-debs 0.2.0
# Seven apt runs and four starts under TCG.
# e2e-timeout-factor: 4
[ "$INSTALL_KIND" = deb ] || fail "k-upgrade needs the .deb (INSTALL_KIND=$INSTALL_KIND)"
OLDV=0.2.0
OLD=$SHARE/release-debs/mdev-hooks_${OLDV}_all.deb
NEW=$(ls "$SHARE"/deb/mdev-hooks_*_all.deb | head -n1)
[ -f "$OLD" ] || fail "no $OLD (tests/e2e/run builds it with scripts/build-release-deb $OLDV)"
NEWV=$(dpkg-deb -f "$NEW" Version)
mkdir -p /tmp/k
cp "$OLD" "$NEW" /tmp/k/
OLD=/tmp/k/$(basename "$OLD") NEW=/tmp/k/$(basename "$NEW")

apt_k() { # NAME APT-ARGS...: apt-get -y, its output in $OUT/k-NAME.log and shown; the exit code of apt-get
    local log=$OUT/k-$1.log rc=0
    shift
    DEBIAN_FRONTEND=noninteractive apt-get -y "$@" > "$log" 2>&1 || rc=$?
    sed 's/^/    apt| /' "$log"
    return $rc
}
version() { dpkg-query -W -f='${Version}' mdev-hooks 2>/dev/null; }
claim_of() { grep -rliF -- "$1" "$STATE_DIR" --include='*.json' 2>/dev/null | head -n1 || true; }
still_runs() { # NAME PID UUID: the domain runs with the same qemu, and its device exists
    [ "$(dom_state "$1")" = paused ] || fail "$1 is '$(dom_state "$1")', expected paused"
    [ "$(qemu_pid "$1")" = "$2" ] && kill -0 "$2" || fail "$1's qemu (pid $2) is gone"
    assert_mdev "$3" mtty-2
}
hook_ok() { # the hook file keeps its name and is the installed package's
    [ -x "$HOOK" ] || fail "no executable $HOOK after the apt run"
    if [ "$(version)" = "$OLDV" ]; then  # 0.2.0's hook is the Python launcher; later ones the sh front
        [ "$(head -n1 "$HOOK")" = "#!/usr/bin/python3 -I" ] || fail "$OLDV's $HOOK starts with $(head -n1 "$HOOK")"
    else
        hook_runs /usr/bin/python3
    fi
    dpkg -S "$HOOK" > /dev/null 2>&1 || fail "$HOOK belongs to no package"
}

# --- a clean slate, then the released 0.2.0 ---
apt_k purge purge mdev-hooks || fail "apt-get purge mdev-hooks failed"
apt_k install-old install "$OLD" || fail "apt-get install $OLD failed"
[ "$(version)" = "$OLDV" ] || fail "installed version is '$(version)', expected $OLDV"
hook_ok
U1=$(new_uuid)
define_domain vm-k1 "mtty-2=$U1"
DOM1=$DOMU
start_ok vm-k1
assert_mdev "$U1" mtty-2
C1=$(claim_of "$U1")
[ -n "$C1" ] || fail "$OLDV wrote no claim of $U1 in $STATE_DIR"
if grep -q '"format"' "$C1"; then fail "$OLDV wrote a claim with a format field: $(cat "$C1")"; fi
PID1=$(qemu_pid vm-k1)
ok "$OLDV: vm-k1 runs (qemu $PID1) with $U1, claim $C1 (format 1): $(cat "$C1")"

# --- upgrade to this checkout's .deb while vm-k1 runs ---
apt_k upgrade install "$NEW" || fail "apt-get install $NEW (upgrade from $OLDV) failed"
[ "$(version)" = "$NEWV" ] || fail "installed version is '$(version)' after the upgrade, expected $NEWV"
hook_ok
still_runs vm-k1 "$PID1" "$U1"
[ "$(claim_of "$U1")" = "$C1" ] || fail "the claim of $U1 moved or vanished in the upgrade: $(claim_of "$U1")"
ok "upgraded $OLDV -> $NEWV while vm-k1 ran: same qemu, $U1 and its claim still there"
destroy_ok vm-k1
wait_until 15 "mdev $U1 removed by $NEWV's hook" eval '! mdev_exists '"$U1"
assert_ledger_clean "$U1" "$DOM1"
ok "$NEWV's hook read $OLDV's claim: destroy removed $U1, the ledger is clean"

# --- this checkout's hook writes format 2 ---
U2=$(new_uuid)
define_domain vm-k2 "mtty-2=$U2"
DOM2=$DOMU
start_ok vm-k2
PID2=$(qemu_pid vm-k2)
C2=$(claim_of "$U2")
[ -n "$C2" ] || fail "$NEWV wrote no claim of $U2"
grep -Eq '"format": *2' "$C2" || fail "$NEWV's claim has no \"format\": 2: $(cat "$C2")"
cp "$C2" "$SCRATCH/claim2"
ok "$NEWV: vm-k2 runs (qemu $PID2) with $U2, claim in format 2: $(cat "$C2")"

# --- a downgrade that cannot be made safe is refused: vm-k2's claim as a later version would write it, with a
# field format 1 cannot hold (mdev-hooks ledger downgrade refuses it; 0.2.0 would call it corrupt) ---
python3 - "$C2" <<'PY' || fail "cannot add a later format's field to $C2"
import json, sys
with open(sys.argv[1]) as f:
    data = json.load(f)
data.update(format=3, placement="numa0")
with open(sys.argv[1], "w") as f:
    json.dump(data, f)
PY
cp "$C2" "$SCRATCH/claim3"
rc=0
apt_k refused install --allow-downgrades "$OLD" || rc=$?
[ "$rc" != 0 ] || fail "apt-get install $OLD succeeded with a claim format 1 cannot hold"
grep -q "^mdev-hooks: refusing the downgrade of mdev-hooks $NEWV to $OLDV: .*placement='numa0', which format 1 cannot hold" \
    "$OUT/k-refused.log" || fail "apt's output has no 'mdev-hooks: refusing the downgrade of mdev-hooks $NEWV to $OLDV: ...' line naming the field"
grep -q "Nothing was changed" "$OUT/k-refused.log" || fail "the refusal does not say that nothing was changed"
[ "$(version)" = "$NEWV" ] || fail "installed version is '$(version)' after the refused downgrade, expected $NEWV"
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' mdev-hooks)" = "ii " ] \
    || fail "mdev-hooks is '$(dpkg-query -W -f='${db:Status-Abbrev}' mdev-hooks)' after the refusal, expected ii"
hook_ok
still_runs vm-k2 "$PID2" "$U2"
cmp -s "$C2" "$SCRATCH/claim3" || fail "the refused downgrade changed the claim $C2: $(cat "$C2")"
ok "downgrade refused with the reason; $NEWV still installed (ii), vm-k2, $U2 and its claim untouched"
cp "$SCRATCH/claim2" "$C2"   # the claim as this version wrote it

# --- the downgrade: the claims rewritten in format 1, then 0.2.0's hook removes the device ---
apt_k downgrade install --allow-downgrades "$OLD" || fail "apt-get install --allow-downgrades $OLD failed"
[ "$(version)" = "$OLDV" ] || fail "installed version is '$(version)' after the downgrade, expected $OLDV"
grep -q "^mdev-hooks: the ledger's claims are in format 1, which mdev-hooks $OLDV reads" "$OUT/k-downgrade.log" \
    || fail "apt's output does not say that the ledger was rewritten for $OLDV"
hook_ok
still_runs vm-k2 "$PID2" "$U2"
[ "$(claim_of "$U2")" = "$C2" ] || fail "the claim of $U2 moved or vanished in the downgrade: $(claim_of "$U2")"
if grep -q '"format"' "$C2"; then fail "the claim still has a format field after the downgrade: $(cat "$C2")"; fi
ok "downgraded $NEWV -> $OLDV while vm-k2 ran: same qemu, $U2, claim rewritten in format 1: $(cat "$C2")"
destroy_ok vm-k2
wait_until 15 "mdev $U2 removed by $OLDV's hook" eval '! mdev_exists '"$U2"
assert_ledger_clean "$U2" "$DOM2"
ok "$OLDV's hook read the rewritten claim: destroy removed $U2, the ledger is clean"
# apt still works with the leftover conffile of the apt hook (its script went with $NEWV)
[ -f /etc/apt/apt.conf.d/20mdev-hooks ] && note "the apt hook's conffile stays after the downgrade (obsolete, guarded)"

# --- leave the host as the scenarios after this one expect it: this checkout's .deb ---
apt_k reinstall install "$NEW" || fail "apt-get install $NEW after the downgrade failed"
[ "$(version)" = "$NEWV" ] || fail "installed version is '$(version)', expected $NEWV"
hook_ok
ok "$NEWV installed again"
