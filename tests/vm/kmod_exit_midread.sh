#!/bin/sh
# cowscope.ko: a target that exits while a reader is mid-file: the reader
# gets the data so far and then an error (ESRCH/EIO) or EOF, never stale
# data after the exit, never a crash. Then the dir of a reaped pid reads
# ESRCH or is gone.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
T=/proc/cowscope/track
fail=0
i=0
while [ $i -lt 30 ]; do
	sleep 1000 & p=$!
	echo $p >$T || { echo "track $p failed"; fail=1; break; }
	# start reading a slow view with a tiny buffer, kill the target midway
	( dd if=/proc/cowscope/$p/ptes bs=64 2>/dev/null | head -c 300 >/dev/null
	  dd if=/proc/cowscope/$p/pagemap bs=24 count=2000 2>/dev/null >/dev/null ) &
	r=$!
	kill -9 $p; wait $p 2>/dev/null
	wait $r
	if cat /proc/cowscope/$p/maps >/dev/null 2>&1; then
		echo "read of exited pid $p succeeded"; fail=1
	fi
	echo -$p >$T 2>/dev/null
	i=$((i + 1))
done
exit $fail
