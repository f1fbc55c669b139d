# start migrate.sh in the background inside the guest (the lab agent runs one job at a time);
# collect with: cat /tmp/bgmig.out /tmp/bgmig.rc
rm -f /tmp/bgmig.out /tmp/bgmig.rc
( P2P=${P2P:-0} EXTRA="${EXTRA:-}" bash /mnt/share/guest/migrate.sh > /tmp/bgmig.out 2>&1; echo $? > /tmp/bgmig.rc ) < /dev/null > /dev/null 2>&1 &
echo "background migration started $(date +%T.%N)"
