#!/bin/sh
# cowscope.ko: hostile writes to /proc/cowscope/track are refused, nothing
# changes; kernel threads and exited pids behave.
[ -e /proc/cowscope/track ] || { echo "module not loaded"; exit 77; }
fail=0
T=/proc/cowscope/track
bad() {	# bad INPUT: the write must fail and create nothing
	if printf '%s' "$1" >$T 2>/dev/null; then
		echo "accepted bad input [$1]"; fail=1
	fi
}
# (an empty write never reaches the module: the C++ test covers it)
for i in "abc" " 1" "1 " "1x" "0" "-0" "+1" "0x10" "99999999999" \
	"4194305" "--1" "1-" "$(printf '1%.0s' $(seq 1 70))"; do
	bad "$i"
done
printf '1\n\n' >$T 2>/dev/null && { echo "accepted two newlines"; fail=1; }
# a pid that does not exist
sh -c 'exit 0' & dead=$!; wait $dead
printf '%s' "$dead" >$T 2>/dev/null && { echo "tracked dead pid $dead"; fail=1; }
[ -d /proc/cowscope/$dead ] && { echo "dir for dead pid"; fail=1; }
# tracking twice is harmless; untrack; untrack again is an error
echo $$ >$T || { echo "track self failed"; fail=1; }
echo $$ >$T || { echo "track twice failed"; fail=1; }
[ -r /proc/cowscope/$$/maps ] || { echo "no maps"; fail=1; }
echo -$$ >$T || { echo "untrack failed"; fail=1; }
[ -d /proc/cowscope/$$ ] && { echo "dir remains after untrack"; fail=1; }
echo -$$ >$T 2>/dev/null && { echo "untrack of untracked accepted"; fail=1; }
# kernel thread (kthreadd is pid 2): empty views or ESRCH, never a crash
if echo 2 >$T 2>/dev/null; then
	for f in maps ptes summary; do cat /proc/cowscope/2/$f >/dev/null 2>&1; done
	dd if=/proc/cowscope/2/pagemap bs=24 count=4 2>/dev/null | wc -c
	echo -2 >$T
fi
# range: bad inputs refused
echo $$ >$T
for r in "x" "10" "20-10" "10-10" "0x-1" "1-2-3" "g-10"; do
	printf '%s' "$r" >/proc/cowscope/$$/range 2>/dev/null &&
		{ echo "range accepted [$r]"; fail=1; }
done
echo 0x1000-0x2000 >/proc/cowscope/$$/range || { echo "good range refused"; fail=1; }
grep -q '^0x1000-0x2000$' /proc/cowscope/$$/range || { echo "range not read back"; fail=1; }
echo -$$ >$T
# the cap: -ENOSPC beyond it (track the same few live pids is harmless,
# so spawn sleepers up to the cap)
pids=""
n=0
while [ $n -lt 260 ]; do
	sleep 1000 & p=$!; pids="$pids $p"
	if ! echo $p >$T 2>/dev/null; then break; fi
	n=$((n + 1))
done
[ $n -ge 200 ] && [ $n -lt 260 ] || { echo "cap not enforced (tracked $n)"; fail=1; }
kill $pids 2>/dev/null; wait 2>/dev/null
for p in $pids; do echo -$p >$T 2>/dev/null; done
exit $fail
