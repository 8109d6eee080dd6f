# lab/lib/grade-vm.sh EXERCISE...: the grader's side inside the VM lab
# (scripts/grade packs the built lab into /opt/cowscope/lab and boots the VM
# once with `sh /opt/cowscope/lab/lib/grade-vm.sh 01-two-returns ...`), or
# on this machine (scripts/grade --native: LAB_ROOT names the built lab).
# Runs each exercise's check.sh in a session of its own, under a time limit
# (LAB_LIMIT seconds, default 600), and frames its output with markers the
# host parses:
#   GRADE-KERNEL <uname -r>
#   GRADE-BEGIN <exercise>
#   ... the checker's lines ...
#   GRADE-END <exercise> rc=<status> secs=<seconds>
# rc 124: the checker ran past its limit (its whole session is killed).
# Without the module (/proc/cowscope/track) nothing is run: GRADE-NO-MODULE.
# shellcheck shell=sh
lab=${LAB_ROOT:-/opt/cowscope/lab}
limit=${LAB_LIMIT:-600}
echo "GRADE-KERNEL $(uname -r)"
if [ ! -e /proc/cowscope/track ]; then
	echo "GRADE-NO-MODULE"
	exit 3
fi
for ex in "$@"; do
	work=/tmp/lab-$ex
	rm -rf "$work"
	mkdir -p "$work"
	echo "GRADE-BEGIN $ex"
	t0=$(date +%s)
	(
		cd "$work" || exit 1
		LAB_BIN=$lab/$ex/prog LAB_START_BIN=$lab/$ex/start-prog LAB_EX=$lab/$ex LAB_WORK=$work
		export LAB_BIN LAB_START_BIN LAB_EX LAB_WORK
		exec setsid sh "$lab/$ex/check.sh"
	) >"$work/check.out" 2>&1 &
	pid=$!
	rc=""
	while :; do
		# Ended: gone, or a zombie not yet waited for.
		st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
		if [ -z "$st" ] || [ "$st" = Z ]; then
			wait "$pid"
			rc=$?
			break
		fi
		if [ $(($(date +%s) - t0)) -ge "$limit" ]; then
			rc=124
			echo "ran past its ${limit} s limit: stopped" >>"$work/check.out"
			break
		fi
		sleep 0.2
	done
	# Whatever the checker left running (its program, orphans) goes with
	# its session.
	kill -KILL "-$pid" 2>/dev/null
	[ "$rc" = 124 ] && wait "$pid" 2>/dev/null
	cat "$work/check.out"
	echo "GRADE-END $ex rc=$rc secs=$(($(date +%s) - t0))"
done
exit 0
