# Exercise 2's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Measures with `cowscope diff` the pages the child has copied: before it
# writes anything (the surprise: stack, libc's data), and in the table
# after mark_records(). Passes when the table's copied pages are the 64
# that hold a record whose flag changes (64 to 72 allowed) and every flag
# is right (the program checks them and exits 0).
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

lab_start
parent=$LAB_PID
lab_wait child-ready 60
child=$CP_PID
lab_range_of table
range=$RANGE
echo "parent $parent, child $child, table $range (1024 pages)"
echo "before the child writes anything, it has already copied (cowscope diff, per segment):"
lab_diff_segments "$parent" "$child" | sed 's/^/  /;s/$/ page(s)/'
lab_diff "$parent" "$child" "$range"
echo "  in the table: $D_COPIED copied, $D_SHARED shared"
lab_go
lab_wait child-marked 120
lab_diff "$parent" "$child" "$range"
copied=$D_COPIED shared=$D_SHARED
echo "after mark_records(): the child has copied $copied of the table's 1024 pages ($shared still shared)"
echo "the whole process now (cowscope diff $parent $child, per segment):"
lab_diff_segments "$parent" "$child" | sed 's/^/  /;s/$/ page(s) copied/'
lab_go
lab_end
if [ "$LAB_RC" != 0 ]; then
	lab_fail "the program exited with status $LAB_RC (a wrong flag?)" "$copied table pages copied, but the program failed" "every flag right (exit 0), 64-72 table pages copied"
fi
echo "measured: $copied of 1024 table pages copied by the child"
echo "target:   64 to 72 (the 64 pages holding a record whose flag changes), flags right"
[ "$copied" -ge 64 ] && [ "$copied" -le 72 ]
