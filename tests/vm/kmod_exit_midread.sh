#!/bin/sh
# cowscope.ko: a target that exits while a reader is mid-file: the reader
# gets well-formed data so far and then an error (ESRCH/EIO) or EOF, never
# a crash; a read started after the target was reaped returns no data at
# all (never stale data after the exit), and the dir of a reaped pid reads
# ESRCH or is gone.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
T=/proc/cowscope/track
tmp=/tmp/midread.$$
mkdir -p $tmp
fail=0
i=0 mid=0
while [ $i -lt 30 ]; do
	sleep 1000 & p=$!
	echo $p >$T || { echo "track $p failed"; fail=1; break; }
	# start reading a slow view with a tiny buffer, kill the target midway
	( dd if=/proc/cowscope/$p/ptes bs=64 2>/dev/null | head -c 300 >$tmp/ptes
	  dd if=/proc/cowscope/$p/pagemap bs=24 count=2000 skip=$((0x400000 / 4096)) \
		2>/dev/null >$tmp/pm ) &
	r=$!
	kill -9 $p; wait $p 2>/dev/null
	wait $r
	# what the reader got is whole lines of the ptes format (the last one
	# may be cut by head) and whole 24-byte records
	head -n 1 $tmp/ptes | grep -q '^# vaddr pfn flags ref map folio$' ||
		[ ! -s $tmp/ptes ] || { echo "pid $p: ptes began with: $(head -n 1 $tmp/ptes)"; fail=1; }
	if [ "$(sed '1d;$d' $tmp/ptes | grep -cv '^0x[0-9a-f]* [0-9a-f]* [-WDAUHaxzkfs]* [0-9]* ~\{0,1\}[0-9]* [0-9]*[KM]$')" -ne 0 ]; then
		echo "pid $p: malformed ptes lines:"; sed '1d;$d' $tmp/ptes; fail=1
	fi
	sz=$(wc -c <$tmp/pm)
	[ $((sz % 24)) -eq 0 ] || { echo "pid $p: pagemap gave $sz bytes, not whole records"; fail=1; }
	[ -s $tmp/ptes ] && mid=$((mid + 1))
	# reaped: a new read returns nothing, whatever the view
	for f in maps ptes summary pagemap; do
		if [ -e /proc/cowscope/$p/$f ]; then
			n=$(cat /proc/cowscope/$p/$f 2>/dev/null | wc -c)
			[ "$n" -eq 0 ] || { echo "read of $f of exited pid $p gave $n bytes"; fail=1; }
			cat /proc/cowscope/$p/$f >/dev/null 2>&1 &&
				{ echo "read of $f of exited pid $p succeeded"; fail=1; }
		fi
	done
	echo -$p >$T 2>/dev/null
	i=$((i + 1))
done
echo "30 targets killed mid-read; $mid readers had data before the kill"
rm -rf $tmp
exit $fail
