# Exercise 3's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Reads the parent's PFNs of the buffer from the module
# (/proc/cowscope/PID/ptes) at "parent-writes" and at "parent-wrote":
# a page that kept its PFN was reused in place, one with a new PFN was
# copied. Passes when at least 973 of the 1024 pages (95%) kept their PFN
# and the program ends well (the buffer holds the parent's values).
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

lab_start
parent=$LAB_PID
lab_wait parent-writes 60
child=$CP_CHILD
lab_range_of buffer
range=$RANGE
if lab_alive "$child"; then
	echo "at \"parent-writes\" the child $child is still running; cowscope diff of the buffer:"
	lab_diff "$parent" "$child" "$range"
	echo "  $D_SHARED pages shared with the child, $D_COPIED copied by it"
else
	echo "at \"parent-writes\" the child $child has exited"
fi
lab_pfns_across "$parent" "$range" parent-wrote
lab_end
# Join by address: kept (same PFN) and copied (new PFN), even/odd pages.
awk '
	NR == FNR { pfn[$1] = $2; next }
	($1 in pfn) { k = (pfn[$1] == $2)
		kept += k; copied += !k; if ($4 % 2) { okept += k; ocopied += !k } else { ekept += k; ecopied += !k } }
	END { printf "%d %d %d %d %d %d\n", kept, copied, ekept, ecopied, okept, ocopied }
' "$LAB_WORK/before" "$LAB_WORK/after" >"$LAB_WORK/kept"
read -r kept copied ekept ecopied okept ocopied <"$LAB_WORK/kept"
echo "the parent's rewrite: $kept pages kept their PFN (reused in place), $copied got a new one (copied)"
echo "  even pages (the child wrote them): $ekept kept, $ecopied copied"
echo "  odd pages (the child never wrote them): $okept kept, $ocopied copied"
if [ "$LAB_RC" != 0 ]; then
	lab_fail "the program exited with status $LAB_RC" "$kept of 1024 kept their PFN, but the program failed" "at least 973 of 1024 (95%) keep their PFN, the program exits 0"
fi
echo "measured: $kept of 1024 pages kept their PFN through the parent's rewrite"
echo "target:   at least 973 (95%)"
[ "$kept" -ge 973 ]
