# Shell self-tests' two checks, for a script to source. The script sets
# $tmp (a scratch folder) and fails=0, and ends with [ $fails -eq 0 ].
#   expect EXIT WHAT COMMAND...  run COMMAND, output in $tmp/out; it must
#                                exit EXIT
#   has REGEX WHAT               the last output has a line matching the
#                                extended REGEX
# Each prints "  ok: WHAT" or "  FAIL: WHAT: ..." with the output's last 40
# lines, and counts a failure in $fails.

expect() {
	local want=$1 what=$2; shift 2
	"$@" >"$tmp/out" 2>&1
	local got=$?
	if [ "$got" = "$want" ]; then
		echo "  ok: $what (exit $got)"
	else
		echo "  FAIL: $what: expected exit $want, got $got; output:"
		sed 's/^/    | /' "$tmp/out" | tail -n 40
		fails=$((fails + 1))
	fi
}

has() {
	if grep -qE -- "$1" "$tmp/out"; then
		echo "  ok: $2"
	else
		echo "  FAIL: $2: no line matching /$1/ in:"
		sed 's/^/    | /' "$tmp/out" | tail -n 40
		fails=$((fails + 1))
	fi
}
