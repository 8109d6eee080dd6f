#!/bin/sh
# Runs last: after the whole suite the kernel log holds no BUG, WARNING,
# Oops or general protection fault.
if dmesg | grep -E 'BUG|WARNING|Oops|general protection fault|Call Trace'; then
	echo "kernel log is not clean"
	exit 1
fi
exit 0
