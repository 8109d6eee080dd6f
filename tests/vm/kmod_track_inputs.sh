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
# kernel thread (kthreadd is pid 2): tracked like any task, with empty
# views (headers only, an all-zero summary, no pagemap bytes), never a crash
if echo 2 >$T; then
	[ "$(grep -vc '^#' /proc/cowscope/2/maps)" -eq 0 ] ||
		{ echo "kthread maps not empty"; fail=1; }
	[ "$(grep -vc '^#' /proc/cowscope/2/ptes)" -eq 0 ] ||
		{ echo "kthread ptes not empty"; fail=1; }
	grep -q '^total 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0$' /proc/cowscope/2/summary ||
		{ echo "kthread summary not all zero:"; cat /proc/cowscope/2/summary; fail=1; }
	n=$(dd if=/proc/cowscope/2/pagemap bs=24 count=4 2>/dev/null | wc -c)
	[ "$n" -eq 0 ] || { echo "kthread pagemap gave $n bytes"; fail=1; }
	echo -2 >$T
else
	echo "tracking kthreadd (pid 2) refused"; fail=1
fi
# range: bad inputs refused
echo $$ >$T
for r in "x" "10" "20-10" "10-10" "0x-1" "1-2-3" "g-10"; do
	printf '%s' "$r" >/proc/cowscope/$$/range 2>/dev/null &&
		{ echo "range accepted [$r]"; fail=1; }
done
# a NUL inside: what follows it must not go unread (found by
# vmfuzz_kmod_write, tests/vm/kmod_write_fuzz.sh)
for r in '1-2\000junk' '1-2\000'; do
	printf "$r" >/proc/cowscope/$$/range 2>/dev/null &&
		{ echo "range with a NUL accepted [$r]"; fail=1; }
done
echo 0x1000-0x2000 >/proc/cowscope/$$/range || { echo "good range refused"; fail=1; }
grep -q '^0x1000-0x2000$' /proc/cowscope/$$/range || { echo "range not read back"; fail=1; }
echo -$$ >$T
# the cap: exactly COWSCOPE_MAX_TRACKED (256) pids, then -ENOSPC. Count
# what earlier tests left tracked (a track write prunes exited entries).
echo $$ >$T; echo -$$ >$T
before=$(ls -d /proc/cowscope/[0-9]* 2>/dev/null | wc -l)
pids=""
n=0 err=""
while [ $n -lt 300 ]; do
	sleep 1000 & p=$!; pids="$pids $p"
	if ! err=$( (echo $p >$T) 2>&1); then break; fi
	n=$((n + 1))
done
echo "tracked $n new pids beside $before already tracked"
[ $((n + before)) -eq 256 ] || { echo "cap not 256 (tracked $n + $before)"; fail=1; }
case "$err" in
*"No space left"*) ;;
*) echo "the write beyond the cap failed with [$err], not ENOSPC"; fail=1 ;;
esac
# an untrack frees a slot
set -- $pids
echo -$1 >$T || { echo "untrack at the cap failed"; fail=1; }
echo $1 >$T || { echo "no slot after an untrack at the cap"; fail=1; }
kill $pids 2>/dev/null; wait 2>/dev/null
for p in $pids; do echo -$p >$T 2>/dev/null; done
exit $fail
