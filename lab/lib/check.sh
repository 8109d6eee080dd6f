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

# lab_pfns PID RANGE FILE: "vaddr pfn folio page" of each present page in
# RANGE (page: its index in RANGE, 0 for the first); fails the exercise
# when the module cannot show PID's pages.
lab_pfns() {
	{ echo "$1" >/proc/cowscope/track && echo "$2" >"/proc/cowscope/$1/range"; } 2>/dev/null ||
		lab_fail "cannot read the PTEs of process $1 from the module (/proc/cowscope/$1)" "no PTEs" "-"
	grep -v '^#' "/proc/cowscope/$1/ptes" | awk -v start="${2%%-*}" '
		function hex(s,   i, c, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
			for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
			return v }
		{ printf "%s %s %s %d\n", $1, $2, $6, (hex($1) - hex(start)) / 4096 }' >"$3"
}

# lab_pfns_across PID RANGE NAME: PID's pages of RANGE (as lab_pfns gives
# them) at the checkpoint lab_wait saw last, into $LAB_WORK/before, and
# at checkpoint NAME, into $LAB_WORK/after: what kept its PFN (reused in
# place) and what got a new one (copied) in between. Lets the program go
# on from both checkpoints.
lab_pfns_across() {
	lab_pfns "$1" "$2" "$LAB_WORK/before"
	lab_go
	lab_wait "$3" 60
	lab_pfns "$1" "$2" "$LAB_WORK/after"
	lab_go
}

# lab_range_of NAME: the "0xSTART-0xEND" the program gave lab_range(NAME,
# ...) into RANGE; fails the exercise when it gave none.
lab_range_of() {
	RANGE=$(awk -v n="$1" '$1 == "RANGE" && $2 == n { print $3; exit }' "$LAB_EVENTS")
	[ -n "$RANGE" ] || lab_fail "the program did not report its $1 (lab_range)" "no $1" \
		"lab_range(\"$1\", ...) where the starting file has it"
}
