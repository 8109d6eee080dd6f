# lab/lib/check.sh: helpers for the exercises' checkers (sourced by each
# check.sh, run by busybox sh inside the VM lab, as root, with the module
# loaded). The runner (grade-vm.sh) sets LAB_BIN (the exercise's program),
# LAB_EX (its folder) and LAB_WORK (an empty scratch folder).
#
# A checker prints what it saw, then its verdict in two lines the grader
# shows beside PASS/FAIL:
#   measured: <the figure>
#   target:   <what passes>
# and exits 0 (pass), 1 (fail) or 77 (this exercise does not apply to this
# kernel: the reason on a line "skip: ...").
# shellcheck shell=sh

# lab_start ARGS...: start the program ($LAB_BIN) in the background, its
# events in $LAB_WORK/events, its output in $LAB_WORK/out.
lab_start() {
	LAB_EVENTS=$LAB_WORK/events
	LAB_CONTROL=$LAB_WORK/control
	export LAB_EVENTS LAB_CONTROL
	: >"$LAB_EVENTS"
	"$LAB_BIN" "$@" >"$LAB_WORK/out" 2>&1 &
	LAB_PID=$!
}

# lab_alive PID: the process exists and is not a zombie.
lab_alive() {
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# lab_output: the program's output so far, indented (for failure reports).
lab_output() {
	echo "the program's output:"
	sed 's/^/  | /' "$LAB_WORK/out" | tail -n 20
}

# lab_fail MESSAGE: the verdict "fail" with the program's output.
lab_fail() {
	echo "$1"
	lab_output
	echo "measured: $2"
	echo "target:   $3"
	exit 1
}

# lab_wait NAME [SECONDS]: wait (polling to a deadline) until the program
# reports checkpoint NAME; sets CP_PID and CP_CHILD. Fails the exercise
# when the program exits first or the deadline passes.
lab_wait() {
	_name=$1
	_deadline=$(($(date +%s) + ${2:-120}))
	while :; do
		_line=$(grep -m1 "^CHECKPOINT $_name " "$LAB_EVENTS")
		if [ -n "$_line" ]; then
			CP_PID=$(echo "$_line" | sed 's/.* pid=\([0-9]*\).*/\1/')
			CP_CHILD=$(echo "$_line" | sed 's/.* child=\([0-9]*\).*/\1/')
			return 0
		fi
		if ! lab_alive "$LAB_PID"; then
			wait "$LAB_PID"
			lab_fail "the program exited (status $?) before checkpoint \"$_name\"" \
				"no checkpoint \"$_name\"" "the program stops at lab_checkpoint(\"$_name\", ...)"
		fi
		if [ "$(date +%s)" -ge "$_deadline" ]; then
			lab_fail "no checkpoint \"$_name\" within ${2:-120} s" \
				"no checkpoint \"$_name\"" "the program stops at lab_checkpoint(\"$_name\", ...)"
		fi
		sleep 0.05
	done
}

# lab_go [PID]: let the process standing at a checkpoint go on (default:
# the one lab_wait saw last). It made its FIFO before reporting.
lab_go() {
	echo go >"$LAB_CONTROL.${1:-$CP_PID}"
}

# lab_end: wait for the program to exit; its status in LAB_RC.
lab_end() {
	wait "$LAB_PID"
	LAB_RC=$?
}

# lab_diff PARENT CHILD [RANGE]: `cowscope diff`'s total line into
# D_SHARED, D_COPIED (pages); fails the exercise when cowscope does.
lab_diff() {
	if [ -n "${3:-}" ]; then
		cowscope diff "$1" "$2" --range "$3" --width 0 >"$LAB_WORK/diff" 2>&1
	else
		cowscope diff "$1" "$2" --width 0 >"$LAB_WORK/diff" 2>&1
	fi || lab_fail "cowscope diff $1 $2 failed: $(tail -n 2 "$LAB_WORK/diff")" "no diff" "-"
	D_SHARED=$(awk '$1 == "total" { print $2 }' "$LAB_WORK/diff")
	D_COPIED=$(awk '$1 == "total" { print $4 }' "$LAB_WORK/diff")
	[ -n "$D_COPIED" ] || lab_fail "no total line in cowscope diff's output" "no diff" "-"
}

# lab_diff_segments PARENT CHILD: "segment copied" per segment with copies.
lab_diff_segments() {
	cowscope diff "$1" "$2" --width 0 |
		awk 'NR > 2 && NF == 8 && $1 != "total" && $4 > 0 { print $1, $4 }'
}

# lab_pfns PID RANGE FILE: "vaddr pfn folio" of each present page in RANGE.
lab_pfns() {
	echo "$1" >/proc/cowscope/track || return 1
	echo "$2" >"/proc/cowscope/$1/range" || return 1
	grep -v '^#' "/proc/cowscope/$1/ptes" | awk '{ print $1, $2, $6 }' >"$3"
}

# lab_range_of NAME: the "0xSTART-0xEND" the program gave lab_range(NAME, ...).
lab_range_of() {
	awk -v n="$1" '$1 == "RANGE" && $2 == n { print $3; exit }' "$LAB_EVENTS"
}
