#!/usr/bin/env bash
# The lab course's grader (scripts/grade, `make grade`) on one lab kernel:
# the reference solutions score full marks (exit 0), the starting files
# score zero (every exercise asks for a change or a prediction; exit 1),
# and the grader's own failures say what went wrong with a nonzero exit:
# an exercise that does not build (scored 0, the compiler's errors shown),
# a checker that runs past its limit, the module missing, a VM that never
# finishes, a solution patch that is missing or no longer applies (never
# graded as the starting file). Three VM boots in all (solutions, starting
# files, the hang).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kernel=${1:-6.12}
grade="$root/scripts/grade"
. "$root/scripts/lib.sh"
build=$(cowscope_build)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
n=$(ls -d "$root"/lab/[0-9][0-9]-*/ | wc -l)

# expect EXIT WHAT COMMAND... and has REGEX WHAT (tests/lib/expect.sh)
. "$root/tests/lib/expect.sh"

echo "lab grader test on $kernel ($n exercises):"

# The grader's own errors first (no VM, or a short one).
mkdir -p "$tmp/broken/01-two-returns"
printf '#include "lab.h"\nint main(void) { return undeclared_thing; }\n' >"$tmp/broken/01-two-returns/orphans.c"
expect 1 "an exercise that does not build scores 0" "$grade" --kernel "$kernel" --ex 1 --source "$tmp/broken"
has 'does not build' "it says the exercise does not build"
has "undeclared_thing" "it shows the compiler's error"
has '^score: 0/1$' "score 0/1"

# The reference solutions are patches (lab/solutions/NN-name.patch): each
# applies to its starting file and shows as whole files; one that no
# longer applies, changes none of its files or is missing stops the grader
# before anything is built.
for d in "$root"/lab/[0-9][0-9]-*/; do
	ex=$(basename "$d")
	expect 0 "--show-solution ${ex%%-*} applies lab/solutions/$ex.patch" "$grade" --show-solution "${ex%%-*}"
	has "^==> lab/$ex/[^ ]+, as the reference solution" "it prints the solved file"
done
mkdir -p "$tmp/stale"
# The solution's patch with one line it removes changed, as if the
# starting file had moved on since the patch was made.
sed 's/^-\t\tr\[i\]\.flag = /-\t\tr[i].flag |= /' "$root/lab/solutions/02-what-copies.patch" >"$tmp/stale/02-what-copies.patch"
if cmp -s "$root/lab/solutions/02-what-copies.patch" "$tmp/stale/02-what-copies.patch"; then
	echo "  FAIL: the stale patch for exercise 2 could not be made (lab/solutions/02-what-copies.patch changed?)"
	fails=$((fails + 1))
fi
expect 3 "a patch that no longer applies stops the grader" "$grade" --kernel "$kernel" --ex 2 --patches "$tmp/stale"
has 'stale/02-what-copies.patch does not apply to lab/02-what-copies/' "it names the patch and the exercise"
has 'FAILED' "it shows patch's own words"
if grep -q '^score:' "$tmp/out"; then
	echo "  FAIL: a patch that does not apply was graded:"; sed 's/^/    | /' "$tmp/out"; fails=$((fails + 1))
else
	echo "  ok: nothing graded"
fi
mkdir -p "$tmp/elsewhere"
printf -- '--- /dev/null\n+++ b/lab/03-reuse/extra.c\n@@ -0,0 +1 @@\n+int extra;\n' >"$tmp/elsewhere/03-reuse.patch"
expect 3 "a patch that changes none of the exercise's files stops the grader" "$grade" --kernel "$kernel" --ex 3 --patches "$tmp/elsewhere"
has 'changes none of lab/03-reuse/' "it says the patch changes none of them"
mkdir -p "$tmp/partial"
cp "$root/lab/solutions/02-what-copies.patch" "$tmp/partial/"
expect 3 "a missing patch stops the grader" "$grade" --kernel "$kernel" --ex 2,3 --patches "$tmp/partial"
has 'no patch for 03-reuse' "it names the exercise without a patch"

mkdir -p "$tmp/nomod"
ln -s "$build/bin" "$tmp/nomod/bin"
BUILD="$tmp/nomod" expect 3 "the module missing stops the grader" "$grade" --kernel "$kernel" --ex 1
has "module for $kernel is missing" "it names the missing module and how to build it"

if [ ! -e /proc/cowscope/track ]; then
	expect 3 "--native without the module (or without root) stops the grader" "$grade" --native --ex 1
	has 'needs root|module is not loaded' "it says what is missing"
else
	echo "  skip: --native's error path (the module is loaded on this machine)"
fi

expect 3 "a VM that never finishes stops the grader" "$grade" --kernel "$kernel" --ex 1 --timeout 5
has 'the VM never finished' "it says the VM never finished"

mkdir -p "$tmp/hang/01-two-returns"
printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' >"$tmp/hang/01-two-returns/orphans.c"
expect 1 "a checker past its limit fails its exercise" "$grade" --kernel "$kernel" --ex 1 --limit 10 --source "$tmp/hang"
has 'ran past the 10 s limit' "it says the checker ran past its limit"

expect 2 "an unknown exercise is a usage error" "$grade" --kernel "$kernel" --ex 42
expect 2 "a bad --kernel is a usage error" "$grade" --kernel 5.10

# The reference solutions: full marks.
expect 0 "the reference solutions score full marks" "$grade" --kernel "$kernel" --solutions
sed 's/^/    | /' "$tmp/out" | grep -E '^    \| ([0-9][0-9]-|    measured|score)'
has "^score: ([0-9]+)/\\1\$" "score N/N"

# The starting files: zero.
expect 1 "the starting files score zero" "$grade" --kernel "$kernel"
sed 's/^/    | /' "$tmp/out" | grep -E '^    \| ([0-9][0-9]-|    measured|score)'
has '^score: 0/[1-9][0-9]*$' "score 0/M"

[ $fails -eq 0 ] && echo "lab grader test: all passed" || echo "lab grader test: $fails failed"
[ $fails -eq 0 ]
