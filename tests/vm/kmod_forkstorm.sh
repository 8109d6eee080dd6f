#!/bin/sh
# cowscope.ko: many short-lived processes tracked and read during a fork
# storm. Errors are expected (pids vanish); crashes and hangs are not.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
T=/proc/cowscope/track
storm() {
	i=0
	while [ $i -lt 200 ]; do
		( x=$i; : ) &
		( sh -c 'exit 0' ) &
		i=$((i + 1))
	done
	wait
}
storm & s1=$!
storm & s2=$!
n=0
while kill -0 $s1 2>/dev/null || kill -0 $s2 2>/dev/null; do
	for p in $(ls /proc | grep '^[0-9][0-9]*$' | tail -n 20); do
		echo $p >$T 2>/dev/null || continue
		cat /proc/cowscope/$p/maps /proc/cowscope/$p/summary \
			/proc/cowscope/$p/ptes >/dev/null 2>&1
		dd if=/proc/cowscope/$p/pagemap bs=240 count=10 skip=4096 \
			>/dev/null 2>&1
		n=$((n + 1))
	done
	echo $$ >$T; echo -$$ >$T	# prunes exited entries
done
wait
echo "tracked and read $n times"
# everything exited was pruned or reads ESRCH
for d in /proc/cowscope/[0-9]*; do
	[ -d "$d" ] || continue
	p=${d##*/}
	echo -$p >$T 2>/dev/null
done
exit 0
