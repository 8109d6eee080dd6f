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
range=$(lab_range_of buffer)
[ -n "$range" ] || lab_fail "the program did not report its buffer (lab_range)" "no buffer" "lab_range(\"buffer\", ...)"
if lab_alive "$child"; then
	echo "at \"parent-writes\" the child $child is still running; cowscope diff of the buffer:"
	lab_diff "$parent" "$child" "$range"
	echo "  $D_SHARED pages shared with the child, $D_COPIED copied by it"
else
	echo "at \"parent-writes\" the child $child has exited"
fi
lab_pfns "$parent" "$range" "$LAB_WORK/before" || lab_fail "cannot read the parent's PFNs from the module" "no PFNs" "-"
lab_go
lab_wait parent-wrote 60
lab_pfns "$parent" "$range" "$LAB_WORK/after" || lab_fail "cannot read the parent's PFNs from the module" "no PFNs" "-"
lab_go
lab_end
# Join by address: kept (same PFN) and copied (new PFN), even/odd pages.
start=$(echo "$range" | cut -d- -f1)
awk -v start="$start" '
	function hex(s,   i, c, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
		for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
		return v }
	NR == FNR { pfn[$1] = $2; next }
	($1 in pfn) { page = (hex($1) - hex(start)) / 4096; k = (pfn[$1] == $2)
		kept += k; copied += !k; if (page % 2) { okept += k; ocopied += !k } else { ekept += k; ecopied += !k } }
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
