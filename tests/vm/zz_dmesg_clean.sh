#!/bin/sh
# Runs last: after the whole suite the kernel log holds no BUG, WARNING,
# Oops or general protection fault. The log must be readable and hold the
# boot (an unreadable log is a failure, not a clean one).
log=$(dmesg) || { echo "dmesg failed"; exit 1; }
echo "$log" | grep -q 'Linux version' || { echo "kernel log has no boot banner: not the whole log"; exit 1; }
if echo "$log" | grep -E 'BUG|WARNING|Oops|general protection fault|Call Trace'; then
	echo "kernel log is not clean"
	exit 1
fi
exit 0
