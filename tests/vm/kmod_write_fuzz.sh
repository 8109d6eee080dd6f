#!/bin/sh
# cowscope.ko's write interface fuzzed (tests/vm/vmfuzz_kmod_write.cpp):
# random and boundary writes to /proc/cowscope/track and every PID/range,
# every view read at once, while tracked processes fork, exec and exit, for
# a fixed time (20 s here; by hand: scripts/vm --kernel 6.12-debug run
# "vmfuzz_kmod_write --seconds 600 [--seed S]"). Fails on a write or read
# answered against kmod/README.md's contract, and on any kernel report
# (KASAN, lockdep, WARNING, BUG, Oops) the run added to the log. The seed
# is printed first: a failing run reruns with --seed.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
fuzzer=/opt/cowscope/bin/vmfuzz_kmod_write
[ -x $fuzzer ] || { echo "no $fuzzer in the image"; exit 1; }
before=$(dmesg | wc -l) || { echo "dmesg failed"; exit 1; }
$fuzzer --seconds 20
rc=$?
new=$(dmesg | tail -n +$((before + 1)))
if echo "$new" | grep -E 'BUG|WARNING|Oops|KASAN|UBSAN|lockdep|possible recursive locking|circular locking|list_add corruption|list_del corruption|general protection fault|Call Trace'; then
	echo "the kernel reported the above during the fuzz run"
	exit 1
fi
exit $rc
