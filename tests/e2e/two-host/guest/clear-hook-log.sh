rm -rf /var/log/lab-hook /var/log/lab-hook.log; echo "hook log cleared on $(hostname) $(date +%T.%N)"
