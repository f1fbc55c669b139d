# l. The install where no distro package fits: pip into a venv plus `mdev-hooks install --qemu-d`, as on
# RHEL/Rocky 9 (Python 3.9; structlog is in neither RHEL 9 nor EPEL 9). Run on bullseye, the release with that
# Python: the .deb is purged, the project's wheel goes into /opt/mdev-hooks with the PyPI wheels of its
# dependencies (the image's wheelhouse, no network), and the hook `mdev-hooks install` wrote creates and removes a
# managed mdev; `mdev-hooks uninstall` takes the hook away; the .deb is installed again for the scenarios after.
# e2e: releases bullseye
# e2e-timeout-factor: 3
DEB=$(ls "$SHARE"/deb/mdev-hooks_*_all.deb 2>/dev/null | head -n1)
[ -n "$DEB" ] || fail "no .deb in $SHARE/deb to purge and put back"
DEBIAN_FRONTEND=noninteractive apt-get purge -y mdev-hooks > "$OUT/l-purge.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/l-purge.log"; fail "apt-get purge mdev-hooks failed"; }
[ ! -e "$HOOK" ] || fail "$HOOK is still there after the purge"
INSTALL_KIND=venv HOOK_PY=$VENV/bin/python3
install_mdev_hooks
write_config
"$VENV/bin/python3" -c 'import structlog, filelock, lxml.etree as e; print("venv libraries: structlog",
    structlog.__version__, "filelock", filelock.__version__, "lxml", ".".join(map(str, e.LXML_VERSION[:3])))' \
    > "$SCRATCH/l-libs" || fail "the venv cannot import its libraries"
note "$(cat "$SCRATCH/l-libs")"

U=$(new_uuid)
define_domain vm-l "mtty-2=$U"
start_ok vm-l
assert_mdev "$U" mtty-2
ledger_mentions "$U" || fail "the ledger does not mention $U while vm-l runs"
assert_log mdev.created "$U"
destroy_ok vm-l
wait_until 15 "mdev $U removed" eval '! mdev_exists '"$U"
assert_log mdev.removed "$U"
assert_ledger_clean "$U" "$DOMU"
ok "the venv's hook ($(grep '^python=' "$HOOK" || head -n1 "$HOOK")) created and removed $U"

"$VENV/bin/mdev-hooks" uninstall > "$SCRATCH/l-uninstall" 2>&1 \
    || fail "mdev-hooks uninstall failed: $(cat "$SCRATCH/l-uninstall")"
[ ! -e "$HOOK" ] || fail "mdev-hooks uninstall left $HOOK"
for f in /etc/logrotate.d/mdev-hooks /usr/local/share/man/man8/mdev-hooks.8 \
    /usr/local/share/bash-completion/completions/mdev-hooks; do
    [ ! -e "$f" ] || fail "mdev-hooks uninstall left $f"
done
rm -f /usr/local/bin/mdev-hooks "$CONFIG"   # the config this scenario edited (uninstall keeps an edited one)
ok "mdev-hooks uninstall removed $HOOK, the man page, the completion and the logrotate snippet"

cp "$DEB" /tmp/
DEBIAN_FRONTEND=noninteractive apt-get install -y "/tmp/$(basename "$DEB")" > "$OUT/l-reinstall.log" 2>&1 \
    || { sed 's/^/    apt| /' "$OUT/l-reinstall.log"; fail "installing the .deb again failed"; }
hook_runs /usr/bin/python3
ok "the .deb installed again for the scenarios after this one"
