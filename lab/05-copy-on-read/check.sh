# Exercise 5's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Runs the server under cowtrace (eBPF: every copy-on-write fault of the
# server and of each worker it forks, with the user stacks that caused
# them: --sites) and counts each worker's copies. Passes when every worker
# copied at most 64 pages and all answered right (the server reaches its
# "all-served" checkpoint).
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

LAB_EVENTS=$LAB_WORK/events
export LAB_EVENTS
unset LAB_CONTROL
: >"$LAB_EVENTS"
cowtrace --sites 3 -- "$LAB_BIN" >"$LAB_WORK/out" 2>&1
trc=$?
workers=$(awk '$1 == "CHECKPOINT" && $2 == "worker-served" { sub(/pid=/, "", $3); print $3 }' "$LAB_EVENTS")
if ! grep -q '^CHECKPOINT all-served ' "$LAB_EVENTS"; then
	lab_fail "the server did not finish (cowtrace exit $trc): a worker answered wrong or died" \
		"the server failed" "every worker answers right, the server reaches \"all-served\""
fi
[ -n "$workers" ] || lab_fail "no worker reported (lab_checkpoint(\"worker-served\"))" "no workers" "2 workers"
echo "cowtrace's table (COW_COPIES: pages copied on write; * exited):"
awk '$1 == "PID" && $2 == "PPID" { on = 1 } on && NF >= 7 { print "  " $0 } on && NF < 7 { exit }' "$LAB_WORK/out"
worst=0 list=""
for w in $workers; do
	c=$(awk -v p="$w" '{ id = $1; sub(/^\*/, "", id) } id == p && NF >= 7 { print $5; exit }' "$LAB_WORK/out")
	[ -n "$c" ] || lab_fail "cowtrace has no line for worker $w" "no count for worker $w" "-"
	list="$list $w:$c"
	[ "$c" -gt "$worst" ] && worst=$c
done
first=$(echo "$workers" | head -n1)
echo "where worker $first copied (cowtrace --sites, the top 3):"
awk -v p="copy sites of pid $first " 'index($0, p) == 1 { on = 1; print "  " $0; next }
	on && /^(copy|reuse) sites/ { exit } on { print "  " $0 }' "$LAB_WORK/out" | head -n 16
echo "measured: the workers copied (pid:pages)$list"
echo "target:   at most 64 pages each (the arena is 512)"
[ "$worst" -le 64 ]
