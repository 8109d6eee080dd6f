#!/bin/sh
# cowscope.ko: 100 unload/load cycles while readers of every view
# (maps, ptes, summary, pagemap, range), holders of open files (so that
# rmmod's proc teardown releases files that are still open, which are
# then read on) and track writers (track, untrack, prune of exited pids)
# run. Then the kernel log must hold no BUG, WARNING, Oops or general
# protection fault.
# COWSCOPE_RELOAD_CYCLES overrides the cycle count (default 100).
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
[ -f /lib/modules/cowscope.ko ] || { echo "no module file"; exit 77; }
cycles=${COWSCOPE_RELOAD_CYCLES:-100}
T=/proc/cowscope/track
sleep 1000 & target=$!
reader() {
	while :; do
		{ echo $target >$T; } 2>/dev/null
		cat /proc/cowscope/$target/maps /proc/cowscope/$target/ptes \
			/proc/cowscope/$target/summary >/dev/null 2>&1
		dd if=/proc/cowscope/$target/pagemap bs=2400 count=4 >/dev/null 2>&1
		# lseek + read at a high offset
		dd if=/proc/cowscope/$target/pagemap bs=2400 skip=100000 count=2 \
			>/dev/null 2>&1
		{ echo 0-7fffffffffff >/proc/cowscope/$target/range
		  cat /proc/cowscope/$target/range; } >/dev/null 2>&1
	done
}
# Opens every view, reads part of each, waits so that an rmmod can run
# while they are open, then reads on (EIO after an unload) and closes.
holder() {
	d=/proc/cowscope/$target
	while :; do
		{ echo $target >$T; } 2>/dev/null
		{
			exec 3<$d/maps 4<$d/ptes 5<$d/summary 6<$d/pagemap 7<$d/range
			head -c 64 <&3 >/dev/null
			head -c 64 <&4 >/dev/null
			head -c 64 <&5 >/dev/null
			dd bs=24 count=8 <&6 >/dev/null
			usleep 2000
			cat <&3 >/dev/null
			cat <&4 >/dev/null
			cat <&5 >/dev/null
			dd bs=2400 count=2 <&6 >/dev/null
			cat <&7 >/dev/null
			exec 3<&- 4<&- 5<&- 6<&- 7<&-
		} 2>/dev/null
	done
}
# Tracks short-lived pids and untracks them, or lets them exit so that the
# next write prunes them: both remove PID directories under cs_lock.
churner() {
	while :; do
		sleep 1000 & p=$!
		{ echo $p >$T; } 2>/dev/null
		cat /proc/cowscope/$p/maps >/dev/null 2>&1
		kill $p; wait $p 2>/dev/null
		sleep 1000 & q=$!
		{ echo $q >$T; echo -$q >$T; } 2>/dev/null
		kill $q; wait $q 2>/dev/null
	done
}
reader & r1=$!
reader & r2=$!
holder & h1=$!
holder & h2=$!
churner & c1=$!
fail=0
i=0
while [ $i -lt "$cycles" ]; do
	rmmod cowscope || { echo "rmmod failed at $i"; fail=1; break; }
	[ -e /proc/cowscope ] && { echo "/proc/cowscope left after rmmod"; fail=1; }
	insmod /lib/modules/cowscope.ko || { echo "insmod failed at $i"; fail=1; break; }
	i=$((i + 1))
done
kill $r1 $r2 $h1 $h2 $c1 2>/dev/null
wait $r1 $r2 $h1 $h2 $c1 2>/dev/null
lsmod | grep -q '^cowscope' || insmod /lib/modules/cowscope.ko
# the module still works after the storm
echo $target >$T || { echo "track after the cycles failed"; fail=1; }
grep -q '^[0-9a-f]*-[0-9a-f]* ' /proc/cowscope/$target/maps ||
	{ echo "maps after the cycles is empty"; fail=1; }
echo -$target >$T
kill $target 2>/dev/null
wait 2>/dev/null
echo "cycles=$i"
if dmesg | grep -E 'BUG|WARNING|Oops|general protection fault|Call Trace'; then
	echo "kernel log is not clean"
	fail=1
fi
exit $fail
