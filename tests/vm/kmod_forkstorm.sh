#!/bin/sh
# cowscope.ko: many short-lived processes tracked and read during a fork
# storm. Errors are expected (pids vanish mid-read: ESRCH); crashes, hangs
# and leaked entries are not. Checks that reads happened and succeeded
# while the storm ran, that every view of a live process it read was
# well-formed, and that no entry of an exited process survives a prune.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
T=/proc/cowscope/track
fail=0
storm() {
	i=0
	while [ $i -lt 200 ]; do
		( x=$i; : ) &
		( sh -c 'exit 0' ) &
		i=$((i + 1))
	done
	wait
}
out=/tmp/forkstorm.$$
storm & s1=$!
storm & s2=$!
tracked=0 ok=0 bad=0
while kill -0 $s1 2>/dev/null || kill -0 $s2 2>/dev/null; do
	for p in $(ls /proc 2>/dev/null | grep '^[0-9][0-9]*$' | tail -n 20); do
		echo $p >$T 2>/dev/null || continue
		tracked=$((tracked + 1))
		cat /proc/cowscope/$p/maps /proc/cowscope/$p/ptes >/dev/null 2>&1
		dd if=/proc/cowscope/$p/pagemap bs=240 count=10 skip=4096 \
			>/dev/null 2>&1
		# a summary read that succeeds must be whole: its header, then
		# the 10 labels and "total", each with 16 numbers
		if cat /proc/cowscope/$p/summary >$out 2>/dev/null; then
			if head -n 1 $out | grep -q '^# label present' &&
			   [ "$(grep -c '^[a-z][a-z-]*\( [0-9][0-9]*\)\{16\}$' $out)" -eq 11 ] &&
			   [ "$(wc -l <$out)" -eq 12 ] && tail -n 1 $out | grep -q '^total '; then
				ok=$((ok + 1))
			else
				bad=$((bad + 1))
				echo "malformed summary of $p:"; cat $out
			fi
		fi
	done
	echo $$ >$T; echo -$$ >$T	# prunes exited entries
done
wait
rm -f $out
echo "tracked $tracked times, $ok whole summaries read, $bad malformed"
[ $tracked -gt 0 ] || { echo "nothing was tracked during the storm"; fail=1; }
[ $ok -gt 0 ] || { echo "no summary was read during the storm"; fail=1; }
[ $bad -eq 0 ] || fail=1
# every process of the storm has exited: a prune (any track write) must
# leave no directory of an exited pid behind
echo $$ >$T; echo -$$ >$T
for d in /proc/cowscope/[0-9]*; do
	[ -d "$d" ] || continue
	p=${d##*/}
	if [ ! -d /proc/$p ]; then
		echo "entry of exited pid $p survived a prune"; fail=1
	fi
	echo -$p >$T 2>/dev/null
done
exit $fail
