# Exercise 6's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Allows 64 KiB multi-size THP for MADV_HUGEPAGE mappings while the
# program runs (restored after), reads every page of the buffer from the
# module at each checkpoint, and compares the student's predictions.txt
# with what it saw: questions 1-3, and 4-5 for the running kernel (6.12 or
# 7.3; other kernels skip the exercise). Passes when every prediction
# matches (counts within 5% or 1 page, folio sizes exactly).
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

release=$(uname -r)
kernel=$(echo "$release" | cut -d. -f1,2)
ctl=/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled
if [ ! -w "$ctl" ]; then
	echo "skip: $release has no 64 KiB multi-size THP ($ctl): run it on 6.12 or 7.3"
	exit 77
fi
case "$kernel" in
6.12|7.3) ;;
*) echo "skip: the predictions are for 6.12 and 7.3, this is $release"; exit 77 ;;
esac
saved=$(sed 's/.*\[\(.*\)\].*/\1/' "$ctl")
trap 'echo "$saved" >"$ctl"' EXIT
echo madvise >"$ctl"

# folio_kib SIZE: 4K -> 4, 64K -> 64, 2M -> 2048
kib() { awk '{ v = $1 + 0; if ($1 ~ /M$/) v *= 1024; print v }'; }
# the most common folio size (KiB) of a "vaddr pfn folio" file
mode_folio() { awk '{ n[$3]++ } END { for (f in n) if (n[f] > best) { best = n[f]; m = f } print m }' "$1" | kib; }

lab_start
parent=$LAB_PID
lab_wait populated 60
lab_range_of buffer
range=$RANGE
lab_pfns "$parent" "$range" "$LAB_WORK/populated"
in64=$(awk '$3 == "64K"' "$LAB_WORK/populated" | wc -l)
echo "populated: $in64 of 256 pages in 64 KiB folios ($(awk '{ n[$3]++ } END { for (f in n) printf "%s %d  ", f, n[f] }' "$LAB_WORK/populated"))"
[ "$in64" -ge 240 ] || lab_fail "the kernel gave the buffer no 64 KiB folios ($in64 of 256 pages): the experiment cannot run" \
	"$in64 pages in 64 KiB folios" "256 (a lab problem, not yours: tell the instructor)"
lab_go
lab_wait forked 60
child=$CP_PID
lab_diff "$parent" "$child" "$range"
m_shared=$D_SHARED
echo "1. after fork: $m_shared pages shared (same PFN), $D_COPIED copied"
lab_go
lab_wait child-wrote 60
lab_diff "$parent" "$child" "$range"
m_copied=$D_COPIED
lab_pfns "$child" "$range" "$LAB_WORK/child"
# The child's pages at the 16 it wrote: the first page of each folio.
awk '$4 % 16 == 0' "$LAB_WORK/child" >"$LAB_WORK/child-written"
m_child_folio=$(mode_folio "$LAB_WORK/child-written")
echo "2. the child wrote 16 pages: it has copied $m_copied, $D_SHARED still shared"
echo "3. the child's copies sit in ${m_child_folio} KiB folios"
lab_go
lab_wait child-exited 60
lab_pfns_across "$parent" "$range" parent-wrote
lab_end
m_kept=$(awk 'NR == FNR { pfn[$1] = $2; next } ($1 in pfn) && pfn[$1] == $2' "$LAB_WORK/before" "$LAB_WORK/after" | wc -l)
m_parent_folio=$(mode_folio "$LAB_WORK/after")
echo "4. the parent rewrote 256 pages after the child exited: $m_kept kept their PFN, $((256 - m_kept)) were copied ($kernel)"
echo "5. the parent's pages are now mostly in ${m_parent_folio} KiB folios ($(awk '{ n[$3]++ } END { for (f in n) printf "%s %d  ", f, n[f] }' "$LAB_WORK/after"))"
[ "$LAB_RC" = 0 ] || lab_fail "the program exited with status $LAB_RC" "the program failed" "exit 0"

# The predictions.
pred() {
	awk -F= -v k="$1" '{ key = $1; gsub(/[ \t]/, "", key) } key == k { v = $2; gsub(/[ \t]/, "", v); print v; exit }' \
		"$LAB_EX/predictions.txt"
}
right=0 asked=0
judge() { # judge QUESTION KEY MEASURED exact|count
	p=$(pred "$2")
	asked=$((asked + 1))
	case "$p" in
	''|*[!0-9]*) echo "   $1 $2: no prediction (\"$p\"); measured $3"; return ;;
	esac
	if [ "$4" = exact ]; then ok=$([ "$p" = "$3" ] && echo 1 || echo 0)
	else ok=$(awk -v p="$p" -v m="$3" 'BEGIN { d = p - m; if (d < 0) d = -d; t = m / 20; if (t < 1) t = 1; print (d <= t) }')
	fi
	if [ "$ok" = 1 ]; then right=$((right + 1)); echo "   $1 $2: predicted $p, measured $3: right"
	else echo "   $1 $2: predicted $p, measured $3: wrong"
	fi
}
echo "your predictions (predictions.txt) against the module's figures on $kernel:"
judge 1. after_fork_shared "$m_shared" count
judge 2. child_copied "$m_copied" count
judge 3. child_copy_folio_kib "$m_child_folio" exact
judge 4. "parent_kept_$kernel" "$m_kept" count
judge 5. "parent_folio_kib_$kernel" "$m_parent_folio" exact
echo "measured: $right of $asked predictions match the module's figures on $kernel"
echo "target:   all $asked"
[ "$right" = "$asked" ]
