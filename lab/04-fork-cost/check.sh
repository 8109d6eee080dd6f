# Exercise 4's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Each program times its own forks (lab_fork). The student's program runs
# between two runs of the pristine starting program, in the same boot, and
# its fastest fork is compared with the fastest of the starting program's
# six: under emulation on a shared 2-core machine one fork's time swings by
# up to 3x with the host's load, even within one boot, and the fastest
# fork is the one the load disturbed least (medians were tried: a starting
# program's median came out 0.3x its neighbour's). Passes at 0.5x or less
# with every child having checked the whole table (the program exits 0). cowbench's 1 GiB fork of
# 4 KiB pages is shown beside it, for the README's comparison.
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

echo "transparent huge pages here: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo "not built in")"
if cowbench --heap 1G --write-ratio 0 --thp never --repeat 3 -q >"$LAB_WORK/bench" 2>&1; then
	echo "for comparison, cowbench --heap 1G --write-ratio 0 --thp never --repeat 3: fork $(awk '$1 == "fork_us" { print $2; exit }' "$LAB_WORK/bench") us (median)"
else
	echo "cowbench failed (no comparison): $(tail -n 2 "$LAB_WORK/bench")"
fi

# timed BIN NAME: run BIN to its end; its fastest fork (us) in $FASTEST,
# all of them in $FORKS; fails the exercise when BIN fails.
timed() {
	LAB_BIN=$1 lab_start
	lab_end
	cp "$LAB_EVENTS" "$LAB_WORK/events-$2"
	cp "$LAB_WORK/out" "$LAB_WORK/out-$2"
	FORKS=$(awk '$1 == "FORK" { sub(/us=/, "", $2); print $2 }' "$LAB_WORK/events-$2" | sort -n)
	n=$(echo "$FORKS" | grep -c .)
	if [ "$LAB_RC" != 0 ]; then
		lab_fail "the $2 program exited with status $LAB_RC (a child could not check the table?)" \
			"the $2 program failed" "every child checks the table, exit 0"
	fi
	[ "$n" -ge 3 ] || lab_fail "the $2 program made $n timed forks (lab_fork), not 3" "$n forks" "3 forks through lab_fork()"
	FASTEST=$(echo "$FORKS" | head -n1)
	echo "$2: forks (lab_fork) $(echo $FORKS) us, fastest $FASTEST us"
}
timed "$LAB_START_BIN" "starting program, before"
base1=$FASTEST
timed "$LAB_BIN" "your program"
mine=$FASTEST
timed "$LAB_START_BIN" "starting program, after"
base2=$FASTEST
base=$(awk -v a="$base1" -v b="$base2" 'BEGIN { print (a < b ? a : b) }')
ratio=$(awk -v a="$mine" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
echo "measured: fastest fork $mine us = ${ratio}x the starting program's fastest ($base us, before $base1, after $base2)"
echo "target:   at most 0.5x"
awk -v r="$ratio" 'BEGIN { exit !(r <= 0.5) }'
